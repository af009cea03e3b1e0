"""The projection benchmark's smoke size runs and writes its JSON (no timing assertions)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_projection_smoke(tmp_path):
  out = tmp_path / "proj.json"
  proc = subprocess.run([sys.executable, "scripts/bench_projection.py", "--smoke", "--out",
                         str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  row = json.loads(out.read_text())
  assert row["step_ms"] > 0 and row["project_ms"] > 0
  assert 0 < row["share"]["7"] < row["share"]["1"] < 1
