"""The training benchmark's smoke size runs and writes its JSON (no timing assertions)."""

import json

from jaxgpt.bench import train


def test_bench_train_smoke(tmp_path, capsys):
  out = tmp_path / "bench.json"
  train.run("configs/gpt.py:test", 6, out=str(out))  # what --smoke runs
  row = json.loads(out.read_text())
  assert row["tokens_per_s"] > 0 and row["tokens_per_step"] == 4 * 32 and row["steps"] == 6
  assert "configs/gpt.py:test" in capsys.readouterr().out
