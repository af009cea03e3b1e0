"""scripts/bench_prepare.py runs at smoke size and writes its JSON; the preparation command and
the tokenizer's own batch encoding count the same tokens, with 1 worker and with 2."""

import json
import os
import pathlib
import random
import subprocess
import sys

import pytest

from jaxgpt.bench import prepare

pytest.importorskip("pyarrow")  # the corpora extra: the benchmark writes a parquet corpus

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_cut_keeps_every_byte_and_cuts_at_lines():
  text = "".join(f"line {i} " * (i % 7) + "\n" for i in range(3000))
  pieces = prepare.cut(text, random.Random(0), lo=50, hi=500)
  assert "".join(pieces) == text and len(pieces) > 10
  assert all(p.endswith("\n") for p in pieces)


def test_bench_prepare_smoke(tmp_path):
  out = tmp_path / "bench_prepare.json"
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_prepare.py"), "--smoke",
                         "--out", str(out), "--workdir", str(tmp_path)],
                        capture_output=True, text=True, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report["smoke"] is True and report["benchmark"] == "prepare"
  assert report["megabytes"] >= 1.0 and report["vocab"] == 512
  rows = {r["case"]: r for r in report["rows"]}
  assert set(rows) == {"ceiling", "workers=1", "workers=2"}
  tokens = {r["tokens"] for r in rows.values()}
  assert len(tokens) == 1  # the same text, the same tokens, whatever runs the encoding
  for r in rows.values():
    assert r["seconds"] > 0 and r["mb_per_s"] > 0 and r["case"] in proc.stdout
  assert rows["workers=1"]["vs_one"] == 1.0
