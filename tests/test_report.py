"""Sweep reports: the noise floor on a constructed case, and a report of a small real study."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
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


def test_noise_floor_flags_differences_inside_the_noise(tmp_path):
  a = [1.00, 1.02, 0.98]  # best
  b = [1.01, 1.03, 0.99]  # 0.01 worse: inside 2 sigma / sqrt(3) = 0.023
  c = [1.50, 1.52, 1.48]  # 0.5 worse: a real difference
  records = []
  for lr, losses in ((0.01, a), (0.02, b), (0.04, c)):
    for seed, loss in enumerate(losses):
      records.append(_record(f"t{len(records)}", {"lr": lr}, seed, loss,
                             time_s=1.0 + lr * 100))
  sigma, dof = report.noise_floor([a, b, c])
  pooled = math.sqrt(sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in (a, b, c)) / 6)
  chex.assert_trees_all_close(sigma, pooled)  # = 0.02
  assert dof == 6
  assert report.inside_noise(0.01, sigma, 3) and not report.inside_noise(0.5, sigma, 3)
  assert not report.inside_noise(0.01, None, 3)  # no repeats: nothing can be called noise

  path = report.write_report(records, {"name": "constructed", "knobs": {"lr": "optimizer.lr"},
                                       "loss_ref": 6.0}, str(tmp_path))
  md = open(path, encoding="utf-8").read()
  rows = {line.split("|")[1].strip(): line for line in md.splitlines()
          if line.startswith("| lr=")}
  assert "best" in rows["lr=0.01"]
  assert "inside the noise" in rows["lr=0.02"]
  assert "inside the noise" not in rows["lr=0.04"]
  assert "sigma = 0.0200" in md
  # Efficiency: (6.0 - loss) / (time / fastest time); the best trial (lr 0.01) is the fastest.
  top = [line for line in md.splitlines() if re.match(r"\| t\d", line)][0].split("|")
  chex.assert_trees_all_close(float(top[-2]), 6.0 - 0.98, rtol=1e-3)
  for png in ("loss_curves.png", "sensitivity.png"):
    assert os.path.getsize(tmp_path / png) > 1000


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
  assert "Noise floor: sigma = " in md  # measured from the three seeds
  for png in ("loss_curves.png", "sensitivity.png", "heatmap.png"):
    assert os.path.getsize(out / png) > 1000
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
