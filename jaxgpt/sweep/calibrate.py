"""The calibration pass: each static structure's solo step time, and the plan it prices.

A trial's clock is solo-equivalent time (docs/design.md "One training clock"): steps x the
seconds one step of its static structure takes when it runs alone. The calibration pass measures
that once per structure, before the sweep trains: one K = 1 program, compiled, one warm-up step,
then `repeats` timings of `steps` steps each (at least 3), with one worker and nothing else
running. The median is the structure's step time, written into every trial's
`train.step_time_s`, so the time cap, the LR schedule and time to target read the same clock
whatever the cohort size and whatever else the machine runs while the sweep trains (the
time-to-target study's two identical runs took 665 s and 2,697 s: load, not method). The spread
(max - min) / median is kept and reported. A structure first met during the sweep (stage 2's new
batch size, say) is calibrated then, marked `during_sweep`.

`DIR/calibration.json` holds the table, written atomically under a file lock:
  {"steps": S, "repeats": R, "structures": {key: {"label", "step_time_s", "times_s", "spread",
   "during_sweep"}}}
The plan (`python -m jaxgpt.sweep ... --plan`) prints runs x measured time per run.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
from typing import Any, Callable, Mapping, Sequence

from jaxgpt import files

CALIBRATION_FILE = "calibration.json"

MeasureFn = Callable[[Any, int, int], list]  # (config, steps, repeats) -> s/step per repeat


def structure_id(static_key: str) -> str:
  """A short stable id of a static structure (the hash of its static key)."""
  return hashlib.sha1(static_key.encode()).hexdigest()[:12]


def path(workdir: str) -> str:
  return os.path.join(workdir, CALIBRATION_FILE)


def load(workdir: str) -> dict:
  p = path(workdir)
  if not os.path.exists(p):
    return {"structures": {}}
  return files.read_json(p)


def default_measure() -> MeasureFn:
  import jax  # loads JAX: only when a real calibration runs

  from jaxgpt.sweep import cohort  # (the trainer's module, imported with JAX)

  def measure(config, steps: int, repeats: int) -> list:
    return cohort.solo_step_times(config, jax.devices(), steps, repeats)

  return measure


def entry(label: str, times: Sequence[float], during_sweep: bool) -> dict:
  med = statistics.median(times)
  return {"label": label, "step_time_s": med, "times_s": list(times),
          "spread": (max(times) - min(times)) / med if med > 0 else 0.0,
          "during_sweep": during_sweep}


def calibrate(workdir: str, structures: Mapping[str, tuple[str, Any]], *, steps: int,
              repeats: int, measure: MeasureFn | None = None, during_sweep: bool = False,
              progress: bool = False) -> dict:
  """Measures every structure (id -> (label, config)) missing from DIR/calibration.json and
  stores it; returns the table. Measured one at a time, each stored as soon as it is done."""
  table = load(workdir)
  todo = [(sid, lc) for sid, lc in structures.items() if sid not in table["structures"]]
  if not todo:
    return table
  measure = measure or default_measure()
  bar = None
  if progress:
    import tqdm
    bar = tqdm.tqdm(total=len(todo), desc="calibration", unit="structure", dynamic_ncols=True)
  for sid, (label, config) in todo:
    times = [float(t) for t in measure(config, steps, repeats)]
    with files.file_lock(path(workdir) + ".lock"):
      table = load(workdir)
      table.setdefault("steps", steps)
      table.setdefault("repeats", repeats)
      table["structures"].setdefault(sid, entry(label, times, during_sweep))
      files.atomic_write_json(path(workdir), table)
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  return table


def step_time(table: Mapping, sid: str) -> float:
  return float(table["structures"][sid]["step_time_s"])


def planned_steps(config, step_time_s: float) -> int:
  """Steps a run takes at most: train.steps, or fewer under the time cap on this clock."""
  steps = int(config.train.steps)
  cap = config.train.max_time_s
  if cap is not None and step_time_s > 0:
    steps = min(steps, math.ceil(cap / step_time_s))
  return steps


def plan_rows(table: Mapping, runs: Mapping[str, tuple[str, Any, int]]) -> list[dict]:
  """One row per structure (id -> (label, config, runs)): step time, spread, steps and
  seconds per run, seconds for all its runs (solo-equivalent; evaluations not counted)."""
  rows = []
  for sid, (label, config, n) in runs.items():
    e = table["structures"][sid]
    st = float(e["step_time_s"])
    steps = planned_steps(config, st)
    rows.append({"structure": label, "runs": n, "step_time_s": st, "spread": e["spread"],
                 "steps_per_run": steps, "s_per_run": steps * st, "total_s": n * steps * st})
  return rows


def format_plan(rows: Sequence[Mapping], extra: str = "") -> str:
  head = ("structure", "runs", "s/step", "spread", "steps/run", "s/run", "total s")
  lines = [" | ".join(head)]
  for r in rows:
    lines.append(" | ".join((r["structure"], str(r["runs"]), f"{r['step_time_s']:.4f}",
                             f"{100 * r['spread']:.1f}%", str(r["steps_per_run"]),
                             f"{r['s_per_run']:.1f}", f"{r['total_s']:.0f}")))
  total = sum(r["total_s"] for r in rows)
  n = sum(r["runs"] for r in rows)
  lines.append(f"total: {n} runs, {total:.0f} s ({total / 3600:.2f} h) of solo-equivalent "
               "training; cohorts share programs, evaluations come on top" + extra)
  return "\n".join(lines)
