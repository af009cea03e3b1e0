"""The training loop: one skeleton for single runs and vmapped cohorts of trials.

A `Program` is what gets trained: a single run (`SingleRun` here, K = 1) or a cohort of K
trials stacked on a leading axis (`jaxgpt.sweep.cohort`). The loop owns, for both:
- the clock: `block_until_ready` at every timing boundary (log, eval, checkpoint, end);
  compilation (ahead of time), evaluation and checkpoint starts are timed apart from training
  time, and the schedule's `progress = max(step / train.steps, train_time_s / train.max_time_s)`
  (docs/design.md "One training clock");
- the event schedule: log every `train.log_every`, evaluate every `train.eval_every`, checkpoint
  every `train.checkpoint_every` (default: eval_every), the target loss, the time cap, Ctrl-C /
  SIGTERM (save, then stop) and divergence;
- the stop reasons of each trial (`STOP_*`), its best and last validation loss, its step and
  time to target, its curve;
- resume checks (the config of every trial against the checkpoint's) and the checkpoint meta.

Hooks: the model family's sown loss terms and metrics reach the logs through the train step
(`jaxgpt.models.aux`, `registry.ModelFamily.collections`); the optimizer's `host_update`
(`registry.Optimizer`) runs after every periodic evaluation and may return a new state.

`train_and_evaluate(config, workdir)` is the single run: files `config.json`, `metrics.jsonl`
(every row has `step` and `elapsed_s`), `summary.json`, `checkpoints/`, `tensorboard/`,
`curves.png` (docs/design.md "Files a run writes").
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from absl import logging
from tqdm.auto import tqdm

from jaxgpt import config as config_lib
from jaxgpt import data, files, models, registry
from jaxgpt.export.exporter import export_workdir
from jaxgpt.optim import learning_rate, partition
from jaxgpt.optim.schedules import progress as clock_progress
from jaxgpt.parallel import mesh as mesh_lib
from jaxgpt.parallel import rules as rules_lib
from jaxgpt.train import checkpoint as ckpt_lib
from jaxgpt.train import evaluate as eval_lib
from jaxgpt.train import metrics as metrics_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib
from jaxgpt.train.workdir import WorkdirLock

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


def new_record(config) -> dict:
  """The host-side record of one trial (saved in the checkpoint meta)."""
  return {"stop_reason": None, "best_val_loss": None, "last_val_loss": None,
          "step_to_target": None, "time_to_target_s": None, "steps": 0, "curve": [],
          "target_loss": config.train.target_loss}


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
  _saved: int | None = None  # the step of the last checkpoint this loop wrote

  def meta(self) -> dict:
    """The checkpoint meta both kinds of program save: the step, the clock, the records."""
    return {"step": self.step, "train_time_s": self.clock.train_s,
            "eval_time_s": self.clock.eval_s, "trials": self.records}

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
                             self.clock.train_s + self.time_fn() - seg_start, tcfg.max_time_s)
          self.carry, m = self.program.step(self.carry, next(self.batches), p)
          self.step += 1
          seg_steps += 1
          bar.update(1)
          do_eval = self.step % tcfg.eval_every == 0 or self.step == tcfg.steps
          do_ckpt = self.step % ckpt_every == 0
          time_up = (tcfg.max_time_s is not None
                     and self.clock.train_s + self.time_fn() - seg_start >= tcfg.max_time_s)
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
    if STOP_INTERRUPT in [r["stop_reason"] for r in self.records] and self._saved != self.step:
      self._save()  # (an interrupt right after a checkpoint: that one stands)

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
      row = {"elapsed_s": self.clock.train_s, "lr": learning_rate(cfg.optimizer, p),
             "tokens_per_s": tokens_per_s,
             **{k: v for k, v in obs[i].items() if k not in ("steps", "finite")}}
      point = {"step": self.step, "train_loss": files.finite_or_none(row["train_loss"]),
               "val_loss": None}
      if evals is not None and rec["stop_reason"] is None:
        row.update(evals[i])
        val = evals[i]["val_loss"]
        point["val_loss"] = rec["last_val_loss"] = val
        rec["best_val_loss"] = val if rec["best_val_loss"] is None else min(
            rec["best_val_loss"], val)
        if rec["target_loss"] is not None and val <= rec["target_loss"]:
          rec.update(stop_reason=STOP_TARGET, step_to_target=self.step,
                     time_to_target_s=self.clock.train_s)
        elif self.on_eval is not None and self.on_eval(
            i, self.step, dict(evals[i], train_loss=row["train_loss"])):
          rec["stop_reason"] = STOP_PRUNED
      rec["curve"].append(point)
      self.writers[i].write(self.step, **row)
    if evals is not None:
      self.carry = self.program.host_update(self.carry, self.step, evals)
    time_up = tcfg.max_time_s is not None and self.clock.train_s >= tcfg.max_time_s
    for i in logged:
      if self.records[i]["stop_reason"] is None and (time_up or self.step >= tcfg.steps):
        self.records[i]["stop_reason"] = (STOP_TIME if time_up and self.step < tcfg.steps
                                          else STOP_STEPS)
    self.carry = self.program.freeze(self.carry, self.live)
    # Under a time budget the step total is only a ceiling: show the training clock too.
    clock = ({} if tcfg.max_time_s is None
             else {"train_s": f"{self.clock.train_s:.0f}/{tcfg.max_time_s:.0f}"})
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


# ------------------------------------------------------------------------------------------
# A single run.

class SingleRun:
  """The program of one run on its mesh: the jitted step of `train.step`, AOT-compiled."""

  k = 1
  freezes_diverged = False  # the plain step: a NaN update is applied

  def __init__(self, config, run: setup_lib.Run):
    self.config, self.run, self.configs = config, run, [config]
    self.tokens_per_step = config.train.batch_size * config.data.seq_len
    self.family = models.family(config.model.name)
    self.host_update_fn = registry.OPTIMIZERS.get(config.optimizer.name).host_update
    self._train = self._eval = None

  def compile(self) -> float:
    t0 = time.perf_counter()
    run, cfg = self.run, self.config
    repl = rules_lib.replicated(run.mesh)
    batch_sh = rules_lib.batch_sharding(run.mesh)
    train_batch, eval_batch = abstract_batches(cfg, batch_sh)
    train_step = step_lib.make_train_step(run.model.apply, run.tx, cfg.train.grad_accum,
                                          self.family.collections, self.family.rng_streams,
                                          cfg.train.seed)
    tb = setup_lib.token_bytes_array(run.spec, run.vocab_size)
    eval_step = step_lib.make_eval_step(run.model.apply, None if tb is None else jnp.asarray(tb))
    with run.context():
      self._train = aot_compile(
          train_step, (run.abstract_state, train_batch,
                       jax.ShapeDtypeStruct((), jnp.float32, sharding=repl)),
          in_shardings=(run.state_shardings, batch_sh, repl),
          out_shardings=(run.state_shardings, repl), donate_argnums=(0,))
      self._eval = aot_compile(eval_step, (run.abstract_state.params, eval_batch),
                               in_shardings=(run.state_shardings.params, batch_sh),
                               out_shardings=repl)
    return time.perf_counter() - t0

  def step(self, state, batch, progress):
    return self._train(state, rules_lib.global_batch(batch, self.run.mesh), jnp.float32(progress))

  def observe(self, state, metrics) -> list[dict]:
    m = jax.device_get(metrics)
    jax.block_until_ready(state)
    out = {k: float(v) for k, v in m.items()}
    return [dict(out, steps=int(jax.device_get(state.step)),
                 finite=math.isfinite(out["train_loss"]))]

  def evaluate(self, state, split, max_tokens, desc, show) -> list[dict]:
    return [eval_lib.evaluate(self.run, self._eval, state.params, split, max_tokens, desc=desc,
                              show=show)]

  def freeze(self, state, live):
    return state  # one trial: a stopped run simply stops stepping

  def host_update(self, state, step, evals):
    if self.host_update_fn is None:
      return state
    return self.host_update_fn(self.config.optimizer, state, step, evals)


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False,
                       clock: Callable[[], float] = time.perf_counter,
                       process_start: float | None = None,
                       on_eval: OnEval | None = None) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary.

  `on_eval(0, step, metrics)` is called after each periodic evaluation; True stops the run
  (`pruned`). `clock` is the training clock (tests inject a fake one).
  """
  wall0 = process_start if process_start is not None else time.time()
  config_lib.validate(config)
  # One process per workdir (multi-host: the coordinator holds it for the job).
  with WorkdirLock(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir, allow_config_change, clock, wall0, on_eval)


