"""scripts/bench_muon.py --smoke runs and writes its JSON (so the benchmark never rots)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_muon_smoke(tmp_path):
  out = tmp_path / "bench.json"
  # One case of each kind keeps this to seconds: our transform (bf16 iteration), optax's muon,
  # and the orthogonalization loop; the full run (no --cases) times all ten. Case names hold
  # commas, so --cases is repeated rather than comma-separated.
  cases = ["ours bf16, stacked", "optax.contrib.muon, stacked",
           "orthogonalize f32, per-matrix loop"]
  proc = subprocess.run([sys.executable, "scripts/bench_muon.py", "--smoke", "--out", str(out),
                         *(f"--cases={c}" for c in cases)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["meta"]["smoke"] is True
  assert [r["case"] for r in result["updates"]] == [
      "ours bf16, stacked leaves", "optax.contrib.muon, stacked leaves",
      "orthogonalize f32, per-matrix loop"]
  assert all(r["median_ms"] > 0 for r in result["updates"])
  rows = result["orthogonality"]
  assert {r["steps"] for r in rows} == {3, 5, 7}
  pe5 = [r for r in rows if r["method"] == "polar_express" and r["steps"] == 5
         and r["dtype"] == "float32"]
  assert pe5 and all(0.85 < r["sigma_min"] and r["sigma_max"] < 1.15 for r in pe5)
  assert "orthogonality" in proc.stdout
