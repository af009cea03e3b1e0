"""The Muon benchmark's smoke size runs and writes its JSON (so the benchmark never rots)."""

import json

from jaxgpt.bench import muon


def test_bench_muon_smoke(tmp_path, capsys):
  out = tmp_path / "bench.json"
  # One case of each kind keeps this to seconds: our transform (bf16 iteration), optax's muon,
  # and the orthogonalization loop; the full run (no cases) times all ten.
  cases = ["ours bf16, stacked", "optax.contrib.muon, stacked",
           "orthogonalize f32, per-matrix loop"]
  muon.run(2, 32, 4, 1, 24, cases=cases, smoke=True, out=str(out))  # the --smoke sizes
  result = json.loads(out.read_text())
  assert result["meta"]["smoke"] is True
  assert [r["case"] for r in result["updates"]] == [
      "ours bf16, stacked leaves", "optax.contrib.muon, stacked leaves",
      "orthogonalize f32, per-matrix loop"]
  assert all(r["median_ms"] > 0 for r in result["updates"])
  rows = result["orthogonality"]
  assert {r["steps"] for r in rows} == {3, 5, 7}
  pe5 = [r for r in rows if r["method"] == "polar_express" and r["steps"] == 5
         and r["dtype"] == "float32"]
  assert pe5 and all(0.85 < r["sigma_min"] and r["sigma_max"] < 1.15 for r in pe5)
  assert "orthogonality" in capsys.readouterr().out