def _train_and_evaluate(config, workdir: str, allow_config_change: bool,
                        clock: Callable[[], float], wall0: float, on_eval: OnEval | None) -> dict:
  cfg, tcfg = config, config.train
  is_main = jax.process_index() == 0
  cfg_dict = config_lib.to_dict(cfg)

  run = setup_lib.build(cfg)
  program = SingleRun(cfg, run)
  n_params = models.count_params(run.abstract_state.params)
  mngr = ckpt_lib.manager(os.path.join(workdir, "checkpoints"),
                          keep_latest=tcfg.keep_checkpoints, keep_best=tcfg.keep_best)
  it = data.train_iterator(run.spec, seq_len=cfg.data.seq_len, global_batch_size=tcfg.batch_size,
                           seed=data_seed(tcfg), process_index=jax.process_index(),
                           process_count=jax.process_count(), worker_count=cfg.data.worker_count)
  timing = Clock()
  # The newest checkpoint that verifies; damaged ones are renamed aside with one line each.
  restored = ckpt_lib.restore_latest_good(mngr, run.abstract_state)
  if restored is not None:
    state, data_state, saved = restored.state, restored.data, restored.meta
    changed = check_resume(saved.get("configs", [saved.get("config", {})]), [cfg_dict],
                           allow_config_change)
    records = resume_records(saved, [cfg], changed)
    timing.train_s, timing.eval_s = float(saved["train_time_s"]), float(saved["eval_time_s"])
    it.set_state(data_state, strict=not changed)
    logging.info("resumed from step %d (%s)", restored.step, workdir)
  else:
    state, records = run.init_state(), [new_record(cfg)]
  step = int(jax.device_get(state.step))

  if is_main:
    files.atomic_write_json(os.path.join(workdir, "config.json"), cfg_dict)
  writer = metrics_lib.MetricsWriter(workdir, enabled=is_main)
  writer.truncate_after(step)
  compile_s = program.compile()
  if is_main and cfg.optimizer.name == "muon":
    print("[jaxgpt] optimizer partition:\n" + partition.describe(
        run.abstract_state.params, partition.for_router(cfg.optimizer.router)),
        file=sys.stderr, flush=True)
  if is_main:
    print(f"[jaxgpt] {cfg.name}: {n_params:,} params, mesh {mesh_lib.mesh_shape(run.mesh)}, "
          f"{program.tokens_per_step:,} tokens/step, compile {compile_s:.1f}s, start step {step}",
          file=sys.stderr, flush=True)

  def save(loop: Loop) -> None:
    ckpt_lib.save(mngr, loop.step, loop.carry, it.get_state(),
                  dict(loop.meta(), configs=[cfg_dict]), loop.records[0]["last_val_loss"])

  loop = Loop(program, state, it, records, timing, step, [writer], save,
              on_eval=on_eval, time_fn=clock, show=bool(tcfg.progress_bar) and is_main)
  try:
    loop.run()
  finally:  # a crash or an interrupt still completes (or reports) the save in flight
    ckpt_lib.wait(mngr)
  state, rec = loop.carry, records[0]
  stop_reason = rec["stop_reason"] or STOP_STEPS

  summary = {
      "name": cfg.name, "variants": cfg.variants, "num_params": n_params, "steps": loop.step,
      "tokens_per_step": program.tokens_per_step, "compile_time_s": compile_s,
      "train_time_s": timing.train_s, "eval_time_s": timing.eval_s,
      "tokens_per_s": (timing.steps_this_run * program.tokens_per_step / timing.train_s_this_run
                       if timing.train_s_this_run > 0 else None),
      "target_loss": tcfg.target_loss, "reached_target": rec["step_to_target"] is not None,
      "time_to_target_s": rec["time_to_target_s"], "step_to_target": rec["step_to_target"],
      "best_val_loss": rec["best_val_loss"], "stop_reason": stop_reason,
      "mesh": mesh_lib.mesh_shape(run.mesh), "process_count": jax.process_count(),
      "backend": jax.default_backend(),
      "flops_per_token": models.flops_per_token(cfg.model, run.vocab_size, cfg.data.seq_len),
  }
  if stop_reason != STOP_INTERRUPT:
    t0 = clock()
    final = program.evaluate(state, "val", tcfg.get("final_eval_tokens"), "final eval",
                             loop.show)[0]
    summary["final_eval_time_s"] = clock() - t0
    summary.update(final_val_loss=final["val_loss"], val_bpb=final.get("val_bpb"),
                   val_acc=final["val_acc"], final_val_tokens=final["val_tokens"])
    for split in run.spec.extra_val:
      ev = program.evaluate(state, split, None, f"{split} eval", loop.show)[0]
      summary.update({f"{split}_val_loss": ev["val_loss"], f"{split}_val_bpb": ev.get("val_bpb")})
    writer.write(loop.step, elapsed_s=timing.train_s, final_val_loss=final["val_loss"],
                 val_bpb=final.get("val_bpb"), val_acc=final["val_acc"])
  summary["wall_time_s"] = time.time() - wall0
  writer.close()
  ckpt_lib.close(mngr)
  if is_main:
    files.atomic_write_json(os.path.join(workdir, "summary.json"), summary)
    with contextlib.suppress(Exception):
      metrics_lib.plot_curves(metrics_lib.read_jsonl(writer.path),
                              os.path.join(workdir, "curves.png"), title=cfg.name)
  if cfg.export.at_end and stop_reason in FINISHED:  # the int8+zlib artifact (jaxgpt/export)
    if jax.process_count() > 1:
      print("[jaxgpt] export.at_end needs a single process; run --mode export on the workdir",
            file=sys.stderr)
    else:
      summary.update(export_workdir(cfg, workdir, state.params, run.vocab_size))
  return summary


__all__ = ["ConfigChangedError", "FINISHED", "Loop", "SingleRun", "check_resume", "data_seed",
           "new_record", "resume_records", "train_and_evaluate"]
