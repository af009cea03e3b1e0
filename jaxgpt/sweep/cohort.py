"""Vmapped cohorts: K trials that differ only in traced hyperparameters, trained as one program.

A cohort is K configs with the same static structure (model shape, optimizer kind, Newton-Schulz
steps, batch size, ...: `static_key`). Their numeric hyperparameters (`TRACED_KEYS`) become one
array per key with a leading cohort axis; K models are initialised (one PRNG key per
`train.seed`), parameters and optimizer state are stacked on that axis, and one jitted
`jax.vmap` of the single-run train step (`train.step.make_train_step`, with the optax chain built
inside the vmap from each trial's values by `optim.build_optimizer(..., hparams=...)`, and int6
QAT when `model.qat` is set, its late form switched by each trial's own schedule) trains all K
at once. The cohort axis is sharded over as many devices as divide K (all of them when
their number divides K): trials data-parallel across devices, each trial on one device.

Data: the order is `train.data_seed` (unset: `train.seed`), exactly as in a single run. Trials
whose data seeds agree share each batch (broadcast, not copied); otherwise each trial reads its
own stream, so trial i reproduces the single run of `configs[i]` up to float rounding.

The loop is the single run's (`jaxgpt.train.loop.Loop`): the clock, the event schedule, stop
reasons, evaluation and resume checks are shared, with a trial axis. Per trial: metrics at every
log step, periodic evaluation (one vmapped pass scores all trials), early stopping at
`train.target_loss`, pruning by `on_eval`, and divergence: a trial whose loss or gradient norm is
not finite is marked in a per-trial `alive` mask inside the step and its whole state is frozen
with `jnp.where`, so the others compute exactly what they would without it. A stopped trial
(target, pruned, diverged) is frozen the same way. Ctrl-C / SIGTERM saves a checkpoint and
raises KeyboardInterrupt (the sweep runner re-queues the trials). Each trial's clock is its
solo-equivalent time, steps x a step time: `train.step_time_s` when set (the sweep's calibration
pass, `jaxgpt.sweep.calibrate`), else the measured step time of a K=1 program of the same static
structure (compile apart, cached per static key). Time to target, the time cap
`train.max_time_s` (all live trials stop together with `time_cap`) and the schedules' `progress`
read it, so a trial's learning rate at step s is the same at any K; the cohort's own measured
times are reported apart (`cohort_train_time_s`). The
cohort checkpoints (state, alive mask, data iterators, host records) with Orbax in
`workdir/checkpoints` and resumes from it.

Files: `workdir/cohort.json` (the cohort's times and per-trial summaries),
`workdir/trial_<i>/{config.json, metrics.jsonl, summary.json}`; with `export.at_end`, each
finished trial's artifact in `trial_<i>/` and its round-trip keys in its summary (the export
run hook, `jaxgpt.export.exporter.export_trials`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgpt import config as config_lib
from jaxgpt import data, files, models, registry
from jaxgpt.export import exporter  # noqa: F401  registers the run hook that exports trials
from jaxgpt.optim import build as build_lib
from jaxgpt.optim import qat as qat_lib
from jaxgpt.optim import schedules
from jaxgpt.train import evaluate as eval_lib
from jaxgpt.train import loop as loop_lib
from jaxgpt.train import metrics as metrics_lib
from jaxgpt.train import run as run_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import state as state_lib
from jaxgpt.train import step as step_lib
from jaxgpt.train import tracking
from jaxgpt.train.workdir import WorkdirLock

# Config keys that may differ inside one cohort: the optimizer's traceable numbers, each model
# family's traced keys (registry.ModelFamily.traced_keys), and host-side settings of each trial.
TRACED_KEYS: tuple[str, ...] = (
    *(f"optimizer.{k}" for k in build_lib.TRACED_OPTIMIZER_KEYS),
    *dict.fromkeys(k for name in registry.MODELS for k in models.family(name).traced_keys),
    "train.seed", "train.data_seed", "train.target_loss")
# Keys that name or display a run and change nothing it computes.
_FREE_KEYS = ("name", "variants", "train.progress_bar", "train.partition_table", "sample.",
              "export.", "log.", "eval.", "train.profile_steps")
_LR_KEYS = ("embed_lr", "head_lr", "scalar_lr")
SEED = "train.seed"

STOP_STEPS, STOP_DIVERGED = loop_lib.STOP_STEPS, loop_lib.STOP_DIVERGED

_SOLO_STEP_TIME: dict[str, float] = {}  # static key -> measured seconds per step (K = 1)
_PROGRAMS: dict[tuple, "CohortProgram"] = {}  # (static key, K, shared batch, devices) -> program
_MAX_PROGRAMS = 8


# ------------------------------------------------------------------------------------------
# Static structure.

def _flat(config) -> dict[str, Any]:
  return config_lib.flatten(config_lib.to_dict(config))


def _static_items(config) -> dict[str, Any]:
  return {k: v for k, v in _flat(config).items()
          if k not in TRACED_KEYS and not k.startswith(_FREE_KEYS)}


def static_key(config) -> str:
  """A str key of everything NOT in TRACED_KEYS (the cohort's static structure)."""
  return json.dumps(_static_items(config), sort_keys=True)


def group_static(configs: Sequence[Any]) -> list[list[int]]:
  """Indices of `configs` grouped into cohorts that share static structure (order kept)."""
  groups: dict[str, list[int]] = {}
  for i, c in enumerate(configs):
    groups.setdefault(static_key(c), []).append(i)
  return list(groups.values())


def _check_same_static(configs: Sequence[Any]) -> None:
  items = [_static_items(c) for c in configs]
  differ = sorted({k for it in items[1:] for k in set(it) | set(items[0])
                   if it.get(k, "<absent>") != items[0].get(k, "<absent>")})
  if differ:
    raise ValueError("a cohort's trials must share static structure; these keys differ "
                     f"(only {', '.join(TRACED_KEYS)} may): {', '.join(differ)}; "
                     "split the trials with group_static")


# ------------------------------------------------------------------------------------------
# Per-trial hyperparameters (traced) and the pieces built from them.

_INT_KEYS = ("lazy_proj_freq",)


def trial_hparams(config) -> dict[str, float | int]:
  """The traced values of one trial: optimizer keys by their short name (an unset
  embed/head/scalar lr is `optimizer.lr`), the model family's traced keys by full name."""
  o = config.optimizer
  hp: dict[str, float | int] = {}
  for k in build_lib.TRACED_OPTIMIZER_KEYS:
    value = o.lr if k in _LR_KEYS and o[k] is None else o[k]
    hp[k] = int(value) if k in _INT_KEYS else float(value)
  for key in models.family(config.model.name).traced_keys:
    hp[key] = float(config_lib.get_key(config, key))
  hp[SEED] = int(config.train.seed)  # keys the family's training rng streams (router noise)
  return hp


def stack_hparams(configs) -> dict[str, np.ndarray]:
  hps = [trial_hparams(c) for c in configs]
  return {k: np.asarray([h[k] for h in hps],
                        np.int32 if isinstance(hps[0][k], int) else np.float32)
          for k in hps[0]}


def _tx_builder(config) -> Callable[[dict], optax.GradientTransformationExtraArgs]:
  """hparams -> the single run's optimizer chain (`setup.build`) with traced values."""
  projection = models.projection(config.model)

  def tx_for(hp):
    return build_lib.build_optimizer(config.optimizer, _opt_hparams(hp), projection)

  return tx_for


def _opt_hparams(hp: dict) -> dict:
  return {k: hp[k] for k in build_lib.TRACED_OPTIMIZER_KEYS}


def _qat_builder(config, params) -> Callable[[dict], qat_lib.QAT | None]:
  """hparams -> the trial's int6 QAT (None for model.qat="none"): the single run's, its late
  form switched by the trial's own schedule (whose fractions may be traced per trial)."""
  qat = qat_lib.from_config(config, params)

  def qat_for(hp):
    if qat is None:
      return None
    opt = build_lib.traced_config(config.optimizer, _opt_hparams(hp))
    return dataclasses.replace(qat, schedule=schedules.from_config(opt))

  return qat_for


def _data_seed(config) -> int:
  return loop_lib.data_seed(config.train)


# ------------------------------------------------------------------------------------------
# The compiled cohort program.

class CohortProgram:
  """Init, train step and eval step of a cohort of K trials, compiled for one mesh."""

  def __init__(self, config, run, k: int, shared_batch: bool, devices):
    self.config, self.run, self.k = config, run, k
    n = max(d for d in range(1, len(devices) + 1) if k % d == 0)  # devices that split K
    self.mesh = Mesh(np.asarray(devices[:n]), ("data",))
    self.cohort = NamedSharding(self.mesh, P("data"))
    self.repl = NamedSharding(self.mesh, P())
    self.shared_batch = shared_batch
    tx_for = _tx_builder(config)
    qat_for = _qat_builder(config, run.abstract_state.params)
    model = run.model
    tokens = np.zeros((1, config.data.seq_len), np.int32)
    grad_accum = config.train.grad_accum
    family = models.family(config.model.name)

    def init_one(seed, hp):
      state, _ = state_lib.create(model, tx_for(hp), jax.random.PRNGKey(seed), tokens)
      if family.set_traced is None:
        return state
      values = {k: hp[k] for k in family.traced_keys}
      return state.replace(params=family.set_traced(state.params, values))

    def train_one(state, hp, alive, batch, progress):
      step_fn = step_lib.make_train_step(model.apply, tx_for(hp), grad_accum, family.collections,
                                         family.rng_streams, hp[SEED], qat=qat_for(hp))
      new, m = step_fn(state, batch, progress)
      ok = alive & jnp.isfinite(m["train_loss"]) & jnp.isfinite(m["grad_norm"])
      new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
      return new, ok, m

    tb = setup_lib.token_bytes_array(run.spec, run.vocab_size)
    eval_one = step_lib.make_eval_step(model.apply, None if tb is None else jnp.asarray(tb))
    batch_axis = None if shared_batch else 0
    self._init = jax.vmap(init_one)
    self._train = jax.vmap(train_one, in_axes=(0, 0, 0, batch_axis, None))
    self._eval = jax.vmap(eval_one, in_axes=(0, None))
    seeds = jax.ShapeDtypeStruct((k,), jnp.int32)
    hp_abs = {name: jax.ShapeDtypeStruct((k,), v.dtype)
              for name, v in stack_hparams([config]).items()}
    self.abstract_state = jax.eval_shape(self._init, seeds, hp_abs)
    self._init_jit = self._compiled = None

  def state_shardings(self):
    return jax.tree.map(lambda _: self.cohort, self.abstract_state)

  def abstract_with_shardings(self):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.cohort),
                        self.abstract_state)

  def init(self, seeds: Sequence[int], hp: dict) -> state_lib.TrainState:
    if self._init_jit is None:
      self._init_jit = jax.jit(self._init, out_shardings=self.state_shardings())
    return self._init_jit(self.put(np.asarray(seeds, np.int32)), self.put(hp))

  def put(self, tree, sharding=None):
    return jax.device_put(tree, sharding or self.cohort)

  def compile(self, with_eval: bool = True):
    """(train_step, eval_step or None, seconds spent compiling now); compiled once, kept."""
    t0 = time.perf_counter()
    if self._compiled is None or (with_eval and self._compiled[1] is None):
      self._compiled = self._compile(with_eval)
    return (*self._compiled, time.perf_counter() - t0)

  def _compile(self, with_eval: bool):
    """AOT-compiles the train step and, `with_eval`, the eval step."""
    cfg, k = self.config, self.k
    if self.shared_batch:
      batch, ebatch = loop_lib.abstract_batches(cfg, self.repl)
    else:
      batch, ebatch = loop_lib.abstract_batches(cfg, self.cohort, lead=(k,))
      ebatch = loop_lib.abstract_batches(cfg, self.repl)[1]
    hp = {n: jax.ShapeDtypeStruct((k,), v.dtype, sharding=self.cohort)
          for n, v in stack_hparams([cfg]).items()}
    alive = jax.ShapeDtypeStruct((k,), jnp.bool_, sharding=self.cohort)
    prog = jax.ShapeDtypeStruct((), jnp.float32, sharding=self.repl)
    train = loop_lib.aot_compile(
        self._train, (self.abstract_with_shardings(), hp, alive, batch, prog),
        out_shardings=(self.state_shardings(), self.cohort, self.cohort), donate_argnums=(0,))
    if not with_eval:
      return train, None
    evl = loop_lib.aot_compile(self._eval, (self.abstract_with_shardings().params, ebatch),
                               out_shardings=self.cohort)
    return train, evl

  def evaluate(self, eval_fn, params, split: str, max_tokens: int | None, *,
               desc: str = "eval", show: bool = False) -> list[dict]:
    """Per-trial summaries of `split` (sums in float64 on the host)."""
    return eval_lib.evaluate_trials(self.run.spec, self.config, eval_fn, params, split,
                                    max_tokens, lambda b: self.put(b, self.repl), desc=desc,
                                    show=show)


