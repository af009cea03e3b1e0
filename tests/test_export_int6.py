"""The int6 artifact (export.format = "int6"): the per-channel quantizer against float64 numpy,
its least-error clip quantile against a brute-force search, the file format (zstd 22, or zlib 9
without zstandard, named in the file), its size against int8 on the same weights, one-line
config errors, and param_golf.py:int6,test trained and exported with its fresh-process round
trip."""

import json
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

from jaxgpt.export import artifact, exporter
from jaxgpt.optim import qat
from jaxgpt.train import run as train_run
from jaxgpt.train.inference import load_params
from tests.helpers import load_config

QUANTILES = (0.999, 0.9995, 0.9999, 0.99999, 1.0)

# ------------------------------------------------------------------------------------------
# Quantization against float64 numpy.


def heavy(shape, seed):
  """Student-t weights (heavy tails: the clip quantile matters), one all-zero channel."""
  w = (np.random.default_rng(seed).standard_t(2.5, size=shape) * 0.02).astype(np.float32)
  w[..., 0] = 0.0
  return w


@pytest.mark.parametrize("shape,axes", [((300, 24), (0,)), ((2, 64, 4, 8), (1,)),
                                        ((2, 4, 8, 40), (1, 2))])
@pytest.mark.parametrize("cq,floor", [(0.999, 0.0), (1.0, 0.0), (0.9999, 0.01)])
def test_int6_candidate_dequantizes_within_half_a_step(shape, axes, cq, floor):
  w = heavy(shape, 0)
  q, scale = artifact.int6_candidate(w, axes, cq, floor)
  assert q.dtype == np.int8 and scale.dtype == np.float16 and np.abs(q).max() <= 31
  w64 = w.astype(np.float64)
  clip = (np.abs(w64).max(axis=axes, keepdims=True) if cq == 1.0
          else np.quantile(np.abs(w64), cq, axis=axes, keepdims=True))
  ref_scale = np.maximum(clip / 31, floor)
  ref_scale = np.where(ref_scale > 0, ref_scale, 1.0)
  s = scale.astype(np.float64)
  np.testing.assert_allclose(s, ref_scale, rtol=2**-10)  # float16 rounding of the scale
  deq = artifact.dequantize(q, scale).astype(np.float64)
  inside = np.abs(w64) <= 31 * s
  # round to nearest inside the range; clipped to the top level outside it
  step = np.broadcast_to(s, w.shape)
  assert np.all(np.abs(deq - w64)[inside] <= 0.5 * step[inside] * (1 + 1e-6) + 1e-12)
  np.testing.assert_array_equal(np.abs(q)[~inside], 31)
  assert np.all(q[..., 0] == 0)


def brute_force_int6(w, axes, quantiles, floor):
  """Per output channel, in a Python loop: every candidate's float16 scale, levels and squared
  error on that channel alone (float64), keeping the first of the least."""
  w = np.asarray(w, np.float32)
  keep = [a for a in range(w.ndim) if a not in axes]
  moved = np.transpose(w, keep + list(axes))
  rows = moved.reshape(-1, int(np.prod([w.shape[a] for a in axes])))
  q_rows, s_rows = np.zeros(rows.shape, np.int8), np.zeros(len(rows), np.float16)
  for r, row in enumerate(rows):
    best = None
    for cq in quantiles:
      clip = np.abs(row).max() if cq == 1.0 else np.quantile(np.abs(row), cq)
      s = np.float16(max(clip / 31, floor))
      s = np.float16(1.0) if s == 0 else s
      q = np.clip(np.rint(row / np.float32(s)), -31, 31)
      err = float(np.sum((q * np.float64(np.float32(s)) - row.astype(np.float64)) ** 2))
      if best is None or err < best[0]:
        best = (err, q.astype(np.int8), s)
    q_rows[r], s_rows[r] = best[1], best[2]
  q = np.transpose(q_rows.reshape(moved.shape), np.argsort(keep + list(axes)))
  scale_shape = [1 if a in axes else n for a, n in enumerate(w.shape)]
  return q, s_rows.reshape(scale_shape)


