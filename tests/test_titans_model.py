"""The Titans model (model.name = titans, MAC and MAG): no future leak, per-sequence memory,
padding to whole segments, the parameter count, the optimizer partition table, config checks,
and a short training run in a vmapped cohort against the single run of the same trial."""

import functools
import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.errors import ConfigError
from jaxgpt.models.titans import model as titans
from jaxgpt.optim import partition
from tests.helpers import load_config

V, T = 67, 32  # test config: segment 16, chunk 4, 2 persistent tokens, 2 memory heads x 8


def cfg(variant, **titans_keys):
  c = load_config("titans", "test")
  c.model.titans.variant = variant
  c.model.titans.update(**titans_keys)
  return c


@functools.cache
def model_and_params(variant, scan=True):
  c = cfg(variant)
  c.model.scan_layers = scan
  model = models.build_model(c.model, V)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), tokens(0, 1))["params"])
  # Random gates (they start at zero), so theta, eta and alpha depend on the data.
  rng = np.random.default_rng(1)
  mem = params["blocks"]["memory"]
  mem["gates"] = jnp.asarray(rng.normal(0, 0.5, mem["gates"].shape), jnp.float32)
  return model, params, jax.jit(lambda p, x: model.apply({"params": p}, x))


def tokens(seed, batch=2, length=T):
  return np.random.default_rng(seed).integers(0, V, (batch, length)).astype(np.int32)


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_no_future_leak(variant):
  """Changing token j changes no logit at i < j (j inside a chunk and a segment, and at a
  segment start) and does change later ones."""
  _, params, apply = model_and_params(variant)
  x = tokens(2)
  base = np.asarray(apply(params, x))
  for j in (5, 16, 22):
    y = x.copy()
    y[:, j] = (y[:, j] + 1) % V
    out = np.asarray(apply(params, y))
    np.testing.assert_array_equal(out[:, :j], base[:, :j])
    assert np.abs(out[:, j:] - base[:, j:]).max() > 1e-4


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_memory_is_per_sequence(variant):
  """A row's logits do not depend on the other rows of the batch."""
  _, params, apply = model_and_params(variant)
  x = tokens(3)
  y = x.copy()
  y[1] = tokens(4, 1)[0]
  a, b = np.asarray(apply(params, x)), np.asarray(apply(params, y))
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
  assert np.abs(a[1] - b[1]).max() > 1e-3


def test_mac_pads_to_whole_segments():
  """T = 20 (not a multiple of the segment 16 or chunk 4) gives the first 20 logits of T = 32."""
  _, params, apply = model_and_params("mac")
  x = tokens(5)
  np.testing.assert_allclose(np.asarray(apply(params, x[:, :20])),
                             np.asarray(apply(params, x))[:, :20], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant,scan", [("mac", True), ("mag", False)])
def test_param_count_matches_tree(variant, scan):
  c = cfg(variant)
  c.model.scan_layers = scan
  model = models.build_model(c.model, V)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens(0, 1))["params"]
  assert models.count_params(shapes) == titans.param_count(model.cfg)
  assert models.flops_per_token(c.model, V, T) > 6 * titans.param_count(model.cfg)


def test_optimizer_partition_table():
  """Memory-MLP initial weights: Muon per memory head; projections: Muon; gates: Adam (head);
  persistent tokens: Adam (embedding); biases and norm scales: Adam (scalar)."""
  model = models.build_model(cfg("mac").model, V)
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens(0, 1))["params"])
  print(partition.describe(shapes))
  info = {i.path: i for i in partition.leaf_infos(shapes)}
  for name in ("init_0", "init_1"):  # [layers, heads, in, out]
    i = info[f"blocks/memory/{name}"]
    assert (i.label, i.batch_axes, i.fan_in_axes, i.fan_out_axes) == ("muon", (0, 1), (2,), (3,))
  for name in ("q", "k", "v", "out"):
    assert info[f"blocks/memory/{name}/kernel"].label == "muon"
  assert info["blocks/memory/gates"].label == "adamw_head"
  assert info["blocks/memory/gate_bias"].label == "adamw_scalar"
  assert info["blocks/attn/persistent_embedding"].label == "adamw_embed"
  assert info["blocks/attn/q/kernel"].fan_out_axes == (2, 3)