def cohort_program(config, k: int, shared_batch: bool, devices) -> CohortProgram:
  """The cohort program of this structure, built once per process (a worker running many
  cohorts of one structure, or a benchmark, traces and compiles once)."""
  key = (static_key(config), k, shared_batch, tuple(d.id for d in devices))
  if key not in _PROGRAMS:
    base = config.copy_and_resolve_references()
    # the single-trial pieces live on one device
    base.mesh.update(data=-1, fsdp=1, tensor=1, expert=1)
    run = setup_lib.build(base, devices=devices[:1])
    if len(_PROGRAMS) >= _MAX_PROGRAMS:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = CohortProgram(config, run, k, shared_batch, devices)
  return _PROGRAMS[key]


def solo_step_times(config, devices, steps: int, repeats: int = 1) -> list[float]:
  """Seconds per step of this static structure alone (K = 1), compile and one warm-up step
  excluded: one value per repeat of `steps` timed steps (the calibration pass's measurement)."""
  prog = cohort_program(config, 1, True, devices[:1])
  train, _, _ = prog.compile(with_eval=False)
  hp = prog.put(stack_hparams([config]))
  state = prog.init([config.train.seed], hp)
  alive = prog.put(np.ones((1,), bool))
  b, t = config.train.batch_size, config.data.seq_len
  batch = prog.put({n: np.zeros((b, t), np.int32) for n in ("inputs", "targets")}, prog.repl)
  p = prog.put(np.float32(0.5), prog.repl)
  state, alive, _ = train(state, hp, alive, batch, p)  # warm-up
  jax.block_until_ready(state)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(steps):
      state, alive, _ = train(state, hp, alive, batch, p)
    jax.block_until_ready(state)
    times.append((time.perf_counter() - t0) / steps)
  return times


