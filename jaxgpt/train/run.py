"""The one run driver: single runs and vmapped cohorts go through the same sequence.

    restore (or initialise) -> resume check -> config.json and metrics writers -> compile
    -> start hooks -> the training loop (`jaxgpt.train.loop.Loop`), checkpointing through one
    save closure -> wait for the saves in flight -> final evaluation -> the program's summaries
    -> end hooks

A program is a single run (`SingleRun` here) or a cohort (`jaxgpt.sweep.cohort`). Besides the
loop's interface (`Loop`'s docstring) it provides: `batches` (get_state / set_state), `keep_best`,
`init_carry()`, `abstract_carry()`, `open_writers(workdir, cfg_dicts, step)`, `compile()`,
`meta_extra()` / `restore_meta(meta)` (what it keeps in the checkpoint meta), `close()`,
`final_eval_tokens`, `step_time_s()` (after `compile()`: the seconds per step the trials' clock
counts, or None to measure it; `Loop.clock_s`) and `summarize(outcome)`.

Hooks are `registry.RunHook` entries, registered by the module that owns them, each deciding from
the run (`RunInfo`) whether it acts: this module's "start_line" (a single run's one-line start)
and "partition" (the optimizer's own description of its partition, `registry.Optimizer.describe`);
`jaxgpt.export` registers "export" (the int8+zlib artifact of a finished single run with
`export.at_end`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from absl import logging

from jaxgpt import config as config_lib
from jaxgpt import data, files, models, registry
from jaxgpt.errors import ConfigError
from jaxgpt.hf import init as hf_init
from jaxgpt.optim import qat as qat_lib
from jaxgpt.parallel import mesh as mesh_lib
from jaxgpt.parallel import rules as rules_lib
from jaxgpt.train import checkpoint as ckpt_lib
from jaxgpt.train import evaluate as eval_lib
from jaxgpt.train import loop as loop_lib
from jaxgpt.train import metrics as metrics_lib
from jaxgpt.train import profile as profile_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import step as step_lib
from jaxgpt.train import tracking
from jaxgpt.train.workdir import WorkdirLock

PARTITION_FILE = "partition.txt"


@dataclasses.dataclass
class RunInfo:
  """What hooks see of a run."""
  configs: list  # one config per trial (one for a single run)
  workdir: str
  run: setup_lib.Run  # the built pieces (model, abstract state, mesh, vocabulary, data spec)
  is_main: bool  # process 0: the one that writes files
  start_step: int  # 0, or the step a resumed run starts from
  compile_s: float  # seconds spent compiling the program

  @property
  def k(self) -> int:
    return len(self.configs)


@dataclasses.dataclass
class Outcome:
  """A driven run, for the program's summaries."""
  loop: loop_lib.Loop
  compile_s: float
  wall0: float
  interrupted: bool
  finals: list[dict]  # per trial: the final evaluation (with extra splits), {} if none
  final_eval_s: float | None


def check_hooks(config) -> None:
  """Every registered hook's `check(config)`: a ConfigError before anything is built."""
  for name in registry.RUN_HOOKS:
    check = registry.RUN_HOOKS.get(name).check
    if check is not None:
      check(config)


def run_hooks(stage: str, *args) -> list[dict]:
  """Calls every registered hook's `stage` ("on_start" | "on_end"); returns their results."""
  out = []
  for name in registry.RUN_HOOKS:
    fn = getattr(registry.RUN_HOOKS.get(name), stage)
    if fn is not None:
      out.append(fn(*args) or {})
  return out


