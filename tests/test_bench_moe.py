"""The MoE benchmark's smoke size runs and writes its JSON (no timing assertions): every
dispatch's compiled FLOPs, and the waste of each relative to the active experts."""

import json
import math

from jaxgpt.bench import moe


def test_bench_moe_smoke(tmp_path):
  out = tmp_path / "bench.json"
  moe.run("configs/moe.py:test", 2, ("dense",), str(out))  # what --smoke runs
  rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
  assert set(rows) == {"moe/dense", "moe/capacity", "moe/ragged", "gpt dense (equal active)"}
  assert rows["moe/dense"]["tokens_per_s"] > 0 and rows["gpt dense (equal active)"]["tokens_per_s"]
  # configs/moe.py:test has E = 4, k = 2: dense runs every expert (E / k = 2 x the active
  # matmuls, plus the router and combine); XLA:CPU expands ragged_dot to all E groups.
  assert 2.0 <= rows["moe/dense"]["layer_flops_vs_active"] < 2.5
  assert rows["moe/ragged"]["layer_flops_vs_active"] >= 4.0
  for r in rows.values():
    assert math.isfinite(r["step_flops_per_token"]) and r["step_flops_per_token"] > 0