@pytest.mark.parametrize("shape,axes", [((400, 16), (0,)), ((2, 4, 8, 24), (1, 2))])
@pytest.mark.parametrize("floor", [0.0, 0.004])
def test_chosen_quantile_is_the_least_error_one(shape, axes, floor):
  w = heavy(shape, 1)
  q, scale = artifact.quantize_int6(w, axes, QUANTILES, floor)
  bq, bs = brute_force_int6(w, axes, QUANTILES, floor)
  np.testing.assert_array_equal(scale, bs)
  np.testing.assert_array_equal(q, bq)
  # the search matters: no single candidate gives these scales on every channel
  singles = [artifact.int6_candidate(w, axes, cq, floor)[1] for cq in QUANTILES]
  assert not any(np.array_equal(s, scale) for s in singles)
  # and it is never worse than any single candidate, channel by channel
  err = lambda qq, ss: np.sum((artifact.dequantize(qq, ss) - w).astype(np.float64) ** 2,
                              axis=axes)
  for cq in QUANTILES:
    assert np.all(err(q, scale) <= err(*artifact.int6_candidate(w, axes, cq, floor)))


def test_plan_int6_for_block_matrices_int8_for_tables_and_heads():
  assert qat.int6_axes("blocks/mlp/fc/kernel", (3, 32, 64), 1024) == (1,)
  assert qat.int6_axes("blocks_0/attn/o/kernel", (4, 8, 64), 0) == (0, 1)
  assert qat.int6_axes("blocks/attn/q/kernel", (3, 32, 8, 4), 1024) is None  # fp16: 1024
  for path, shape in (("embed/embedding", (1024, 32)), ("lm_head/kernel", (32, 1024)),
                      ("blocks/moe/router/kernel", (3, 32, 64))):
    assert qat.int8_axes(path, shape, 0) is not None and qat.int6_axes(path, shape, 0) is None


# ------------------------------------------------------------------------------------------
# The file.

def _flat():
  rng = np.random.default_rng(2)
  return {"blocks_0/mlp/fc/kernel": heavy((64, 48), 3),
          "embed/embedding": rng.normal(size=(96, 64)).astype(np.float32),
          "blocks_0/norm/scale": rng.normal(size=(64,)).astype(np.float32)}


@pytest.mark.parametrize("compressor", ["zstd", "zlib"])
def test_encode_decode_int6_names_its_compressor(compressor, monkeypatch):
  flat = _flat()
  int8 = {"blocks_0/mlp/fc/kernel": (0,), "embed/embedding": (1,)}
  int6 = {"blocks_0/mlp/fc/kernel": (0,)}
  if compressor == "zlib":  # as without the zstandard package
    monkeypatch.setattr(artifact, "zstandard_module", lambda: None)
  else:
    pytest.importorskip("zstandard")  # the corpora extra
  assert artifact.default_compressor() == compressor
  raw = artifact.encode(flat, int8, {"note": "x"}, int6, clip_quantiles=QUANTILES)
  head = artifact.INT6_MAGIC + compressor.encode() + b"\n"
  assert raw.startswith(head)
  payload = raw[len(head):]
  if compressor == "zstd":
    import zstandard
    blob = zstandard.ZstdDecompressor().decompress(payload)
    assert zstandard.ZstdCompressor(level=22).compress(blob) == payload  # level 22
  else:
    blob = zlib.decompress(payload)
    assert zlib.compress(blob, 9) == payload
  n = int.from_bytes(blob[:4], "little")
  header = json.loads(blob[4:4 + n])
  assert header["compression"] == {"zstd": "zstd-22", "zlib": "zlib-9"}[compressor]
  kinds = {e["path"]: e["kind"] for e in header["tensors"]}
  assert kinds == {"blocks_0/mlp/fc/kernel": "int6", "embed/embedding": "int8",
                   "blocks_0/norm/scale": "fp16"}
  meta, out = artifact.decode(raw)
  assert meta == {"note": "x"}
  np.testing.assert_array_equal(out["blocks_0/mlp/fc/kernel"], artifact.dequantize(
      *artifact.quantize_int6(flat["blocks_0/mlp/fc/kernel"], (0,), QUANTILES)))
  np.testing.assert_array_equal(out["embed/embedding"], artifact.dequantize(
      *artifact.quantize(flat["embed/embedding"], (1,))))
  np.testing.assert_array_equal(out["blocks_0/norm/scale"],
                                flat["blocks_0/norm/scale"].astype(np.float16).astype(np.float32))


def test_zstd_artifact_without_zstandard_is_a_clear_error(monkeypatch):
  raw = artifact.encode(_flat(), {}, {}, {"blocks_0/mlp/fc/kernel": (0,)}, compressor="zstd")
  monkeypatch.setattr(artifact, "zstandard_module", lambda: None)
  with pytest.raises(ValueError, match="zstd-compressed: loading it needs the zstandard"):
    artifact.decode(raw)
  with pytest.raises(ValueError, match="not a jaxgpt artifact"):
    artifact.decode(b"garbage")


