"""Sweep reports: comparisons with the pre-set baseline on a sweep built here (hand-worked t, p
and Holm), censored time to target, and a report of a small real study."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import chex
import pytest

from jaxgpt import report
from jaxgpt.sweep import runner, spec

ROOT = Path(__file__).resolve().parents[1]


def _report_cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxgpt.report", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def _record(name, params, seed, loss, study="s", time_s=1.0):
  return {"name": name, "study": study, "state": "COMPLETE", "params": params, "seed": seed,
          "value": loss, "knobs": {}, "vocab_size": 256, "error": None,
          "curve": [{"step": 1, "val_loss": loss + 1}, {"step": 2, "val_loss": loss}],
          "summary": {"final_val_loss": loss, "val_acc": 0.5, "val_ppl": math.exp(loss),
                      "steps": 10, "solo_step_time_s": time_s / 10, "tokens_per_s": 100.0,
                      "cohort_wall_time_s": 2.0, "stop_reason": "steps",
                      "reached_target": False}}


# A one-knob sweep built here: lr 0.01 is the pre-set baseline; every value ran seeds 0, 1, 2.
LOSSES = {
    0.01: (1.00, 1.10, 1.20),  # the baseline: mean 1.10
    # d = (-0.03, -0.02, -0.04): mean -0.03, sd 0.01, t = -3 sqrt(3) on 2 dof,
    # p = 1 - sqrt(27 / 29) = 0.035099 (two-sided p on 2 dof: 1 - |t| / sqrt(2 + t^2))
    0.02: (0.97, 1.08, 1.16),
    # d = (0.50, 0.52, 0.48): mean 0.5, sd 0.02, t = 25 sqrt(3), p = 1 - sqrt(1875 / 1877)
    # = 0.00053291
    0.04: (1.50, 1.62, 1.68),
    # d = (0.30, -0.02, 0.08): mean 0.12, variance 0.0536 / 2 = 0.0268, t^2 = 0.0144 x 3 / 0.0268
    # = 1.61194, p = 1 - sqrt(1.61194 / 3.61194) = 0.33196
    0.08: (1.30, 1.08, 1.28),
}
P = {0.02: 1 - math.sqrt(27 / 29), 0.04: 1 - math.sqrt(1875 / 1877),
     0.08: 1 - math.sqrt(1.61194 / 3.61194)}


def _sweep_records(losses=LOSSES):
  records = []
  for lr, values in losses.items():
    for seed, loss in enumerate(values):
      records.append(_record(f"t{len(records)}", {"lr": lr}, seed, loss, time_s=1.0 + lr * 100))
  return records


def _rows(md, section, prefix):
  """{first cell: cells} of the table rows starting with `prefix` in `section`."""
  part = md.split(section, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
  rows = [[c.strip() for c in line.split("|")[1:-1]] for line in part.splitlines()
          if line.startswith("| " + prefix)]
  return {r[0]: r for r in rows}


def test_report_compares_with_the_preset_baseline(tmp_path):
  records = _sweep_records()
  # Holm over the m = 3 comparisons: sorted p 0.00053291 x 3 = 0.0015987 (worse),
  # 0.035099 x 2 = 0.070198 (not resolved, though 0.035 alone would be),
  # max(0.070198, 0.33196 x 1) = 0.33196 (not resolved).
  adjusted = {0.04: 3 * P[0.04], 0.02: 2 * P[0.02], 0.08: P[0.08]}
  meta = {"name": "constructed", "knobs": {"lr": "optimizer.lr"}, "loss_ref": 6.0,
          "sampler": "grid", "baseline": {"lr": 0.01}}
  path = report.write_report(records, meta, str(tmp_path))
  md = open(path, encoding="utf-8").read()
  assert "inside the noise" not in md and "vs best" not in md
  header = "| diff to baseline | 95% CI | test | p (Holm) | verdict |"
  seeds = _rows(md, "## Seeds", "lr=")
  sens = _rows(md, "### lr", "0.0")
  assert md.count(header) == 2
  assert "Holm-adjusted over this table's 3 comparisons" in md
  for table, key in ((seeds, "lr={}"), (sens, "{}")):
    assert table[key.format(0.01)][-5:] == ["-", "-", "-", "-", "baseline"]
    expect = {0.02: ("-0.0300", "[-0.0548, -0.0052]", "not resolved with 3 seeds"),
              0.04: ("+0.5000", "[+0.4503, +0.5497]", "worse"),
              0.08: ("+0.1200", "[-0.2867, +0.5267]", "not resolved with 3 seeds")}
    for lr, (diff, ci, words) in expect.items():
      row = table[key.format(lr)][-5:]
      assert row[:3] == [diff, ci, "paired"], row
      chex.assert_trees_all_close(float(row[3]), adjusted[lr], rtol=1e-2)
      assert row[4] == words
  # The old rule, for the record: pooled sigma^2 = (0.02 + 0.0182 + 0.0168 + 0.0296) / 8,
  # 2 sigma / sqrt(3) = 0.11875 < 0.12: lr 0.08 was "outside the noise"; now not resolved.
  sigma, dof = report.noise_floor(LOSSES.values())
  chex.assert_trees_all_close(sigma, math.sqrt(0.0846 / 8))
  assert dof == 8 and 0.12 > 2 * sigma / math.sqrt(3)
  assert f"sigma = {sigma:.4f} (8 degrees of freedom), descriptive only" in md
  # Efficiency: (6.0 - loss) / (time / fastest time): the best trial (lr 0.02, seed 0, time
  # 1 + 2) against the fastest (lr 0.01, time 1 + 1).
  top = [line for line in md.splitlines() if re.match(r"\| t\d", line)][0].split("|")
  chex.assert_trees_all_close(float(top[-2]), (6.0 - 0.97) / ((1 + 2) / (1 + 1)), rtol=1e-3)
  for png in ("loss_curves.png", "sensitivity.png"):
    assert os.path.getsize(tmp_path / png) > 1000


def test_report_without_a_usable_baseline_gives_no_verdicts(tmp_path):
  base = {"name": "constructed", "knobs": {"lr": "optimizer.lr"}, "loss_ref": 6.0}
  # No baseline: never a comparison with the best the data picked.
  md = open(report.write_report(_sweep_records(), base, str(tmp_path / "a"))).read()
  assert report.NO_BASELINE in md
  for row in _rows(md, "## Seeds", "lr=").values():
    assert row[-5:] == ["-"] * 5
  assert not re.search(r"\b(better|worse|not resolved)\b", md.split("## Time to target")[0])
  # A baseline that ran one seed: the other arms are not judged, and the note says why.
  one = {0.01: (1.00,), 0.02: LOSSES[0.02]}
  md = open(report.write_report(_sweep_records(one), {**base, "baseline": {"lr": 0.01}},
                                str(tmp_path / "b"))).read()
  assert "No comparisons: the baseline (lr=0.01) has 1 seed; a comparison needs at least 2 " \
         "seeds per arm" in md
  # An arm with one seed gets "n/a: 1 seed"; the others are still judged.
  one = {0.01: LOSSES[0.01], 0.02: LOSSES[0.02][:1], 0.04: LOSSES[0.04]}
  md = open(report.write_report(_sweep_records(one), {**base, "baseline": {"lr": 0.01}},
                                str(tmp_path / "c"))).read()
  seeds = _rows(md, "## Seeds", "lr=")
  assert seeds["lr=0.02"][-1] == "n/a: 1 seed" and seeds["lr=0.04"][-1] == "worse"
  assert "over this table's 1 comparison," in md


def test_time_to_target_is_censored():
  """k/n and the median with unreached runs counted as never; no mean."""
  records = _sweep_records({0.01: (1.0, 1.1, 1.2), 0.02: (1.0, 1.1)})
  for r, t in zip(records, (10.0, 30.0, None, 5.0, None)):
    r["summary"].update(reached_target=t is not None, time_to_target_s=t)
  text = report.time_to_target_table(records, ["lr"], 1.5)
  # lr 0.01: (10, 30, never) -> median 30 (the median or mean of the reached ones: 20);
  # lr 0.02: (5, never) -> the middle pair holds a never: not reached by half.
  assert "censored" in text and "mean" not in text.split("By knob value")[1].split("\n\n")[1]
  table = {r[1]: r for r in [[c.strip() for c in line.split("|")[1:-1]]
                             for line in text.splitlines() if line.startswith("| lr |")]}
  assert table["0.01"][2:4] == ["2/3", "30"]
  assert table["0.02"][2:4] == ["1/2", "not reached by half"]


@pytest.mark.slow
def test_report_of_a_small_real_study(tmp_path):
  """grid2d:test with the real vmapped cohort trainer, then the report.

  One configuration x 3 seeds: one cohort of K = 3 on gpt.py:test, the shape that
  tests/test_cohort.py compiles too (the persistent compile cache serves the second).
  """
  sweep = spec.load_sweep("configs/sweeps/grid2d.py:test")
  sweep.unlock()
  sweep.space.x["values"], sweep.space.y["values"] = (0.02,), (0.95,)
  sweep.seeds, sweep.cohort_size = (0, 1, 2), 3
  sweep.lock()
  counts = runner.run_worker(sweep, str(tmp_path), progress=False)
  assert counts["done"] == 3
  proc = _report_cli(str(tmp_path))  # the command line, as a user runs it
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = tmp_path / "report"
  assert proc.stdout.strip() == str(out / "report.md")
  md = (out / "report.md").read_text()
  for heading in ("## Top", "## Seeds", "### x (`optimizer.lr`)", "### y (`optimizer.momentum`)",
                  "## Time to target"):
    assert heading in md
  assert "Seed spread: pooled standard deviation of the repeats sigma = " in md  # 3 seeds
  for png in ("loss_curves.png", "sensitivity.png", "heatmap.png"):
    assert os.path.getsize(out / png) > 1000
  # The report's JSON alone rebuilds the same markdown (tests/test_report_groups.py has more).
  proc = _report_cli("--from_json", str(out / "trials.json"), "--markdown",
                     str(tmp_path / "rebuilt" / "report.md"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "rebuilt" / "report.md").read_text() == md
  records, _ = report.load_records(str(tmp_path))
  for r in records:  # what the study recorded is what each trial's run wrote
    run = tmp_path / r["run_dir"] / f"trial_{r['cohort_index']}" / "summary.json"
    chex.assert_trees_all_close(r["summary"]["final_val_loss"],
                                json.loads(run.read_text())["final_val_loss"])
    assert r["curve"] and math.isfinite(r["summary"]["final_val_loss"])
    assert r["summary"]["final_val_loss"] < math.log(256)  # it learned something
    assert f"{r['summary']['final_val_loss']:.4g}" in md


def test_report_cli_errors_are_one_line(tmp_path):
  """No study yet, no directory, an unknown flag: one `error:` line and exit code 2."""
  for args, words in (((str(tmp_path),), "no study database"),
                      ((), "give one sweep directory"),
                      ((str(tmp_path), "--no_such_flag"), "no_such_flag")):
    proc = _report_cli(*args)
    assert proc.returncode == 2, (args, proc.stderr[-2000:])
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert words in proc.stderr
