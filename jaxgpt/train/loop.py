"""The training loop: one skeleton for single runs and vmapped cohorts of trials.

A `Program` is what gets trained: a single run (`jaxgpt.train.run.SingleRun`, K = 1) or a cohort
of K trials stacked on a leading axis (`jaxgpt.sweep.cohort`); `jaxgpt.train.run.drive` runs
either around this loop. The loop owns, for both:
- the clock: `block_until_ready` at every timing boundary (log, eval, checkpoint, end);
  compilation (ahead of time), evaluation and checkpoint starts are timed apart from training
  time, and the schedule's `progress = max(step / train.steps, clock_s / train.max_time_s)`
  (docs/design.md "One training clock"). `clock_s` is the trials' clock: the measured training
  time, or, when the program gives a step time (`train.step_time_s`, a cohort's solo step
  time), steps x that step time: the solo-equivalent time the time cap, the schedule and time
  to target then read, the same at any cohort size and under any machine load;
- the event schedule: log every `train.log_every`, evaluate every `train.eval_every`, checkpoint
  every `train.checkpoint_every` (default: eval_every), the target loss, the time cap, Ctrl-C /
  SIGTERM (save, then stop) and divergence;
- the stop reasons of each trial (`STOP_*`), its best and last validation loss, its step and
  time to target, its curve;
- resume checks (the config of every trial against the checkpoint's) and the checkpoint meta.

Hooks: the model family's sown loss terms and metrics reach the logs through the train step
(`jaxgpt.models.aux`, `registry.ModelFamily.collections`); the optimizer's `host_update`
(`registry.Optimizer`) runs after every periodic evaluation and may return a new state.

"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from jaxgpt import config as config_lib
from jaxgpt import files
from jaxgpt.optim import learning_rate
from jaxgpt.optim.schedules import progress as clock_progress
from jaxgpt.train import metrics as metrics_lib
from jaxgpt.train import setup as setup_lib

STOP_STEPS, STOP_TARGET, STOP_TIME = "steps", "target", "time_cap"
STOP_INTERRUPT, STOP_DIVERGED, STOP_PRUNED = "interrupted", "diverged", "pruned"
FINISHED = (STOP_STEPS, STOP_TARGET, STOP_TIME)

OnEval = Callable[[int, int, dict], bool]  # (trial, step, metrics) -> prune this trial?


class ConfigChangedError(config_lib.ConfigError):
  """Resuming a workdir with a different config, without permission."""


# ------------------------------------------------------------------------------------------
# Small pieces.

class Interrupt:
  """First Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step; a second aborts."""

  def __init__(self):
    self.requested = False
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGINT, signal.SIGTERM):
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    print("\n[jaxgpt] interrupt received: saving a checkpoint, then exiting "
          "(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

  def __exit__(self, *exc):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
    return False


def data_seed(tcfg) -> int:
  """The seed of the training data order: `train.data_seed`, or `train.seed` when unset."""
  return tcfg.seed if tcfg.data_seed is None else tcfg.data_seed


def check_resume(saved: Sequence[dict], current: Sequence[dict], allow: bool = False) -> bool:
  """Compares each trial's saved config with the current one. Differences raise
  ConfigChangedError naming every key, unless `allow`; returns whether any key differs."""
  lines = []
  for i, (a, b) in enumerate(zip(saved, current)):
    who = f"trial {i} " if len(current) > 1 else ""
    for key, (x, y) in config_lib.config_diff(a, b).items():
      lines.append(f"  {who}{key}: {x!r} -> {y!r}")
  if len(saved) != len(current):
    lines.append(f"  number of trials: {len(saved)} -> {len(current)}")
    allow = False
  if lines and not allow:
    raise ConfigChangedError(
        "this workdir holds a run with a different config; differing keys:\n" + "\n".join(lines)
        + "\nuse another --workdir, or pass --allow_config_change to resume anyway")
  return bool(lines)


# Logged diagnostics whose last values a trial's record keeps (its summary shows them): the
# model's `metric/...` and the optimizer's `opt/...` (the nested controller's multipliers).
DIAGNOSTICS = ("metric/", "opt/")


def new_record(config) -> dict:
  """The host-side record of one trial (saved in the checkpoint meta)."""
  return {"stop_reason": None, "best_val_loss": None, "last_val_loss": None,
          "step_to_target": None, "time_to_target_s": None, "steps": 0, "curve": [],
          "target_loss": config.train.target_loss, "last_metrics": {}}


def aot_compile(fn: Callable, abstract_args: Sequence[Any], *, in_shardings=None,
                out_shardings=None, donate_argnums=()) -> Any:
  """`jax.jit(fn).lower(*abstract_args).compile()`: the program compiled ahead of time."""
  kw = {} if in_shardings is None else {"in_shardings": in_shardings}
  return jax.jit(fn, out_shardings=out_shardings, donate_argnums=donate_argnums,
                 **kw).lower(*abstract_args).compile()


def abstract_batches(config, sharding, lead: tuple[int, ...] = ()) -> tuple[dict, dict]:
  """ShapeDtypeStructs of one train batch ([*lead, B, T]) and one eval batch ([EB, T])."""
  b, t, eb = config.train.batch_size, config.data.seq_len, setup_lib.eval_batch_size(config)
  train = {n: jax.ShapeDtypeStruct((*lead, b, t), jnp.int32, sharding=sharding)
           for n in ("inputs", "targets")}
  ev = {"inputs": jax.ShapeDtypeStruct((eb, t), jnp.int32, sharding=sharding),
        "targets": jax.ShapeDtypeStruct((eb, t), jnp.int32, sharding=sharding),
        "weights": jax.ShapeDtypeStruct((eb, t), jnp.float32, sharding=sharding)}
  return train, ev


@dataclasses.dataclass
class Clock:
  """Training and evaluation seconds (restored on resume) and this process's training share."""
  train_s: float = 0.0
  eval_s: float = 0.0
  steps_this_run: int = 0
  train_s_this_run: float = 0.0

  def close_segment(self, seconds: float, steps: int) -> None:
    self.train_s += seconds
    self.train_s_this_run += seconds
    self.steps_this_run += steps


