"""The plain-JAX floor's smoke size runs: it computes jaxgpt's function (the same initial loss
from the same weights) and times every row (no timing assertions)."""

import json

import pytest
from absl import app

from jaxgpt.bench import floor

ROWS = {"floor unrolled", "floor scan", "jaxgpt scan", "jaxgpt unrolled, flipped"}


def test_bench_floor_smoke(tmp_path, capsys):
  out = tmp_path / "bench.json"
  floor.run("configs/gpt.py:cpu", [], 20, 5, smoke=True, out=str(out))
  res = json.loads(out.read_text())
  assert abs(res["initial_loss"]["floor"] - res["initial_loss"]["jaxgpt"]) < 1e-4
  rows = {r["row"]: r for r in res["rows"]}
  assert set(rows) == ROWS and (res["steps"], res["rounds"]) == (2, 1)
  assert min(r["vs_floor"] for r in rows.values() if r["row"].startswith("floor")) == 1.0
  assert all(r["ms_per_step"] > 0 for r in rows.values())
  printed = capsys.readouterr().out
  assert all(name in printed for name in ROWS) and "vs floor" in printed


def test_bench_floor_gated_ngpt():
  """The gated nGPT floor (jaxgpt/bench/floor_ngpt.py) at the test size: same initial loss,
  every row timed; the nanoGPT shape (GPT's only) refuses it and names --noshape."""
  res = floor.bench("configs/gated_ngpt.py:test", [], steps=2, rounds=1)
  assert abs(res["initial_loss"]["floor"] - res["initial_loss"]["jaxgpt"]) < 1e-4
  rows = {r["row"]: r for r in res["rows"]}
  assert set(rows) == ROWS
  assert all(r["ms_per_step"] > 0 and r["tokens_per_s"] > 0 for r in rows.values())
  with pytest.raises(app.UsageError, match="--noshape"):
    floor.run("configs/gated_ngpt.py:test", [], 2, 1, shape=True, loop=False)
