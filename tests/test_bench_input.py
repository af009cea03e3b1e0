"""scripts/bench_input.py runs at smoke size and writes its JSON (so the benchmark never rots)."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_bench_input_smoke(tmp_path):
  out = tmp_path / "bench_input.json"
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_input.py"), "--smoke",
                         "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr
  report = json.loads(out.read_text())
  assert report["smoke"] is True and report["benchmark"] == "input_pipeline"
  assert report["seq_len"] == 64 and report["batch_size"] == 4
  assert len(report["results"]) == 3
  for row in report["results"]:
    assert row["tokens_per_s"] > 0 and row["batches_per_s"] > 0 and row["steps"] == 20
    assert row["variant"] in proc.stdout
