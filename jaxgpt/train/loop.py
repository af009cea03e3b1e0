"""train_and_evaluate(config, workdir): the training loop, its clock, evaluation and files.

Timing (ARCHITECTURE.md): `block_until_ready` at every timing boundary (log, eval, checkpoint,
end); compilation (ahead of time, `lower().compile()`), evaluation and checkpoint starts are
timed apart from training time. The schedule's `progress` is
`max(step / train.steps, train_time_s / train.max_time_s)`.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxgpt import config as config_lib
from jaxgpt import data, models
from jaxgpt.optim import learning_rate
from jaxgpt.optim.schedules import progress as clock_progress
from jaxgpt.parallel import mesh as mesh_lib
from jaxgpt.parallel import rules as rules_lib
from jaxgpt.train import checkpoint as ckpt_lib
from jaxgpt import files
from jaxgpt.train import metrics as metrics_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib

STOP_STEPS, STOP_TARGET, STOP_TIME, STOP_INTERRUPT = "steps", "target", "time_cap", "interrupted"
FINISHED = (STOP_STEPS, STOP_TARGET, STOP_TIME)


class ConfigChangedError(RuntimeError):
  """Resuming a workdir with a different config, without permission."""


class _Interrupt:
  """First Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the next step; a second aborts."""

  def __init__(self):
    self.requested = False
    self._old = {}

  def __enter__(self):
    if threading_main():
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


def threading_main() -> bool:
  import threading
  return threading.current_thread() is threading.main_thread()


def _progress_bar(total: int, initial: int, enabled: bool):
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True,
              desc="train", unit="step", file=sys.stderr)


def evaluate(run: setup_lib.Run, eval_fn: Callable, params: Any, split: str,
             max_tokens: int | None, *, desc: str = "eval", show: bool = False) -> dict:
  """Sums eval statistics over a split's windows (float64 on the host), then summarizes."""
  bs = setup_lib.eval_batch_size(run.config)
  kwargs = dict(split=split, seq_len=run.config.data.seq_len, batch_size=bs,
                max_tokens=max_tokens)
  batches = data.eval_batches(run.spec, process_index=jax.process_index(),
                              process_count=jax.process_count(), **kwargs)
  if show:
    from tqdm.auto import tqdm
    batches = tqdm(batches, total=data.num_eval_batches(run.spec, **kwargs), desc=desc,
                   leave=False, file=sys.stderr, dynamic_ncols=True)
  sums: dict[str, float] = {}
  for local in batches:
    batch = rules_lib.global_batch(local, run.mesh)
    out = jax.device_get(eval_fn(params, batch))
    for k, v in out.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  return step_lib.summarize_eval(sums)


def _compile(run: setup_lib.Run, token_bytes):
  """AOT-compiles the train and eval steps; returns (train_step, eval_step, seconds)."""
  cfg = run.config
  t0 = time.perf_counter()
  repl = rules_lib.replicated(run.mesh)
  b, t = cfg.train.batch_size, cfg.data.seq_len
  batch_sh = rules_lib.batch_sharding(run.mesh)
  train_batch = {k: jax.ShapeDtypeStruct((b, t), jnp.int32, sharding=batch_sh)
                 for k in ("inputs", "targets")}
  train_step = step_lib.make_train_step(run.model.apply, run.tx, cfg.train.grad_accum)
  eb = setup_lib.eval_batch_size(cfg)
  eval_batch = {"inputs": jax.ShapeDtypeStruct((eb, t), jnp.int32, sharding=batch_sh),
                "targets": jax.ShapeDtypeStruct((eb, t), jnp.int32, sharding=batch_sh),
                "weights": jax.ShapeDtypeStruct((eb, t), jnp.float32, sharding=batch_sh)}
  tb = None if token_bytes is None else jnp.asarray(token_bytes)
  eval_step = step_lib.make_eval_step(run.model.apply, tb)
  with run.context():
    train_c = jax.jit(train_step, in_shardings=(run.state_shardings, batch_sh, repl),
                      out_shardings=(run.state_shardings, repl), donate_argnums=(0,)).lower(
                          run.abstract_state, train_batch,
                          jax.ShapeDtypeStruct((), jnp.float32, sharding=repl)).compile()
    eval_c = jax.jit(eval_step, in_shardings=(run.state_shardings.params, batch_sh),
                     out_shardings=repl).lower(run.abstract_state.params, eval_batch).compile()
  return train_c, eval_c, time.perf_counter() - t0


