"""The optimizer comparison's smoke size runs and writes its JSON (no result assertions)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_compare_optimizers_smoke(tmp_path):
  out = tmp_path / "cmp.json"
  proc = subprocess.run([sys.executable, "scripts/compare_optimizers.py", "--smoke", "--out",
                         str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(out.read_text())
  assert {r["optimizer"] for r in res["runs"]} == {"muon", "adamw"}
  assert all(r["val_bpb"] > 0 for r in res["runs"])