def drive(program, workdir: str, *, allow_config_change: bool = False,
          on_eval: loop_lib.OnEval | None = None, clock: Callable[[], float] = time.perf_counter,
          wall0: float | None = None, show: bool = False, desc: str = "train") -> Any:
  """Trains `program` in `workdir` (resuming from its newest good checkpoint); returns
  `program.summarize(outcome)` after the end hooks have run. The metrics writers stay open to
  the end, so their sinks (W&B) also get each trial's summary, end hooks' keys included."""
  wall0 = time.time() if wall0 is None else wall0
  is_main = jax.process_index() == 0
  tcfg = program.configs[0].train
  cfg_dicts = [config_lib.to_dict(c) for c in program.configs]
  os.makedirs(workdir, exist_ok=True)
  mngr = ckpt_lib.manager(os.path.join(workdir, "checkpoints"),
                          keep_latest=tcfg.keep_checkpoints, keep_best=program.keep_best)
  timing = loop_lib.Clock()
  carry, records, step = _restore_or_init(program, mngr, cfg_dicts, allow_config_change, timing)
  carry = program.freeze(carry, [r["stop_reason"] is None for r in records])
  writers = program.open_writers(workdir, cfg_dicts, step)
  finished = False
  try:
    result = _drive_open(program, workdir, writers, mngr, timing, carry, records, step, cfg_dicts,
                         is_main, on_eval=on_eval, clock=clock, wall0=wall0, show=show, desc=desc)
    finished = True
  finally:  # the sinks (W&B) learn whether the run ended by an exception
    for w in writers:
      w.close(failed=not finished)
  return result


def _drive_open(program, workdir, writers, mngr, timing, carry, records, step, cfg_dicts,
                is_main, *, on_eval, clock, wall0, show, desc) -> Any:
  """`drive` from compilation on, while the metrics writers are open: the loop, the final
  evaluation, the summaries, the end hooks, then each trial's summary to its writer's sinks."""
  configs = program.configs
  compile_s = program.compile()
  info = RunInfo(list(configs), workdir, program.run, is_main, step, compile_s)
  run_hooks("on_start", info)

  def save(loop: loop_lib.Loop) -> None:
    meta = dict(loop.meta(), configs=cfg_dicts, **program.meta_extra())
    best = loop.records[0]["last_val_loss"] if program.keep_best else None
    ckpt_lib.save(mngr, loop.step, loop.carry, program.batches.get_state(), meta, best)

  loop = loop_lib.Loop(program, carry, program.batches, records, timing, step, writers, save,
                       on_eval=on_eval, time_fn=clock, show=show, desc=desc,
                       step_time_s=program.step_time_s(),
                       profiler=profile_lib.Window.from_config(configs[0].train, workdir))
  try:
    loop.run()
  finally:  # a crash or an interrupt still completes (or reports) the save in flight
    ckpt_lib.wait(mngr)
    program.close()
  ckpt_lib.close(mngr)
  interrupted = loop_lib.STOP_INTERRUPT in [r["stop_reason"] for r in records]
  finals, final_s = [{} for _ in configs], None
  if not interrupted:
    finals, final_s = _final_evaluation(program, loop, clock)
    for w, rec, fin in zip(writers, records, finals):
      pg = {"val_bpb_pg": fin["val_bpb_pg"]} if "val_bpb_pg" in fin else {}
      w.write(rec["steps"], elapsed_s=timing.train_s, final_val_loss=fin.get("val_loss"),
              val_bpb=fin.get("val_bpb"), val_acc=fin.get("val_acc"), **pg)
  result = program.summarize(Outcome(loop, compile_s, wall0, interrupted, finals, final_s))
  for extra in run_hooks("on_end", info, loop.carry, result):
    if extra and isinstance(result, dict):
      result.update(extra)
  for w, summary in zip(writers, result if isinstance(result, list) else [result]):
    w.summarize(summary)
  return result


