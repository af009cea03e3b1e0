"""The Titans benchmark's smoke size runs and writes its JSON (no timing assertions)."""

import json

from jaxgpt.bench import titans


def test_bench_titans_smoke(tmp_path):
  out = tmp_path / "bench.json"
  titans.run(3.0, 2, smoke=True, out=str(out))
  result = json.loads(out.read_text())
  assert [r["run"] for r in result["runs"]] == ["titans_mac"]
  assert all(r["val_bpb"] > 0 and r["tokens_per_s"] > 0 for r in result["runs"])
  assert result["memory_cost"]["memory_branch_us_per_token_per_layer"] > 0
