"""The trials' clock: with a step time (`train.step_time_s`, the calibration pass's), the time
cap, the LR schedule and the recorded times read steps x step time, so a trial's learning rate at
step s is the same alone (K = 1), in a cohort of four, and as a single run, and equals the
cosine schedule's closed form on that clock."""

import json
import math
import os

import pytest

from jaxgpt import config as config_lib
from jaxgpt.sweep import cohort
from jaxgpt.train import run as run_lib

STEP_S, CAP_S, LR = 0.5, 4.0, 0.02  # the cap binds after 8 of the 12 steps


def _config(**optimizer):
  c = config_lib.load_file("configs/gated_ngpt.py", "test")
  c.train.update(step_time_s=STEP_S, max_time_s=CAP_S)
  c.optimizer.update(**{"lr": LR, **optimizer})
  return c


def _lrs(path):
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {r["step"]: r["lr"] for r in rows if "lr" in r}


def _closed_form(step: int) -> float:
  """The row of step s logs the LR of that step, taken at progress (s - 1) x STEP_S / CAP_S
  (it beats (s - 1) / 12 steps); cosine from LR to 0, no warm-up."""
  p = min(1.0, max((step - 1) / 12, (step - 1) * STEP_S / CAP_S))
  return LR * 0.5 * (1 + math.cos(math.pi * p))


@pytest.mark.slow
def test_lr_and_cap_read_the_same_clock_at_any_cohort_size(tmp_path):
  alone = cohort.train_cohort([_config()], str(tmp_path / "k1"), solo_steps=0)
  four = cohort.train_cohort([_config(), _config(momentum=0.9), _config(lr=0.01),
                              _config(lr=0.04)], str(tmp_path / "k4"), solo_steps=0)
  single = run_lib.train_and_evaluate(_config(), str(tmp_path / "single"))
  lr1 = _lrs(tmp_path / "k1" / "trial_0" / "metrics.jsonl")
  lr4 = _lrs(tmp_path / "k4" / "trial_0" / "metrics.jsonl")
  lrs = _lrs(tmp_path / "single" / "metrics.jsonl")
  assert sorted(lr1) == [2, 4, 6, 8] and lr1 == lr4 == lrs  # the time cap stops all at step 8
  for step, lr in lr1.items():
    assert math.isclose(lr, _closed_form(step), rel_tol=1e-5), (step, lr)  # f32 cosine
  for s in (alone[0], *four, single):
    assert s["stop_reason"] == "time_cap" and s["steps"] == 8
    assert s["train_time_s"] == 8 * STEP_S and s["step_time_s"] == STEP_S
  assert math.isclose(four[2]["hparams"]["lr"], 0.01)
  with open(os.path.join(tmp_path, "k4", "trial_0", "metrics.jsonl"), encoding="utf-8") as f:
    clocks = [json.loads(line).get("clock_s") for line in f if "train_loss" in line]
  assert clocks[:4] == [1.0, 2.0, 3.0, 4.0]  # the row's clock: steps x step time
