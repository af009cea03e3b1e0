"""The nested grid's analysis (jaxgpt/bench/nested_grid.py; scripts/nested_grid_plot.py runs it)
on a grid workdir built here: the multiplier fit against its closed form, a planted depth effect
found and an absent one not, unfinished trials skipped."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxgpt.bench import nested_grid

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _grid(tmp_path, loss_fn, cells=((1, 1), (2, 1), (1, 2), (2, 2)), seeds=(0, 1, 2, 3)):
  """A workdir in the sweep's layout: one cohort per cell, mult drawn per trial."""
  rng = np.random.default_rng(0)
  for n, (m, c) in enumerate(cells):
    run = tmp_path / "runs" / f"nested_grid-t{n:04d}-x"
    trials = [{"index": i, "number": n * 10 + i, "params": {"M": m, "C": c}, "seed": s}
              for i, s in enumerate(seeds)]
    run.mkdir(parents=True)
    (run / "trials.json").write_text(json.dumps(trials))
    for t in trials:
      d = run / f"trial_{t['index']}"
      d.mkdir()
      mult = float(np.exp(rng.uniform(np.log(0.1), np.log(2.0))))
      lines = [json.dumps({"step": 10, "opt/lr_mult_core": mult}),
               json.dumps({"step": 20, "train_loss": 3.0}),
               json.dumps({"step": 500, "opt/lr_mult_core": mult * 1.01})]
      (d / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"step": 51')  # torn line
      (d / "summary.json").write_text(json.dumps({"final_val_loss": loss_fn(mult, m, c)}))
  # An unfinished cohort: trials.json but no summaries.
  run = tmp_path / "runs" / "nested_grid-t0099-y"
  run.mkdir()
  (run / "trials.json").write_text(json.dumps([{"index": 0, "number": 99, "seed": 0,
                                                "params": {"M": 3, "C": 3}}]))
  (run / "trial_0").mkdir()
  return tmp_path


def _quadratic(mult):
  x = np.log(mult)
  return 2.1 + 0.3 * x ** 2 - 0.1 * x


def test_fit_is_exact_on_a_quadratic_and_finds_no_depth_effect(tmp_path):
  rows = nested_grid.load_rows(str(_grid(tmp_path, lambda mult, m, c: _quadratic(mult))))
  assert len(rows) == 16 and {(r["M"], r["C"]) for r in rows} == {(1, 1), (2, 1), (1, 2), (2, 2)}
  assert all(r["mult_last"] == pytest.approx(1.01 * r["mult_first"]) for r in rows)
  res = nested_grid.analyse(rows)
  np.testing.assert_allclose(res["fit_coef_log_mult"], [0.3, -0.1, 2.1], atol=1e-9)
  assert res["r2_mult"] == pytest.approx(1.0, abs=1e-12)
  # The raw losses differ by cell only through the draws; the residuals are zero.
  assert res["resid_std"] < 1e-9


def test_planted_depth_effect_is_found_in_the_residuals(tmp_path):
  noise = np.random.default_rng(1)

  def loss(mult, m, c):  # deeper controllers 0.2 nats worse, plus small noise
    return _quadratic(mult) + 0.2 * (c == 2) + 0.005 * noise.standard_normal()

  res = nested_grid.analyse(nested_grid.load_rows(str(_grid(tmp_path, loss))))
  assert res["anova_resid"]["C"]["p"] < 1e-6
  assert res["anova_resid"]["M"]["p"] > 1e-3


def test_misfit_at_small_multipliers_is_not_a_depth_effect_above_min_mult(tmp_path):
  noise = np.random.default_rng(2)

  def loss(mult, m, c):  # C = 2 worse only where mult < 0.5 (off the flat part of the curve)
    return _quadratic(mult) + 0.3 * (c == 2) * (mult < 0.5) + 0.005 * noise.standard_normal()

  rows = nested_grid.load_rows(str(_grid(tmp_path, loss, seeds=tuple(range(12)))))
  assert nested_grid.analyse(rows)["anova_resid"]["C"]["p"] < 1e-3
  above = nested_grid.analyse_above(rows, 0.5)
  assert above["n"] == sum(r["mult_first"] >= 0.5 for r in rows) < len(rows)
  assert above["anova_resid"]["C"]["p"] > 1e-3
  assert nested_grid.analyse_above(rows, 100.0) is None  # too few trials


def test_cli_writes_json_and_png(tmp_path):
  _grid(tmp_path, lambda mult, m, c: _quadratic(mult))
  out = tmp_path / "out" / "grid"
  proc = subprocess.run([sys.executable, "scripts/nested_grid_plot.py", str(tmp_path), "--out",
                         str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  written = json.loads((tmp_path / "out" / "grid.json").read_text())
  assert written["n"] == 16 and written["above"]["min_mult"] == 1.0
  assert written["above"]["n"] == sum(r["mult_first"] >= 1.0 for r in written["rows"])
  assert (tmp_path / "out" / "grid.png").stat().st_size > 1000
  empty = subprocess.run([sys.executable, "scripts/nested_grid_plot.py", str(tmp_path / "none")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert empty.returncode == 2 and "finished trials" in empty.stderr