def _solo_step_time(config, devices, steps: int) -> float:
  """Seconds per step of this static structure alone (K = 1), compile excluded; cached."""
  key = static_key(config)
  if key not in _SOLO_STEP_TIME:
    _SOLO_STEP_TIME[key] = solo_step_times(config, devices, steps)[0]
  return _SOLO_STEP_TIME[key]


# ------------------------------------------------------------------------------------------
# The cohort as a program of the shared loop.

class _Batches:
  """One training iterator per distinct data seed; a shared [B, T] batch or a stacked [K, B, T],
  placed on the cohort's devices."""

  def __init__(self, spec, configs, prog: CohortProgram):
    c = configs[0]
    self.prog = prog
    self.seeds = [_data_seed(x) for x in configs]
    self.its = {s: data.train_iterator(spec, seq_len=c.data.seq_len,
                                       global_batch_size=c.train.batch_size, seed=s,
                                       worker_count=c.data.worker_count)
                for s in dict.fromkeys(self.seeds)}
    self.shared = len(self.its) == 1

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    got = {s: next(it) for s, it in self.its.items()}
    if self.shared:
      return self.prog.put(got[self.seeds[0]], self.prog.repl)
    return self.prog.put({n: np.stack([got[s][n] for s in self.seeds])
                          for n in ("inputs", "targets")})

  def get_state(self) -> dict:
    return {"iterators": {str(s): it.get_state() for s, it in self.its.items()}}

  def set_state(self, state: dict, strict: bool = True) -> None:
    for s, it in self.its.items():
      it.set_state(state["iterators"][str(s)], strict=strict)

  def close(self) -> None:
    for it in self.its.values():
      it.close()


