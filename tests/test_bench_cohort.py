"""The cohort benchmark's smoke size runs and writes its JSON (so the benchmark never rots); its
entry point's flag errors are one line."""

import json
import subprocess
import sys
from pathlib import Path

from jaxgpt.bench import cohort

ROOT = Path(__file__).resolve().parents[1]


def test_bench_cohort_smoke(tmp_path, capsys):
  out = tmp_path / "bench.json"
  cohort.run("configs/gpt.py:test", 3, [1, 2], smoke=True, out=str(out))  # what --smoke runs
  result = json.loads(out.read_text())
  assert result["meta"]["smoke"] is True
  assert [r["k"] for r in result["rows"]] == [1, 2]
  for r in result["rows"]:
    assert r["cohort_train_s"] > 0 and r["sequential_train_s"] > 0
    assert r["speedup"] == r["sequential_train_s"] / r["cohort_train_s"]
  assert len(result["sequential_per_trial_s"]) == 2
  assert result["plateau_k"] in (1, 2)
  assert "gain stops growing" in capsys.readouterr().out


def test_bench_cohort_flag_errors_are_one_line():
  """absl flags, like every entry point: a bad flag is one `error:` line and exit code 2."""
  for bad in (["--ks=1,x"], ["--no_such_flag"], ["stray"]):
    proc = subprocess.run([sys.executable, "scripts/bench_cohort.py", *bad], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, (bad, proc.stderr[-2000:])
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