@pytest.mark.parametrize("compressor", ["zstd", "zlib"])
def test_int6_is_smaller_than_int8_on_the_same_weights(compressor):
  rng = np.random.default_rng(5)
  flat = {f"blocks_{i}/mlp/fc/kernel": (rng.normal(size=(256, 512)) * 0.02).astype(np.float32)
          for i in range(3)}
  axes = {p: (0,) for p in flat}
  int8 = len(artifact.encode(flat, axes, {}))
  int6 = len(artifact.encode(flat, axes, {}, axes, compressor=compressor))
  assert int6 < 0.85 * int8, (int6, int8)


# ------------------------------------------------------------------------------------------
# Config errors at the command line.

def test_bad_export_format_is_one_line_at_the_command_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "jaxgpt.main", "--config", "configs/param_golf.py:test",
       "--config.export.format=int4", "--mode", "export", "--workdir", str(tmp_path / "w")],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True,
      text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=300)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith("error: export.format='int4' is not allowed; choose one of")


# ------------------------------------------------------------------------------------------
# param_golf.py:int6,test: always-on QAT, trained, exported at its end, round trip.

def test_int6_variant_trains_exports_and_round_trips(tmp_path):
  """fp16_max_numel 1024: the MLP kernels (32 x 64 per layer) are int6 (and fake-quantized in
  training), the embedding int8, the attention kernels (1,024 per layer) fp16."""
  workdir = str(tmp_path / "golf")
  cfg = load_config("param_golf", "int6,test", export__fp16_max_numel=1024)
  assert cfg.model.qat == "int6_quantile" and cfg.export.format == "int6"
  summary = train_run.train_and_evaluate(cfg, workdir)
  path = summary["artifact_path"]
  assert os.path.basename(path) == f"model.int6.{artifact.default_compressor()}"
  assert summary["artifact_format"] == "int6"
  assert summary["artifact_compression"] == {"zstd": "zstd-22", "zlib": "zlib-9"}[
      artifact.default_compressor()]
  assert summary["artifact_bytes"] == os.path.getsize(path) + summary["artifact_code_bytes"]
  # the round trip: the int6 weights change val_bpb a little
  assert summary["val_bpb_roundtrip"] != summary["val_bpb"]
  assert abs(summary["val_bpb_roundtrip"] - summary["val_bpb"]) < 0.1
  assert summary["val_tokens_roundtrip"] == summary["final_val_tokens"]
  # the file: kinds by the plan; int6 leaves on their grid of at most 63 levels
  with open(path, "rb") as f:
    raw = f.read()
  meta, flat = artifact.decode(raw)
  assert meta["config"]["export"]["format"] == "int6"
  run, params, _ = load_params(cfg, workdir)
  want = exporter.flat_params(params)
  int6 = [p for p, w in want.items() if qat.int6_axes(p, w.shape, 1024)]
  assert sorted(int6) == ["blocks/mlp/fc/kernel", "blocks/mlp/proj/kernel",
                          "decoder_blocks/mlp/fc/kernel", "decoder_blocks/mlp/proj/kernel",
                          "encoder_blocks/mlp/fc/kernel", "encoder_blocks/mlp/proj/kernel"]
  for p in int6:
    q, s = artifact.quantize_int6(want[p], qat.reduce_axes(p, want[p].shape), QUANTILES)
    np.testing.assert_array_equal(flat[p], artifact.dequantize(q, s))
  q, s = artifact.quantize(want["embed/embedding"], (1,))
  np.testing.assert_array_equal(flat["embed/embedding"], artifact.dequantize(q, s))
  # --mode export's path (checkpoint -> artifact) writes the same bytes; alone, in a fresh
  # process, the file evaluates to the same val_bpb_roundtrip
  again = tmp_path / "lone" / "model.bin"
  again.parent.mkdir()
  exporter.write_artifact(cfg, params, run.vocab_size, str(again))
  assert again.read_bytes() == raw
  hidden = workdir + ".hidden"
  os.rename(workdir, hidden)
  try:
    rt = exporter.roundtrip_in_fresh_process(str(again))
  finally:
    os.rename(hidden, workdir)
  assert rt["val_bpb_roundtrip"] == summary["val_bpb_roundtrip"]
  shutil.rmtree(tmp_path / "lone")
