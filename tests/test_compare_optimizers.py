"""The optimizer comparison's smoke size runs and writes its JSON (no result assertions)."""

import json

from jaxgpt.bench import compare_optimizers as compare


def test_compare_optimizers_smoke(tmp_path):
  out = tmp_path / "cmp.json"
  grid = {k: dict(v, lrs=v["lrs"][:1]) for k, v in compare.GRID.items()}  # what --smoke runs
  compare.run("configs/gpt.py:test", [0], grid, out=str(out))
  res = json.loads(out.read_text())
  assert {r["optimizer"] for r in res["runs"]} == {"muon", "adamw"}
  assert all(r["val_bpb"] > 0 for r in res["runs"])