# ------------------------------------------------------------------------------------------
# The skeleton.

@dataclasses.dataclass
class Loop:
  """One training loop over `program` (a single run or a cohort); see the module docstring.

  The program provides: `k`, `configs`, `tokens_per_step`, `freezes_diverged` (its step keeps
  a diverged trial's last finite state, so the carry may still be saved), `step(carry, batch,
  progress)`,
  `observe(carry, metrics) -> [per-trial dict]`, `evaluate(carry, split, max_tokens, desc,
  show) -> [per-trial dict]`, `freeze(carry, live)`, `host_update(carry, step, evals)`.
  """
  program: Any
  carry: Any
  batches: Any  # an iterator of batches (the program places them)
  records: list[dict]
  clock: Clock
  step: int
  writers: list[metrics_lib.MetricsWriter]
  save: Callable[["Loop"], None]
  on_eval: OnEval | None = None
  time_fn: Callable[[], float] = time.perf_counter
  show: bool = False
  desc: str = "train"
  step_time_s: float | None = None  # the trials' clock counts steps x this; None: measured
  profiler: Any = None  # a `train.profile.Window` (train.profile_steps), or None
  _saved: int | None = None  # the step of the last checkpoint this loop wrote

  def meta(self) -> dict:
    """The checkpoint meta both kinds of program save: the step, the clock, the records."""
    return {"step": self.step, "train_time_s": self.clock.train_s,
            "eval_time_s": self.clock.eval_s, "trials": self.records}

  def clock_s(self, measured_s: float, step: int | None = None) -> float:
    """The trials' clock after `step` steps (default: the loop's): steps x step_time_s, or
    the measured training seconds `measured_s` when there is no step time."""
    if self.step_time_s is None:
      return measured_s
    return (self.step if step is None else step) * self.step_time_s

  @property
  def live(self) -> list[bool]:
    return [r["stop_reason"] is None for r in self.records]

  def run(self) -> None:
    """Trains until every trial has stopped or the step budget is spent."""
    tcfg = self.program.configs[0].train
    ckpt_every = tcfg.checkpoint_every or tcfg.eval_every
    bar = tqdm(total=tcfg.steps, initial=self.step, disable=not self.show, dynamic_ncols=True,
               desc=self.desc, unit="step", file=sys.stderr, leave=self.program.k == 1)
    try:
      with Interrupt() as interrupt:
        seg_start, seg_steps = self.time_fn(), 0
        while any(self.live) and self.step < tcfg.steps:
          if interrupt.requested:
            self._stop_live(STOP_INTERRUPT)
            break
          p = clock_progress(self.step, tcfg.steps,
                             self.clock_s(self.clock.train_s + self.time_fn() - seg_start),
                             tcfg.max_time_s)
          batch = next(self.batches)
          if self.profiler is not None and self.profiler.starts_before(self.step):
            seg_start += self._untimed(self.profiler.start)  # not training time
          self.carry, m = self.program.step(self.carry, batch, p)
          self.step += 1
          if self.profiler is not None and self.profiler.stops_after(self.step):
            jax.block_until_ready((self.carry, m))  # the trace holds the steps' device work
            seg_start += self._untimed(self.profiler.close)  # writing the trace: not training
          seg_steps += 1
          bar.update(1)
          do_eval = self.step % tcfg.eval_every == 0 or self.step == tcfg.steps
          do_ckpt = self.step % ckpt_every == 0
          time_up = (tcfg.max_time_s is not None and self.clock_s(
              self.clock.train_s + self.time_fn() - seg_start) >= tcfg.max_time_s)
          if not (do_eval or do_ckpt or time_up or self.step % tcfg.log_every == 0
                  or self.step == tcfg.steps):
            continue
          # ---- timing boundary: wait for the device, close the training segment
          obs = self.program.observe(self.carry, m)
          seg = self.time_fn() - seg_start
          self.clock.close_segment(seg, seg_steps)
          self._boundary(obs, p, do_eval, seg, seg_steps, bar)
          # A program that cannot freeze a diverged trial at its last good state holds NaNs
          # now: keep the checkpoints saved before it instead.
          unsaveable = not self.program.freezes_diverged and any(
              r["stop_reason"] == STOP_DIVERGED for r in self.records)
          if (do_ckpt or not any(self.live)) and not unsaveable:
            self._save()
          seg_start, seg_steps = self.time_fn(), 0
        if seg_steps:  # an interrupt mid-segment: close it so the clock stays exact
          jax.block_until_ready(self.carry)
          self.clock.close_segment(self.time_fn() - seg_start, seg_steps)
    finally:
      bar.close()
      if self.profiler is not None:
        self.profiler.close()
    if STOP_INTERRUPT in [r["stop_reason"] for r in self.records] and self._saved != self.step:
      self._save()  # (an interrupt right after a checkpoint: that one stands)

  def _untimed(self, fn: Callable[[], None]) -> float:
    """Runs `fn()`; returns the seconds it took on the loop's clock (kept off the training
    clock: the segment's start moves forward by as much)."""
    t0 = self.time_fn()
    fn()
    return self.time_fn() - t0

  def _save(self) -> None:
    self.save(self)
    self._saved = self.step

  def _stop_live(self, reason: str) -> None:
    for r in self.records:
      if r["stop_reason"] is None:
        r["stop_reason"] = reason

  def _boundary(self, obs: list[dict], p: float, do_eval: bool, seg: float, seg_steps: int,
                bar) -> None:
    """Logs, evaluates and decides each live trial's stop at a timing boundary."""
    tcfg = self.program.configs[0].train
    logged = [i for i, live in enumerate(self.live) if live]
    for i in logged:
      self.records[i]["steps"] = obs[i]["steps"]
      if not obs[i]["finite"]:
        self.records[i]["stop_reason"] = STOP_DIVERGED
    evals = None
    if do_eval and any(self.live):
      t0 = self.time_fn()
      evals = self.program.evaluate(self.carry, "val", tcfg.eval_tokens, "eval", False)
      self.clock.eval_s += self.time_fn() - t0
    tokens_per_s = seg_steps * self.program.tokens_per_step / max(seg, 1e-9)
    for i in logged:
      rec, cfg = self.records[i], self.program.configs[i]
      # p was the last step's progress; that step began with self.step - 1 steps done.
      row = {"elapsed_s": self.clock.train_s, "lr": learning_rate(cfg.optimizer, p, self.step - 1),
             "tokens_per_s": tokens_per_s,
             **({} if self.step_time_s is None else {"clock_s": self.clock_s(0.0)}),
             **{k: v for k, v in obs[i].items() if k not in ("steps", "finite")}}
      point = {"step": self.step, "train_loss": files.finite_or_none(row["train_loss"]),
               "val_loss": None}
      if evals is not None and rec["stop_reason"] is None:
        row.update(evals[i])
        val = evals[i]["val_loss"]
        point["val_loss"] = rec["last_val_loss"] = val
        rec["best_val_loss"] = val if rec["best_val_loss"] is None else min(
            rec["best_val_loss"], val)
        if (rec["target_loss"] is not None and val <= rec["target_loss"]
            and rec["step_to_target"] is None):
          rec.update(step_to_target=self.step, time_to_target_s=self.clock_s(self.clock.train_s))
          if cfg.train.stop_at_target:
            rec["stop_reason"] = STOP_TARGET
        if rec["stop_reason"] is None and self.on_eval is not None and self.on_eval(
            i, self.step, dict(evals[i], train_loss=row["train_loss"])):
          rec["stop_reason"] = STOP_PRUNED
      rec["curve"].append(point)
      rec["last_metrics"] = {k: files.finite_or_none(v) for k, v in row.items()
                             if k.startswith(DIAGNOSTICS)}
      self.writers[i].write(self.step, **row)
    if evals is not None:
      self.carry = self.program.host_update(self.carry, self.step, evals)
    time_up = (tcfg.max_time_s is not None
               and self.clock_s(self.clock.train_s) >= tcfg.max_time_s)
    for i in logged:
      if self.records[i]["stop_reason"] is None and (time_up or self.step >= tcfg.steps):
        self.records[i]["stop_reason"] = (STOP_TIME if time_up and self.step < tcfg.steps
                                          else STOP_STEPS)
    self.carry = self.program.freeze(self.carry, self.live)
    # Under a time budget the step total is only a ceiling: show the training clock too.
    clock = ({} if tcfg.max_time_s is None else
             {"train_s": f"{self.clock_s(self.clock.train_s):.0f}/{tcfg.max_time_s:.0f}"})
    if self.program.k == 1:
      last = self.records[0]["last_val_loss"]
      bar.set_postfix(loss=f"{obs[0]['train_loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}",
                      **({"val": f"{last:.3f}"} if last is not None else {}), **clock)
    else:
      bar.set_postfix(live=sum(self.live), **clock)


def resume_records(saved: dict, configs: Sequence[Any], changed: bool) -> list[dict]:
  """Each trial's record from a checkpoint's meta: an interrupted trial runs on; with an
  allowed config change (e.g. more steps) every stop is lifted, as the old one may not hold."""
  if "trials" in saved:
    records = saved["trials"]
  else:  # a single-run checkpoint written before the trial records
    records = [dict(new_record(configs[0]), **{
        k: saved.get(k) for k in ("stop_reason", "best_val_loss", "step_to_target",
                                  "time_to_target_s")})]
  for rec, cfg in zip(records, configs):
    for key, value in new_record(cfg).items():
      rec.setdefault(key, value)
    rec["target_loss"] = cfg.train.target_loss
    if rec["stop_reason"] == STOP_INTERRUPT or (changed and rec["stop_reason"] in FINISHED):
      rec["stop_reason"] = None
  return records


__all__ = ["Clock", "ConfigChangedError", "FINISHED", "Interrupt", "Loop", "OnEval",
           "abstract_batches", "aot_compile", "check_resume", "data_seed", "new_record",
           "resume_records"]