def data_seed(tcfg) -> int:
  """The seed of the training data order: `train.data_seed`, or `train.seed` when unset."""
  return tcfg.seed if tcfg.data_seed is None else tcfg.data_seed


def _check_resume_config(saved: dict, current: dict, allow: bool) -> dict:
  diff = config_lib.config_diff(saved, current)
  if diff and not allow:
    lines = "\n".join(f"  {k}: {a!r} -> {b!r}" for k, b_a in diff.items() for a, b in [b_a])
    raise ConfigChangedError(
        "this workdir holds a run with a different config; differing keys:\n" + lines +
        "\nuse another --workdir, or pass --allow_config_change to resume anyway")
  return diff


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False,
                       clock: Callable[[], float] = time.perf_counter,
                       process_start: float | None = None) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary."""
  wall0 = process_start if process_start is not None else time.time()
  config_lib.validate(config)
  cfg, tcfg = config, config.train
  is_main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  cfg_dict = config_lib.to_dict(cfg)

  run = setup_lib.build(cfg)
  token_bytes = setup_lib.token_bytes_array(run.spec, run.vocab_size)
  n_params = models.count_params(run.abstract_state.params)
  mngr = ckpt_lib.manager(os.path.join(workdir, "checkpoints"),
                          keep_latest=tcfg.keep_checkpoints, keep_best=tcfg.keep_best)

  # ---- resume or start
  meta = {"train_time_s": 0.0, "eval_time_s": 0.0, "best_val_loss": None, "stop_reason": None,
          "time_to_target_s": None, "step_to_target": None, "config": cfg_dict}
  it = data.train_iterator(run.spec, seq_len=cfg.data.seq_len, global_batch_size=tcfg.batch_size,
                           seed=data_seed(tcfg), process_index=jax.process_index(),
                           process_count=jax.process_count(), worker_count=cfg.data.worker_count)
  latest = mngr.latest_step()
  if latest is not None:
    state, data_state, saved_meta = ckpt_lib.restore(mngr, run.abstract_state, latest)
    diff = _check_resume_config(saved_meta.get("config", {}), cfg_dict, allow_config_change)
    meta.update({k: v for k, v in saved_meta.items() if k != "config"})
    if diff:  # an allowed change (e.g. more steps): the old stop no longer holds
      meta["stop_reason"] = None
    it.set_state(data_state, strict=not diff)
    logging.info("resumed from step %d (%s)", latest, workdir)
  else:
    state = run.init_state()
  step = int(jax.device_get(state.step))

  if is_main:
    files.atomic_write_json(os.path.join(workdir, "config.json"), cfg_dict)
  writer = metrics_lib.MetricsWriter(workdir, enabled=is_main)
  writer.truncate_after(step)

  train_step, eval_step, compile_s = _compile(run, token_bytes)
  tokens_per_step = tcfg.batch_size * cfg.data.seq_len
  train_time, eval_time = float(meta["train_time_s"]), float(meta["eval_time_s"])
  best_val = meta["best_val_loss"]
  last_val = None
  stop_reason = meta["stop_reason"] if meta["stop_reason"] in FINISHED else None
  show = bool(tcfg.progress_bar) and is_main
  ckpt_every = tcfg.checkpoint_every or tcfg.eval_every
  if is_main and cfg.optimizer.name == "muon":
    from jaxgpt.optim import partition
    print("[jaxgpt] optimizer partition:\n" + partition.describe(run.abstract_state.params),
          file=sys.stderr, flush=True)
  if is_main:
    print(f"[jaxgpt] {cfg.name}: {n_params:,} params, mesh {mesh_lib.mesh_shape(run.mesh)}, "
          f"{tokens_per_step:,} tokens/step, compile {compile_s:.1f}s, start step {step}",
          file=sys.stderr, flush=True)

  def save(val_loss):
    meta.update(train_time_s=train_time, eval_time_s=eval_time, best_val_loss=best_val,
                stop_reason=stop_reason, config=cfg_dict)
    ckpt_lib.save(mngr, step, state, it.get_state(), dict(meta), val_loss)

  steps_this_run, time_this_run = 0, 0.0
  pbar = _progress_bar(tcfg.steps, step, show)
  with _Interrupt() as interrupt:
    seg_start, seg_steps = clock(), 0
    while stop_reason is None and step < tcfg.steps:
      if interrupt.requested:
        stop_reason = STOP_INTERRUPT
        break
      batch = rules_lib.global_batch(next(it), run.mesh)
      p = clock_progress(step, tcfg.steps, train_time + clock() - seg_start, tcfg.max_time_s)
      state, m = train_step(state, batch, jnp.float32(p))
      step += 1
      seg_steps += 1
      pbar.update(1)

      do_eval = step % tcfg.eval_every == 0 or step == tcfg.steps
      do_ckpt = step % ckpt_every == 0
      time_up = (tcfg.max_time_s is not None
                 and train_time + clock() - seg_start >= tcfg.max_time_s)
      if not (do_eval or do_ckpt or time_up or step % tcfg.log_every == 0
              or step == tcfg.steps):
        continue
      # ---- timing boundary: wait for the device, close the training segment
      m = jax.device_get(m)
      jax.block_until_ready(state)
      seg = clock() - seg_start
      train_time += seg
      steps_this_run += seg_steps
      time_this_run += seg
      record = {"elapsed_s": train_time, "train_loss": float(m["train_loss"]),
                "grad_norm": float(m["grad_norm"]),
                "lr": learning_rate(cfg.optimizer, p),
                "tokens_per_s": seg_steps * tokens_per_step / max(seg, 1e-9)}
      if not math.isfinite(record["train_loss"]):
        stop_reason = "diverged"
      if do_eval and stop_reason is None:
        t0 = clock()
        ev = evaluate(run, eval_step, state.params, "val", tcfg.eval_tokens)
        eval_time += clock() - t0
        record.update(ev)
        last_val = ev["val_loss"]
        best_val = last_val if best_val is None else min(best_val, last_val)
        if tcfg.target_loss is not None and last_val <= tcfg.target_loss:
          stop_reason = STOP_TARGET
          meta.update(time_to_target_s=train_time, step_to_target=step)
      if tcfg.max_time_s is not None and train_time >= tcfg.max_time_s and stop_reason is None:
        stop_reason = STOP_TIME
      writer.write(step, **record)
      pbar.set_postfix(loss=f"{record['train_loss']:.3f}",
                       tok_s=f"{record['tokens_per_s']:,.0f}",
                       **({"val": f"{last_val:.3f}"} if last_val is not None else {}))
      if step == tcfg.steps and stop_reason is None:
        stop_reason = STOP_STEPS
      if do_ckpt or stop_reason is not None:
        save(last_val)
      seg_start, seg_steps = clock(), 0
    if seg_steps:  # an interrupt mid-segment: close it so the clock stays exact
      jax.block_until_ready(state)
      seg = clock() - seg_start
      train_time += seg
      steps_this_run += seg_steps
      time_this_run += seg
  pbar.close()

  if stop_reason is None and step >= tcfg.steps:
    stop_reason = STOP_STEPS
  if stop_reason == STOP_INTERRUPT:
    save(last_val)
  mngr.wait_until_finished()

  summary = {
      "name": cfg.name, "variants": cfg.variants, "num_params": n_params, "steps": step,
      "tokens_per_step": tokens_per_step, "compile_time_s": compile_s,
      "train_time_s": train_time, "eval_time_s": eval_time,
      "tokens_per_s": (steps_this_run * tokens_per_step / time_this_run
                       if time_this_run > 0 else None),
      "target_loss": tcfg.target_loss, "reached_target": meta["step_to_target"] is not None,
      "time_to_target_s": meta["time_to_target_s"], "step_to_target": meta["step_to_target"],
      "best_val_loss": best_val, "stop_reason": stop_reason,
      "mesh": mesh_lib.mesh_shape(run.mesh), "process_count": jax.process_count(),
      "backend": jax.default_backend(),
      "flops_per_token": models.flops_per_token(cfg.model, run.vocab_size, cfg.data.seq_len),
  }
  if stop_reason != STOP_INTERRUPT:
    t0 = clock()
    final = evaluate(run, eval_step, state.params, "val", None, desc="final eval", show=show)
    summary["final_eval_time_s"] = clock() - t0
    summary.update(final_val_loss=final["val_loss"], val_bpb=final.get("val_bpb"),
                   val_acc=final["val_acc"], final_val_tokens=final["val_tokens"])
    for split in run.spec.extra_val:
      ev = evaluate(run, eval_step, state.params, split, None, desc=f"{split} eval", show=show)
      summary.update({f"{split}_val_loss": ev["val_loss"], f"{split}_val_bpb": ev.get("val_bpb")})
    writer.write(step, final_val_loss=final["val_loss"], val_bpb=final.get("val_bpb"),
                 val_acc=final["val_acc"])
  summary["wall_time_s"] = time.time() - wall0
  writer.close()
  mngr.close()
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
      from jaxgpt.export.exporter import export_workdir
      summary.update(export_workdir(cfg, workdir, state.params, run.vocab_size))
  return summary
