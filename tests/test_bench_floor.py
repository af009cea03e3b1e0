"""The plain-JAX floor's smoke size runs: it computes jaxgpt's function (the same initial loss
from the same weights) and times every row (no timing assertions)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_floor_smoke(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run([sys.executable, "scripts/bench_floor.py", "--smoke", "--out", str(out)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(out.read_text())
  assert abs(res["initial_loss"]["floor"] - res["initial_loss"]["jaxgpt"]) < 1e-4
  rows = {r["row"]: r for r in res["rows"]}
  assert set(rows) == {"floor unrolled", "floor scan", "jaxgpt scan", "jaxgpt unrolled, flipped"}
  assert min(r["vs_floor"] for r in rows.values() if r["row"].startswith("floor")) == 1.0
  assert all(r["ms_per_step"] > 0 for r in rows.values())


def test_bench_floor_gated_ngpt(tmp_path):
  """The gated nGPT floor (scripts/floor_ngpt.py) at the test size: same initial loss, every
  row timed; --shape (GPT's nanoGPT shape) refuses it and names --noshape."""
  out = tmp_path / "bench.json"
  cmd = [sys.executable, "scripts/bench_floor.py", "--config", "configs/gated_ngpt.py:test",
         "--noloop", "--steps", "2", "--rounds", "1"]
  proc = subprocess.run(cmd + ["--noshape", "--out", str(out)], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(out.read_text())
  assert abs(res["initial_loss"]["floor"] - res["initial_loss"]["jaxgpt"]) < 1e-4
  rows = {r["row"]: r for r in res["rows"]}
  assert set(rows) == {"floor unrolled", "floor scan", "jaxgpt scan", "jaxgpt unrolled, flipped"}
  assert all(r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 for r in rows.values())
  refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert refused.returncode != 0 and "--noshape" in refused.stderr