class _CohortRun:
  """The driver's view of a cohort: the carry is {"state": stacked TrainState, "alive": [K]}."""

  freezes_diverged = True  # the step keeps a non-finite trial's previous state (jnp.where)
  keep_best = 0  # one checkpoint holds K trials: no single best

  def __init__(self, prog: CohortProgram, configs: Sequence[Any], *, devices,
               solo_steps: int, final_eval_tokens: int | None):
    self.prog, self.configs, self.k, self.run = prog, list(configs), prog.k, prog.run
    self.hp = prog.put(stack_hparams(configs))
    c = configs[0]
    self.tokens_per_step = c.train.batch_size * c.data.seq_len
    self.host_update_fn = registry.OPTIMIZERS.get(c.optimizer.name).host_update
    self.batches = _Batches(prog.run.spec, configs, prog)
    self.final_eval_tokens = (c.train.get("final_eval_tokens") if final_eval_tokens is None
                              else final_eval_tokens)
    self.devices, self.solo_steps, self.solo = devices, solo_steps, None
    self._train = self._eval = None

  # -- the driver's interface
  def init_carry(self):
    return {"state": self.prog.init([c.train.seed for c in self.configs], self.hp),
            "alive": self.prog.put(np.ones((self.k,), bool))}

  def abstract_carry(self):
    return {"state": self.prog.abstract_with_shardings(),
            "alive": jax.ShapeDtypeStruct((self.k,), jnp.bool_, sharding=self.prog.cohort)}

  def open_writers(self, workdir: str, cfg_dicts: list[dict], step: int) -> list:
    self.workdir = workdir
    writers = []
    cohort_name = os.path.basename(os.path.abspath(workdir))
    for i, cfg_dict in enumerate(cfg_dicts):
      d = self.trial_dir(i)
      files.atomic_write_json(os.path.join(d, "config.json"), cfg_dict)
      sinks = tracking.sinks(self.configs[i], cfg_dict, d, name=f"{cohort_name}-trial_{i}",
                             group=cohort_name, enabled=jax.process_index() == 0)
      w = metrics_lib.MetricsWriter(d, tensorboard=False, sinks=sinks)
      w.truncate_after(step)
      writers.append(w)
    return writers

  def trial_dir(self, i: int) -> str:
    return os.path.join(self.workdir, f"trial_{i}")

  def meta_extra(self) -> dict:
    return {"solo_step_time_s": self.solo}

  def restore_meta(self, meta: dict) -> None:
    self.solo = meta.get("solo_step_time_s")

  def close(self) -> None:
    self.batches.close()

  def step_time_s(self) -> float | None:
    """The trials' clock: `train.step_time_s` (calibrated), else the solo step time measured
    at compile; None (solo_steps=0) falls back to the cohort's measured clock."""
    return self.configs[0].train.step_time_s or self.solo

  def compile(self) -> float:
    self._train, self._eval, seconds = self.prog.compile()
    calibrated = self.configs[0].train.step_time_s is not None
    if self.solo_steps and self.solo is None and not calibrated:  # timed apart from compile
      self.solo = _solo_step_time(self.configs[0], self.devices, self.solo_steps)
    return seconds

  # -- the loop's interface
  def step(self, carry, batch, progress):
    state, alive, m = self._train(carry["state"], self.hp, carry["alive"], batch,
                                  self.prog.put(np.float32(progress), self.prog.repl))
    return {"state": state, "alive": alive}, m

  def observe(self, carry, metrics) -> list[dict]:
    m, alive, steps = jax.device_get((metrics, carry["alive"], carry["state"].step))
    jax.block_until_ready(carry)
    return [dict({k: float(v[i]) for k, v in m.items()}, steps=int(steps[i]),
                 finite=bool(alive[i])) for i in range(self.k)]

  def evaluate(self, carry, split, max_tokens, desc, show) -> list[dict]:
    return self.prog.evaluate(self._eval, carry["state"].params, split, max_tokens, desc=desc,
                              show=show)

  def freeze(self, carry, live):
    return dict(carry, alive=self.prog.put(np.asarray(live, bool)))

  def host_update(self, carry, step, evals):
    if self.host_update_fn is None:
      return carry
    state = self.host_update_fn(self.configs[0].optimizer, carry["state"], step, evals)
    return dict(carry, state=state)

  # -- the summaries
  def summarize(self, out: run_lib.Outcome) -> list[dict]:
    """trial_<i>/summary.json and cohort.json; an interrupt raises KeyboardInterrupt (the
    checkpoint is saved: the sweep runner re-queues the trials)."""
    if out.interrupted:
      raise KeyboardInterrupt("cohort interrupted; its checkpoint is saved")
    timing, solo, k = out.loop.clock, self.solo, self.k
    n_params = models.count_params(self.run.abstract_state.params)
    summaries = []
    for i, (rec, cfg, fin) in enumerate(zip(out.loop.records, self.configs, out.finals)):
      val_loss = fin.get("val_loss")
      s = {
          "trial_index": i, "cohort_size": k, "name": cfg.name, "hparams": trial_hparams(cfg),
          "seed": cfg.train.seed, "data_seed": _data_seed(cfg), "num_params": n_params,
          "tokens_per_step": self.tokens_per_step,
          "steps": rec["steps"], "stop_reason": rec["stop_reason"] or STOP_STEPS,
          "final_val_loss": val_loss, "best_val_loss": rec["best_val_loss"],
          "val_bpb": fin.get("val_bpb"), "val_bpb_pg": fin.get("val_bpb_pg"),
          "val_acc": fin.get("val_acc"),
          "val_ppl": math.exp(val_loss) if val_loss is not None else None,
          "target_loss": rec["target_loss"], "reached_target": rec["step_to_target"] is not None,
          "step_to_target": rec["step_to_target"],
          "time_to_target_s": rec["time_to_target_s"],
          "train_time_s": out.loop.clock_s(timing.train_s, rec["steps"]),
          "step_time_s": out.loop.step_time_s, "solo_step_time_s": solo,
          "tokens_per_s": (self.tokens_per_step / out.loop.step_time_s
                           if out.loop.step_time_s else None),
          "cohort_train_time_s": timing.train_s, "cohort_eval_time_s": timing.eval_s,
          "compile_time_s": out.compile_s, "cohort_wall_time_s": time.time() - out.wall0,
          "cohort_devices": self.prog.mesh.size, "shared_batches": self.batches.shared,
          "backend": jax.default_backend(), "curve": rec["curve"],
          **rec["last_metrics"],  # metric/* and opt/* at the last log step
      }
      files.atomic_write_json(os.path.join(self.trial_dir(i), "summary.json"), s)
      summaries.append(s)
    files.atomic_write_json(os.path.join(self.workdir, "cohort.json"), {
        "cohort_size": k, "static_key": static_key(self.configs[0]), "steps": out.loop.step,
        "cohort_train_time_s": timing.train_s, "cohort_eval_time_s": timing.eval_s,
        "compile_time_s": out.compile_s, "cohort_wall_time_s": time.time() - out.wall0,
        "solo_step_time_s": solo, "trials": [{x: v for x, v in s.items() if x != "curve"}
                                             for s in summaries]})
    return summaries