def _restore_or_init(program, mngr, cfg_dicts, allow: bool, timing: loop_lib.Clock):
  """(carry, records, step) from the newest good checkpoint, after the resume check (configs
  first: with other trials the state's shapes may differ), or a fresh start."""
  meta_only = ckpt_lib.restore_latest_good(mngr, None, items=("meta",))
  if meta_only is None:
    return program.init_carry(), [loop_lib.new_record(c) for c in program.configs], 0

  def saved_configs(meta):  # a checkpoint written before per-trial configs has one "config"
    return meta.get("configs", [meta.get("config", {})])

  changed = loop_lib.check_resume(saved_configs(meta_only.meta), cfg_dicts, allow)
  restored = ckpt_lib.restore_latest_good(mngr, program.abstract_carry())
  if restored.step != meta_only.step:  # fell back past the step checked above
    changed = loop_lib.check_resume(saved_configs(restored.meta), cfg_dicts, allow)
  saved = restored.meta
  folder = program.configs[0].train.get("init_from")
  if folder is not None and jax.process_index() == 0:
    print(f"[jaxgpt] the workdir holds a checkpoint (step {restored.step}): resuming from it; "
          f"train.init_from={folder} is ignored", file=sys.stderr, flush=True)
  records = loop_lib.resume_records(saved, program.configs, changed)
  timing.train_s, timing.eval_s = float(saved["train_time_s"]), float(saved["eval_time_s"])
  program.batches.set_state(restored.data, strict=not changed)
  program.restore_meta(saved)
  logging.info("resumed from step %d", restored.step)
  return restored.state, records, int(saved.get("step", restored.step))


def _final_evaluation(program, loop: loop_lib.Loop, clock) -> tuple[list[dict], float]:
  """Each trial's final evaluation on the validation split (and any extra split). A program
  that froze a diverged trial holds its last finite state, not its end: that trial gets {}."""
  t0 = clock()
  finals = program.evaluate(loop.carry, "val", program.final_eval_tokens, "final eval",
                            loop.show)
  for split in program.run.spec.extra_val:
    for fin, ev in zip(finals, program.evaluate(loop.carry, split, None, f"{split} eval",
                                                loop.show)):
      fin.update({f"{split}_val_loss": ev["val_loss"], f"{split}_val_bpb": ev.get("val_bpb")})
  diverged = [r["stop_reason"] == loop_lib.STOP_DIVERGED for r in loop.records]
  finals = [{} if d and program.freezes_diverged else f for f, d in zip(finals, diverged)]
  return finals, clock() - t0


# ------------------------------------------------------------------------------------------
# The start of a single run: one line, then the optimizer's own description of its partition.

def _print_start(info: RunInfo) -> None:
  """A single run's first line: parameters, mesh, tokens per step, compile time, start step."""
  if info.k != 1 or not info.is_main:
    return
  cfg, run = info.configs[0], info.run
  n_params = models.count_params(run.abstract_state.params)
  print(f"[jaxgpt] {cfg.name}: {n_params:,} params, mesh {mesh_lib.mesh_shape(run.mesh)}, "
        f"{cfg.train.batch_size * cfg.data.seq_len:,} tokens/step, compile {info.compile_s:.1f}s, "
        f"start step {info.start_step}", file=sys.stderr, flush=True)


def _print_partition(info: RunInfo) -> None:
  """A single run's optimizer partition: folded on stderr (`train.partition_table`), the full
  table in `<workdir>/partition.txt`."""
  cfg = info.configs[0]
  describe = registry.OPTIMIZERS.get(cfg.optimizer.name).describe
  if info.k != 1 or not info.is_main or describe is None:
    return
  params = info.run.abstract_state.params
  full = describe(cfg.optimizer, params, False)
  files.atomic_write_text(os.path.join(info.workdir, PARTITION_FILE), full + "\n")
  table = cfg.train.partition_table  # one of config.PARTITION_TABLES
  if table != "off":
    print(f"[jaxgpt] optimizer partition ({'all leaves' if table == 'full' else 'layers folded'}"
          f"; full table in {PARTITION_FILE}):\n"
          + (full if table == "full" else describe(cfg.optimizer, params, True)),
          file=sys.stderr, flush=True)


registry.RUN_HOOKS.register("start_line", registry.RunHook(on_start=_print_start))
registry.RUN_HOOKS.register("partition", registry.RunHook(on_start=_print_partition))


# ------------------------------------------------------------------------------------------
# A single run.

