"""The int8+zlib artifact: quantization against float64 numpy, the file format, and one
parameter-golf run (test variant, fake clock, time cap) exported at its end: artifact_bytes
against the sizes on disk, and the round trip in a fresh process that reads only the artifact."""

import json
import os
import shutil
import zlib

import numpy as np
import pytest

from jaxgpt.export import artifact, exporter
from jaxgpt.train import run as train_run
from tests.helpers import load_config

# ------------------------------------------------------------------------------------------
# Quantization and format.

def test_quantize_per_output_channel_matches_numpy():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(3, 16, 4, 8)).astype(np.float32)  # scanned (layers, embed, heads, hd)
  w[1, :, 2, 5] = 0.0  # an all-zero output channel
  q, scale = artifact.quantize(w, (1,))
  assert q.dtype == np.int8 and scale.dtype == np.float16
  assert scale.shape == (3, 1, 4, 8)  # one scale per (layer, head, head_dim) column
  ref_scale = (np.abs(w.astype(np.float64)).max(axis=1, keepdims=True) / 127).astype(np.float16)
  ref_scale[ref_scale == 0] = 1
  np.testing.assert_array_equal(scale, ref_scale)
  assert np.abs(q).max() <= 127 and np.all(q[1, :, 2, 5] == 0)
  deq = artifact.dequantize(q, scale)
  # round-to-nearest: error at most half a step, plus the fp16 rounding of the scale
  step = scale.astype(np.float64)
  assert np.all(np.abs(deq - w) <= 0.5 * step + 127 * step * 2**-11 + 1e-12)
  # every channel's largest entry maps to +-127 or +-126 (fp16-rounded scale)
  amax_q = np.abs(q).max(axis=1)
  assert np.all((amax_q >= 126) | (amax_q == 0))


@pytest.mark.parametrize("path,shape,axes", [
    ("blocks/attn/q/kernel", (3, 16, 4, 8), (1,)),  # (layers, embed, heads, head_dim)
    ("blocks_0/attn/k/kernel", (16, 2, 8), (0,)),
    ("encoder_blocks/attn/o/kernel", (2, 4, 8, 16), (1, 2)),  # heads * head_dim is fan_in
    ("decoder_blocks/mlp/proj/kernel", (2, 64, 16), (1,)),
    ("blocks_1/mlp/gate/kernel", (16, 64), (0,)),
    ("embed/embedding", (1024, 16), (1,)),  # per row: the tied head's output channel
    ("lm_head/kernel", (16, 1024), (0,)),  # Dense (in, out): per vocab column
])
def test_reduce_axes_are_fan_in(path, shape, axes):
  assert exporter.reduce_axes(path, shape) == axes


def test_int8_plan_is_per_layer_matrix():
  """The fp16 threshold applies to one layer's matrix: scanned and unscanned agree."""
  assert exporter.int8_axes("blocks/mlp/fc/kernel", (9, 128, 256), 32768) is None
  assert exporter.int8_axes("blocks_3/mlp/fc/kernel", (128, 256), 32768) is None
  assert exporter.int8_axes("blocks/mlp/fc/kernel", (9, 128, 257), 32768) == (1,)
  assert exporter.int8_axes("blocks_3/mlp/fc/kernel", (128, 257), 32768) == (0,)
  assert exporter.int8_axes("decoder_blocks/skip_weight", (4, 100000), 10) is None  # vectors
  assert exporter.int8_axes("embed/embedding", (1024, 128), 65536) == (1,)


def test_encode_decode_small_tensors_fp16_and_zlib9():
  rng = np.random.default_rng(1)
  flat = {"a/kernel": rng.normal(size=(40, 30)).astype(np.float32),  # planned: int8
          "a/scale": rng.normal(size=(30,)).astype(np.float32),
          "b/kernel": rng.normal(size=(20, 50)).astype(np.float32)}
  raw = artifact.encode(flat, {"a/kernel": (0,)}, {"note": "x"})
  assert zlib.compress(zlib.decompress(raw), 9) == raw  # level 9, nothing else in the file
  meta, out = artifact.decode(raw)
  assert meta == {"note": "x"}
  for key in ("a/scale", "b/kernel"):
    np.testing.assert_array_equal(out[key], flat[key].astype(np.float16).astype(np.float32))
  q, s = artifact.quantize(flat["a/kernel"], (0,))
  np.testing.assert_array_equal(out["a/kernel"], artifact.dequantize(q, s))
  assert artifact.unflatten(out)["a"]["kernel"].shape == (40, 30)
  with pytest.raises(ValueError, match="bad magic"):
    artifact.decode(zlib.compress(b"nope"))


def test_budget_message():
  assert "within the 16,000,000-byte budget" in exporter.budget_message(100, 60, 40, 16_000_000)
  msg = exporter.budget_message(16_000_123, 16_000_000, 123, 16_000_000)
  assert "OVER the 16,000,000-byte budget by 123 bytes" in msg


# ------------------------------------------------------------------------------------------
# One run, exported at its end. The checks share the run inside one test, so that pytest-xdist
# never trains it twice on two workers.

