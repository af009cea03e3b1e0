"""The Titans benchmark's smoke size runs and writes its JSON (no timing assertions)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_titans_smoke(tmp_path):
  out = tmp_path / "bench.json"
  proc = subprocess.run([sys.executable, "scripts/bench_titans.py", "--smoke", "--out", str(out)],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert [r["run"] for r in result["runs"]] == ["titans_mac"]
  assert all(r["val_bpb"] > 0 and r["tokens_per_s"] > 0 for r in result["runs"])
  assert result["memory_cost"]["memory_branch_us_per_token_per_layer"] > 0
