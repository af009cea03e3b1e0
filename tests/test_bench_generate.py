"""The generation benchmark's smoke size runs and writes its JSON (no timing assertions): a
cached and a recomputed row per batch size, the speedup relative to recomputation."""

import json

from jaxgpt.bench import generate


def test_bench_generate_smoke(tmp_path):
  out = tmp_path / "bench.json"
  generate.run("configs/gpt.py:test", [], 8, 16, [1, 2], 1, str(out))  # what --smoke runs
  result = json.loads(out.read_text())
  assert result["seq_len"] == 32 and result["new_tokens"] == 16
  rows = {(r["batch"], r["loop"]): r for r in result["rows"]}
  assert set(rows) == {(b, loop) for b in (1, 2) for loop in ("cached", "recompute")}
  for (b, loop), r in rows.items():
    assert r["tokens_per_s"] > 0 and r["compile_s"] > 0
    assert abs(r["tokens_per_s"] * r["seconds"] - b * 16) < 1e-6 * b * 16
  assert all(rows[(b, "recompute")]["speedup"] == 1.0 for b in (1, 2))