def saturated_gates_loss_and_grads(variant, **titans_keys):
  """Loss and gradient with theta at theta_max = 1 and eta = 0.95 in every memory head: the
  regime where the inner gradient descent diverges (the MAG cpu proxy's NaN at step 274)."""
  c = cfg(variant, theta_max=1.0, **titans_keys)
  model = models.build_model(c.model, V)
  x = tokens(0)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), x)["params"])
  mem = params["blocks"]["memory"]
  bias = np.array(mem["gate_bias"])  # [L, 3 Hm]: theta, eta, alpha per head
  hm = bias.shape[-1] // 3
  bias[..., :hm], bias[..., hm:2 * hm] = 10.0, np.log(0.95 / 0.05)
  mem["gate_bias"] = jnp.asarray(bias)
  loss = lambda p: jnp.mean(model.apply({"params": p}, x) ** 2)  # noqa: E731
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  return float(value), jax.tree.leaves(grads)


@pytest.mark.parametrize("variant", ["mac", "mag"])
def test_bounded_writes_keep_the_loss_and_gradient_finite(variant):
  """Regression: with the default `max_update_norm` a diverging inner loop stays finite; with
  the bound off (`None`) the same model gives a non-finite loss or gradient."""
  value, grads = saturated_gates_loss_and_grads(variant)
  assert np.isfinite(value) and all(np.isfinite(np.asarray(g)).all() for g in grads)
  value, grads = saturated_gates_loss_and_grads(variant, max_update_norm=None)
  assert not (np.isfinite(value) and all(np.isfinite(np.asarray(g)).all() for g in grads))


@pytest.mark.parametrize("key,value,match", [
    ("variant", "mal", "model.titans.variant='mal'"),
    ("segment_len", 18, "model.titans.segment_len=18 must be a multiple"),
    ("memory_layers", 0, "model.titans.memory_layers=0"),
    ("persistent_tokens", -1, "model.titans.persistent_tokens=-1"),
    ("theta_max", 0.0, "model.titans.theta_max=0.0"),
    ("max_update_norm", -1.0, "model.titans.max_update_norm=-1.0"),
])
def test_config_errors_name_the_key(key, value, match):
  c = load_config("titans", "test")
  c.model.titans[key] = value
  with pytest.raises(ConfigError, match=match.replace("(", r"\(")):
    config_lib.validate(c)


def test_gpt_block_knobs_refused():
  c = load_config("titans", "test")
  c.model.parallel_block = True
  with pytest.raises(ConfigError, match="model.parallel_block"):
    config_lib.validate(c)


def test_cohort_of_titans_trials_equals_single_run(tmp_path):
  """Two titans trials (different learning rates) in one vmapped cohort: the second trial's
  losses equal those of a cohort of that trial alone (tests/test_cohort.py checks a one-trial
  cohort against the single-run loop for GPT; here the cheaper reference keeps the final
  evaluation small), and training lowers the loss."""
  # The sweep layer: only this test needs it.
  from jaxgpt.sweep import cohort

  def trial(lr):
    c = load_config("titans", "test")
    c.optimizer.update(lr=lr)
    c.train.update(steps=6, eval_every=6, log_every=1)
    return c

  out = cohort.train_cohort([trial(0.02), trial(0.01)], str(tmp_path / "cohort"), solo_steps=0,
                            final_eval_tokens=512)
  cohort.train_cohort([trial(0.01)], str(tmp_path / "single"), solo_steps=0,
                      final_eval_tokens=512)
  mine, ref = (train_losses(tmp_path / d / "metrics.jsonl")
               for d in ("cohort/trial_1", "single/trial_0"))
  assert sorted(mine) == list(range(1, 7))
  chex.assert_trees_all_close(mine, ref, rtol=2e-4)
  assert all(np.isfinite(list(mine.values())))
  assert mine[6] < mine[1]
  assert np.isfinite(out[0]["final_val_loss"])


def train_losses(path):
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}
