"""scripts/bench_cohort.py --smoke runs and writes its JSON (so the benchmark never rots)."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
  spec = importlib.util.spec_from_file_location("bench_cohort",
                                                ROOT / "scripts" / "bench_cohort.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_bench_cohort_smoke(tmp_path, capsys):
  out = tmp_path / "bench.json"
  _load_script().main(["--smoke", "--out", str(out)])
  result = json.loads(out.read_text())
  assert result["meta"]["smoke"] is True
  assert [r["k"] for r in result["rows"]] == [1, 2]
  for r in result["rows"]:
    assert r["cohort_train_s"] > 0 and r["sequential_train_s"] > 0
    assert r["speedup"] == r["sequential_train_s"] / r["cohort_train_s"]
  assert len(result["sequential_per_trial_s"]) == 2
  assert result["plateau_k"] in (1, 2)
  assert "gain stops growing" in capsys.readouterr().out
