"""What a trial scores: its time on the trial's clock, the efficiency score, the value minimised.

A trial's time is its solo-equivalent training time (`train_time_s` in its summary: steps x
`step_time_s`, the seconds per step its clock counted; docs/design.md "One training clock"),
never the cohort's wall time, so a score does not depend on how many trials shared a program or
on what else the machine ran. Objectives (sweep `objective`, all minimised):
- `final_val_loss`, `best_val_loss`, `val_bpb`: the summary's value;
- `val_bpb_roundtrip`: the val_bpb of the trial's artifact, read back in a fresh process
  (`export.at_end`; the export run hook writes each finished trial's artifact);
- `time_to_target_s`: the time at the first evaluation at or below `train.target_loss`; a trial
  that never reaches it scores +inf (time to target is censored: reports give reached k/n and a
  median, never a mean);
- `efficiency`: the time-to-target study's adjusted objective for runs that reach no target,
  `(loss_ref - final_val_loss) / (time / time_ref)` (higher is better; Optuna is told its
  negative). `loss_ref` and `time_ref` rescale it without changing any ranking.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

OBJECTIVES = ("final_val_loss", "best_val_loss", "val_bpb", "val_bpb_roundtrip",
              "time_to_target_s", "efficiency")


def _finite(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def trial_time(summary: Mapping) -> float | None:
  """The trial's training time in seconds on its clock (solo-equivalent); None if unknown.

  Summaries written before `train_time_s` existed: steps x the measured solo step time, else
  the cohort's training clock."""
  t = summary.get("train_time_s")
  if _finite(t):
    return float(t)
  steps, step_s = summary.get("steps"), summary.get("solo_step_time_s")
  if _finite(steps) and _finite(step_s):
    return float(steps) * float(step_s)
  t = summary.get("cohort_train_time_s")
  return float(t) if _finite(t) else None


def efficiency(loss: float, time_s: float, loss_ref: float, time_ref: float) -> float:
  """`(loss_ref - loss) / (time_s / time_ref)`: loss gained below the reference per unit of
  time, in units of the reference time (the study used loss_ref 6.0, time_ref 665 s)."""
  if not time_s > 0 or not time_ref > 0:
    raise ValueError(f"efficiency needs positive times (time_s={time_s!r}, "
                     f"time_ref={time_ref!r})")
  return (loss_ref - loss) / (time_s / time_ref)


def trial_efficiency(summary: Mapping, loss_ref: float, time_ref: float) -> float | None:
  """The efficiency score of one trial's summary; None without a finite loss or time."""
  loss, t = summary.get("final_val_loss"), trial_time(summary)
  if not (_finite(loss) and _finite(t) and t > 0):
    return None
  return efficiency(float(loss), t, loss_ref, time_ref)


def objective_value(summary: Mapping, objective: str, loss_ref: float | None = None,
                    time_ref: float | None = None) -> float:
  """The value Optuna minimises for `summary` (+inf when it cannot be scored)."""
  if objective == "time_to_target_s":
    v = summary.get("time_to_target_s")
    return float(v) if summary.get("reached_target") and _finite(v) else math.inf
  if objective == "efficiency":
    if loss_ref is None or time_ref is None:
      raise ValueError("objective 'efficiency' needs loss_ref and time_ref")
    e = trial_efficiency(summary, loss_ref, time_ref)
    return -e if e is not None else math.inf
  v = summary.get(objective)
  return float(v) if _finite(v) else math.inf
