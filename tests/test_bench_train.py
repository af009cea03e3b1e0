"""The training benchmark's smoke size runs and writes its JSON (no timing assertions)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_train_smoke(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run([sys.executable, "scripts/bench_train.py", "--smoke", "--out", str(out)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = json.loads(out.read_text())
  assert row["tokens_per_s"] > 0 and row["tokens_per_step"] == 4 * 32
