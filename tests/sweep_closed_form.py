"""A closed-form stand-in for `cohort.train_cohort`, injected into the sweep runner by tests.

Same signature and summary keys; the "loss" of a trial is a known function of its learning
rate, momentum and seed, so tests can check what the study records against a formula. It
writes `trial_<i>/summary.json` like the real trainer and logs every trial it trains (pid,
params, seed) to `$SWEEP_TRAIN_LOG`, so tests can count who ran what. `$SWEEP_TRAIN_DELAY_S`
sleeps per evaluation (to kill a worker mid-cohort).
"""

import json
import math
import os
import time

from jaxgpt import files


def final_loss(lr: float, momentum: float, seed: int) -> float:
  return 2.0 + math.log10(lr / 0.02) ** 2 + 10.0 * (momentum - 0.95) ** 2 + 0.01 * seed


def closed_form(configs, workdir, *, on_eval=None, clock=time.perf_counter):
  delay = float(os.environ.get("SWEEP_TRAIN_DELAY_S", "0"))
  log = os.environ.get("SWEEP_TRAIN_LOG")
  out = []
  for i, c in enumerate(configs):
    lr, mom, seed = c.optimizer.lr, c.optimizer.momentum, c.train.seed
    final = final_loss(lr, mom, seed)
    steps, every = c.train.steps, c.train.eval_every
    curve, reason, last = [], "steps", steps
    for step in range(every, steps + 1, every):
      time.sleep(delay)
      v = final + (1.0 - step / steps)
      curve.append({"step": step, "train_loss": v, "val_loss": v})
      if on_eval is not None and on_eval(i, step, {"val_loss": v}):
        reason, last = "pruned", step
        break
    v = curve[-1]["val_loss"]
    target = c.train.target_loss
    first = next((p["step"] for p in curve if target is not None and p["val_loss"] <= target),
                 None)
    reached = first is not None
    s = dict(final_val_loss=v, best_val_loss=v, val_bpb=v / math.log(2), val_acc=1 / v,
             val_ppl=math.exp(v), steps=last, stop_reason=reason, reached_target=reached,
             step_to_target=first, time_to_target_s=first * 0.01 if reached else None,
             train_time_s=last * 0.01, step_time_s=0.01, solo_step_time_s=0.01,
             cohort_train_time_s=0.01 * steps, cohort_wall_time_s=0.02 * steps,
             compile_time_s=0.05, tokens_per_s=1000.0, num_params=100, curve=curve)
    files.atomic_write_json(os.path.join(workdir, f"trial_{i}", "summary.json"), s)
    if log:
      with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "lr": lr, "momentum": mom, "seed": seed}) + "\n")
    out.append(s)
  return out


def one_group(configs):
  return [list(range(len(configs)))]
