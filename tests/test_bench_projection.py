"""The projection benchmark's smoke size runs and writes its JSON (no timing assertions)."""

import json

from jaxgpt.bench import projection


def test_bench_projection_smoke(tmp_path):
  out = tmp_path / "proj.json"
  projection.run("configs/gated_ngpt.py:test", 2, [1, 7], str(out))
  row = json.loads(out.read_text())
  assert row["step_ms"] > 0 and row["project_ms"] > 0
  assert 0 < row["share"]["7"] < row["share"]["1"] < 1