class SingleRun:
  """The program of one run on its mesh: the jitted step of `train.step`, AOT-compiled."""

  k = 1
  freezes_diverged = False  # the plain step: a NaN update is applied

  def __init__(self, config, run: setup_lib.Run):
    self.config, self.run, self.configs = config, run, [config]
    self.tokens_per_step = config.train.batch_size * config.data.seq_len
    self.keep_best = config.train.keep_best
    self.final_eval_tokens = config.train.get("final_eval_tokens")
    self.family = models.family(config.model.name)
    self.host_update_fn = registry.OPTIMIZERS.get(config.optimizer.name).host_update
    self.batches = data.train_iterator(
        run.spec, seq_len=config.data.seq_len, global_batch_size=config.train.batch_size,
        seed=loop_lib.data_seed(config.train), process_index=jax.process_index(),
        process_count=jax.process_count(), worker_count=config.data.worker_count)
    # int6 QAT (None when model.qat="none"); a model with nothing to quantize fails here,
    # before any file is written
    self.qat = qat_lib.from_config(config, run.abstract_state.params)
    self._train = self._eval = None

  # -- the driver's interface
  def init_carry(self):
    return self.run.init_state()

  def abstract_carry(self):
    return self.run.abstract_state

  def open_writers(self, workdir: str, cfg_dicts: list[dict], step: int) -> list:
    is_main = jax.process_index() == 0
    if is_main:
      files.atomic_write_json(os.path.join(workdir, "config.json"), cfg_dicts[0])
    sinks = tracking.sinks(self.config, cfg_dicts[0], workdir, enabled=is_main,
                           name=os.path.basename(os.path.abspath(workdir)))
    writer = metrics_lib.MetricsWriter(workdir, enabled=is_main, sinks=sinks)
    writer.truncate_after(step)
    self.workdir, self.writer = workdir, writer
    return [writer]

  def meta_extra(self) -> dict:
    return {}

  def restore_meta(self, meta: dict) -> None:
    del meta

  def close(self) -> None:
    pass

  def step_time_s(self) -> float | None:
    return self.config.train.step_time_s  # None: the measured clock

  def compile(self) -> float:
    t0 = time.perf_counter()
    run, cfg = self.run, self.config
    repl = rules_lib.replicated(run.mesh)
    batch_sh = rules_lib.batch_sharding(run.mesh)
    train_batch, eval_batch = loop_lib.abstract_batches(cfg, batch_sh)
    train_step = step_lib.make_train_step(run.model.apply, run.tx, cfg.train.grad_accum,
                                          self.family.collections, self.family.rng_streams,
                                          cfg.train.seed, qat=self.qat)
    tb = setup_lib.token_bytes_array(run.spec, run.vocab_size)
    eval_step = step_lib.make_eval_step(run.model.apply, None if tb is None else jnp.asarray(tb))
    with run.context():
      self._train = loop_lib.aot_compile(
          train_step, (run.abstract_state, train_batch,
                       jax.ShapeDtypeStruct((), jnp.float32, sharding=repl)),
          in_shardings=(run.state_shardings, batch_sh, repl),
          out_shardings=(run.state_shardings, repl), donate_argnums=(0,))
      self._eval = loop_lib.aot_compile(eval_step, (run.abstract_state.params, eval_batch),
                                        in_shardings=(run.state_shardings.params, batch_sh),
                                        out_shardings=repl)
    return time.perf_counter() - t0

  # -- the loop's interface
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

  # -- the summary
  def summarize(self, out: Outcome) -> dict:
    """summary.json and curves.png (docs/design.md "Files a run writes")."""
    cfg, run, timing, rec = self.config, self.run, out.loop.clock, out.loop.records[0]
    summary = {
        "name": cfg.name, "variants": cfg.variants,
        "num_params": models.count_params(run.abstract_state.params), "steps": out.loop.step,
        "tokens_per_step": self.tokens_per_step, "compile_time_s": out.compile_s,
        "train_time_s": out.loop.clock_s(timing.train_s), "step_time_s": out.loop.step_time_s,
        "measured_train_time_s": timing.train_s, "eval_time_s": timing.eval_s,
        "tokens_per_s": (timing.steps_this_run * self.tokens_per_step / timing.train_s_this_run
                         if timing.train_s_this_run > 0 else None),
        "target_loss": cfg.train.target_loss, "reached_target": rec["step_to_target"] is not None,
        "time_to_target_s": rec["time_to_target_s"], "step_to_target": rec["step_to_target"],
        "best_val_loss": rec["best_val_loss"],
        "stop_reason": rec["stop_reason"] or loop_lib.STOP_STEPS,
        "mesh": mesh_lib.mesh_shape(run.mesh), "process_count": jax.process_count(),
        "backend": jax.default_backend(),
        "flops_per_token": models.flops_per_token(cfg.model, run.vocab_size, cfg.data.seq_len),
        # why the tokenizer's tokens do not stand for the raw text (val_bpb then counts the
        # bytes they stand for), or None: exact
        "tokenizer_lossy": run.spec.lossy,
    }
    if not out.interrupted:
      fin = out.finals[0]
      summary["final_eval_time_s"] = out.final_eval_s
      summary.update(final_val_loss=fin["val_loss"], val_bpb=fin.get("val_bpb"),
                     val_acc=fin["val_acc"], final_val_tokens=fin["val_tokens"])
      if "val_bpb_pg" in fin:  # a SentencePiece tokenizer: parameter-golf's byte count
        summary["val_bpb_pg"] = fin["val_bpb_pg"]
      for split in run.spec.extra_val:
        summary.update({k: fin[k] for k in (f"{split}_val_loss", f"{split}_val_bpb")})
      # a mixture's sources, each scored on its own (val_loss/<name>, val_bpb/<name>, ...)
      summary.update({k: v for k, v in fin.items() if k.startswith("val_") and "/" in k})
    summary["wall_time_s"] = time.time() - out.wall0
    if jax.process_index() == 0:
      files.atomic_write_json(os.path.join(self.workdir, "summary.json"), summary)
      with contextlib.suppress(Exception):
        metrics_lib.plot_curves(metrics_lib.read_jsonl(self.writer.path),
                                os.path.join(self.workdir, metrics_lib.CURVES), title=cfg.name)
    return summary


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False,
                       clock: Callable[[], float] = time.perf_counter,
                       process_start: float | None = None,
                       on_eval: loop_lib.OnEval | None = None) -> dict:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the summary.

  `on_eval(0, step, metrics)` is called after each periodic evaluation; True stops the run
  (`pruned`). `clock` is the training clock (tests inject a fake one).
  """
  hf_init.apply(config)  # train.init_from's model keys first: validation reads them
  config_lib.validate(config)
  if config.export.at_end and "export" not in registry.RUN_HOOKS:
    raise ConfigError("export.at_end=True needs the export hook: import jaxgpt.export.exporter "
                      "before training (python -m jaxgpt.main does)")
  if config.eval.tasks and "lm_eval" not in registry.RUN_HOOKS:
    raise ConfigError(f"eval.tasks={tuple(config.eval.tasks)!r} needs the lm_eval hook: import "
                      "jaxgpt.lm_eval.hook before training (python -m jaxgpt.main does)")
  check_hooks(config)
  # One process per workdir (multi-host: the coordinator holds it for the job).
  with WorkdirLock(workdir, enabled=jax.process_index() == 0):
    program = SingleRun(config, setup_lib.build(config))
    return drive(program, workdir, allow_config_change=allow_config_change, on_eval=on_eval,
                 clock=clock, wall0=process_start,
                 show=bool(config.train.progress_bar) and jax.process_index() == 0)


__all__ = ["Outcome", "PARTITION_FILE", "RunInfo", "SingleRun", "check_hooks", "drive",
           "run_hooks", "train_and_evaluate"]