def train_cohort(configs: Sequence[Any], workdir: str, *,
                 on_eval: Callable[[int, int, dict], bool] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 solo_steps: int = 5, final_eval_tokens: int | None = None,
                 devices: Sequence[jax.Device] | None = None) -> list[dict]:
  """Trains len(configs) trials of one static structure as ONE vmapped jitted program.

  Checkpoints in `workdir` and resumes if it holds a checkpoint. `on_eval(trial, step,
  metrics)` is called after each periodic evaluation of each live trial; True prunes (freezes)
  it. `solo_steps`: steps timed for the solo step time (0: skip; time-to-target fields None).
  `final_eval_tokens`: the final evaluation's tokens (None: the configs'
  `train.final_eval_tokens`, whose None is the whole validation split, as a single run).
  `devices`: default all; the cohort axis is split over the largest number of them that
  divides K. Returns one summary per trial (also `workdir/trial_<i>/summary.json`).
  Ctrl-C / SIGTERM: saves a checkpoint, then raises KeyboardInterrupt. The workdir is locked
  for the process (`train.workdir.WorkdirLock`): a second worker on it stops with an error.
  """
  wall0 = time.time()
  if not configs:
    raise ValueError("train_cohort needs at least one config")
  for c in configs:
    config_lib.validate(c)
  _check_same_static(configs)
  devices = list(devices) if devices is not None else jax.devices()
  with WorkdirLock(workdir, enabled=jax.process_index() == 0):
    shared = len({_data_seed(c) for c in configs}) == 1
    prog = cohort_program(configs[0], len(configs), shared, devices)
    program = _CohortRun(prog, configs, devices=devices, solo_steps=solo_steps,
                         final_eval_tokens=final_eval_tokens)
    return run_lib.drive(program, workdir, on_eval=on_eval, clock=clock, wall0=wall0,
                         show=bool(configs[0].train.progress_bar),
                         desc=f"cohort of {len(configs)}")
