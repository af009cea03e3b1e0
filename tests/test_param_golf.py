"""configs/param_golf.py: the baseline shape and the best_proxy knobs as the issue gives them,
every variant combination validates and builds, and the comparison script's smoke size runs."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.models import gpt
from tests.helpers import ROOT, load_config


@pytest.mark.parametrize("variants", ["", "best_proxy", "cpu", "test", "best_proxy,cpu",
                                      "cpu,best_proxy", "best_proxy,test"])
def test_variants_validate_and_build(variants):
  c = load_config("param_golf", variants)
  config_lib.validate(c)
  models.build_model(c.model, 1024)
  assert c.data.tokenizer == "bpe" and c.data.bpe_vocab_size == 1024
  assert c.export.at_end and c.export.fp16_max_numel == 65536
  assert c.model.num_heads == 8  # size variants keep the head counts
  assert c.model.num_kv_heads == (2 if "best_proxy" in variants else 4)


def test_baseline_shape_and_params():
  c = load_config("param_golf")
  m, o = c.model, c.optimizer
  assert (m.num_layers, m.d_model, m.num_heads, m.num_kv_heads, m.mlp_mult) == (9, 512, 8, 4, 2.0)
  assert (m.tie_embeddings, m.logit_softcap, m.rope_base, m.encoder_layers) == (
      True, 30.0, 10000.0, 4)
  assert (o.name, o.lr, o.update_scale) == ("muon", 0.04, "shape")
  cfg = gpt.GPTConfig.from_config(m, 1024)
  assert [(n, k) for n, _, k in gpt.layer_groups(cfg)] == [
      ("encoder_blocks", 4), ("decoder_blocks", 4), ("blocks", 1)]  # split 4 / 5
  # 9 x (attn 512*512*2 + 2*512*256, MLP 2*512*1024, 2 norms, QK-norm 2*64) + table + 4 skip
  # vectors + final norm: parameter-golf's ~17M.
  block = 2 * 512 * 512 + 2 * 512 * 256 + 2 * 512 * 1024 + 2 * 512 + 2 * 64
  n = 9 * block + 1024 * 512 + 4 * 512 + 512
  assert n == 17_052_288
  params = jax.eval_shape(models.build_model(m, 1024).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8), jnp.int32))
  assert models.count_params(params) == n


def test_best_proxy_knobs():
  c = load_config("param_golf", "best_proxy,cpu")
  m, o = c.model, c.optimizer
  assert m.parallel_block and m.mlp_act == "silu2" and not m.tie_embeddings
  assert (m.logit_softcap, m.rope_base, m.num_kv_heads, m.encoder_layers) == (15.0, 5000.0, 2, 0)
  assert (o.schedule, o.lr, o.embed_lr) == ("tidal", 0.11, 0.8)
  assert (m.num_layers, m.d_model) == (5, 128) and c.train.max_time_s == 120.0
  base = load_config("param_golf", "cpu")
  assert base.model.encoder_layers == 2  # the split shrinks to num_layers // 2


def test_compare_param_golf_smoke(tmp_path):
  """One arm (best_proxy: its compiled steps are cached by test_export's run), then the same
  command again: the finished run is reused, not run again."""
  out = tmp_path / "cmp.json"
  cmd = [sys.executable, "scripts/compare_param_golf.py", "--smoke", "--arms", "best_proxy",
         "--root", str(tmp_path / "runs"), "--out", str(out)]
  for attempt in range(2):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    (r,) = res["runs"]
    assert r["arm"] == "best_proxy" and r["cached"] == (attempt == 1)
    assert r["steps"] == 2 and r["val_bpb"] > 0 and r["val_bpb_roundtrip"] > 0
    assert r["artifact_bytes"] > 0 and r["process_wall_s"] > 0
    assert set(res["arms"]) == {"best_proxy"}