def test_golf_run_time_cap_export_and_roundtrip(tmp_path):
  """param_golf.py:best_proxy,test under a fake clock (each reading +1 s) and a 100 s cap: the
  cap binds long before the step budget; the export keeps matrices > 1024 elements int8."""
  workdir = str(tmp_path / "golf")
  ticks = iter(range(10**6))
  cfg = load_config("param_golf", "best_proxy,test", train__steps=1000,
                    train__max_time_s=100.0, train__log_every=1, train__eval_every=1000,
                    export__fp16_max_numel=1024)
  summary = train_run.train_and_evaluate(cfg, workdir, clock=lambda: float(next(ticks)))
  run = (cfg, workdir, summary)
  check_time_capped_tidal_completes_its_decay(run)
  check_artifact_bytes_equal_sizes_on_disk(run)
  check_roundtrip_reads_only_the_artifact(run, tmp_path)
  check_export_from_checkpoint_matches_export_at_end(run, tmp_path)


def check_time_capped_tidal_completes_its_decay(golf_run):
  cfg, workdir, summary = golf_run
  assert cfg.optimizer.schedule == "tidal"
  assert summary["stop_reason"] == "time_cap" and summary["steps"] < 1000
  lrs = [r["lr"] for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl")))
         if "lr" in r]
  assert max(lrs) > 0.5 * cfg.optimizer.lr  # it went through the peak ...
  assert lrs[-1] <= 0.05 * cfg.optimizer.lr, lrs  # ... and reached the end of the decay


def check_artifact_bytes_equal_sizes_on_disk(golf_run):
  cfg, workdir, summary = golf_run
  on_disk = json.load(open(os.path.join(workdir, "summary.json")))
  for key in ("artifact_bytes", "artifact_path", "artifact_code_files", "val_bpb_roundtrip"):
    assert on_disk[key] == summary[key], key
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(artifact.__file__))))
  code = sum(os.path.getsize(os.path.join(root, f)) for f in summary["artifact_code_files"])
  assert summary["artifact_bytes"] == os.path.getsize(summary["artifact_path"]) + code
  files = set(summary["artifact_code_files"])
  assert {"jaxgpt/export/artifact.py", "jaxgpt/models/gpt.py", "jaxgpt/models/layers.py"} <= files
  assert not any(f.startswith(("jaxgpt/train/", "jaxgpt/data/", "jaxgpt/optim/")) for f in files)
  assert summary["artifact_within_budget"] and summary["artifact_bytes"] < 16_000_000


def check_roundtrip_reads_only_the_artifact(golf_run, tmp_path):
  """The artifact, copied alone to an empty directory while the workdir is hidden, evaluates
  in a fresh process to the same val_bpb_roundtrip; int8 costs little against val_bpb."""
  cfg, workdir, summary = golf_run
  lone = tmp_path / "lone" / "model.bin"
  lone.parent.mkdir()
  shutil.copy(summary["artifact_path"], lone)
  hidden = workdir + ".hidden"
  os.rename(workdir, hidden)
  try:
    rt = exporter.roundtrip_in_fresh_process(str(lone))
  finally:
    os.rename(hidden, workdir)
  np.testing.assert_allclose(rt["val_bpb_roundtrip"], summary["val_bpb_roundtrip"], rtol=1e-9)
  assert rt["val_tokens_roundtrip"] == summary["final_val_tokens"]  # the full validation split
  assert summary["val_bpb_roundtrip"] != summary["val_bpb"]  # int8 did change the weights
  assert abs(summary["val_bpb_roundtrip"] - summary["val_bpb"]) < 0.05


def check_export_from_checkpoint_matches_export_at_end(golf_run, tmp_path):
  """--mode export's path (latest checkpoint -> artifact) writes the same bytes as the export
  at the end of the run; some matrices are int8 (fp16_max_numel 1024)."""
  from jaxgpt.train.inference import load_params
  cfg, workdir, summary = golf_run
  run, params, step = load_params(cfg, workdir)
  assert step == summary["steps"]
  path = str(tmp_path / "again.bin")
  exporter.write_artifact(cfg, params, run.vocab_size, path)
  assert open(path, "rb").read() == open(summary["artifact_path"], "rb").read()
  meta, flat = artifact.load(path)
  assert meta["vocab_size"] == run.vocab_size and meta["config"]["model"]["parallel_block"]
  want = exporter.flat_params(params)
  assert set(flat) == set(want)
  int8 = [p for p, w in want.items() if exporter.int8_axes(p, w.shape, 1024)]
  assert "lm_head/kernel" in int8 and "blocks/mlp/fc/kernel" in int8  # (3, 32, 64): 2048 each
  assert "blocks/attn/q/kernel" not in int8  # (3, 32, 8, 4): 1024 per layer stays fp16
  for p in int8:
    step_size = np.abs(want[p]).max() / 127
    assert np.abs(flat[p] - want[p]).max() <= 0.51 * step_size + 1e-7, p
