"""Vmapped cohorts: K trials that differ only in traced hyperparameters, trained as one program.

A cohort is K configs with the same static structure (model shape, optimizer kind, Newton-Schulz
steps, batch size, ...: `static_key`). Their numeric hyperparameters (`TRACED_KEYS`) become one
array per key with a leading cohort axis; K models are initialised (one PRNG key per
`train.seed`), parameters and optimizer state are stacked on that axis, and one jitted
`jax.vmap` of the single-run train step (`train.step.make_train_step`, with the optax chain built
inside the vmap from each trial's values by `optim.build_optimizer(..., hparams=...)`) trains
all K at once. The cohort axis is sharded over as many devices as divide K (all of them when
their number divides K): trials data-parallel across devices, each trial on one device.

Data: the order is `train.data_seed` (unset: `train.seed`), exactly as in a single run. Trials
whose data seeds agree share each batch (broadcast, not copied); otherwise each trial reads its
own stream, so trial i reproduces the single run of `configs[i]` up to float rounding.

Per trial, on the host: metrics at every log step, periodic evaluation (one vmapped pass scores
all trials), early stopping at `train.target_loss`, pruning by `on_eval`, and divergence: a trial
whose loss or gradient norm is not finite is marked in a per-trial `alive` mask inside the step
and its whole state is frozen with `jnp.where`, so the others compute exactly what they would
without it. A stopped trial (target, pruned, diverged) is frozen the same way. Time to target is
`step_to_target x solo_step_time_s`, the measured step time of a K=1 program of the same static
structure (compile apart, cached per static key): what the trial would have taken alone; the
cohort's own times are reported apart. `train.max_time_s` caps the cohort's training clock (all
live trials stop together with `time_cap`), and the schedules' `progress` reads that clock. The
cohort checkpoints (state, alive mask, data iterators, host records) with Orbax in
`workdir/checkpoints` and resumes from it.

Files: `workdir/cohort.json` (the cohort's times and per-trial summaries),
`workdir/trial_<i>/{config.json, metrics.jsonl, summary.json}`.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgpt import config as config_lib
from jaxgpt import data, models
from jaxgpt.optim import build as build_lib
from jaxgpt.optim import schedules
from jaxgpt.optim.projection import project_every
from jaxgpt.train import checkpoint as ckpt_lib
from jaxgpt import files
from jaxgpt.train import loop as loop_lib
from jaxgpt.train import metrics as metrics_lib
from jaxgpt.train import setup as setup_lib
from jaxgpt.train import state as state_lib
from jaxgpt.train import step as step_lib

# Config keys that may differ inside one cohort (numeric values fed to the step as arrays, or
# host-side settings of each trial).
TRACED_KEYS: tuple[str, ...] = (
    "optimizer.lr", "optimizer.embed_lr", "optimizer.head_lr", "optimizer.scalar_lr",
    "optimizer.momentum", "optimizer.weight_decay", "optimizer.b1", "optimizer.b2",
    "optimizer.beta2", "optimizer.warmup_frac", "optimizer.decay_frac",
    "optimizer.final_lr_frac", "model.alpha", "model.lazy_proj_freq", "train.seed",
    "train.data_seed", "train.target_loss")
# Keys that name or display a run and change nothing it computes.
_FREE_KEYS = ("name", "variants", "train.progress_bar", "sample.", "export.")
_LR_KEYS = ("embed_lr", "head_lr", "scalar_lr")

STOP_STEPS, STOP_TARGET, STOP_DIVERGED, STOP_PRUNED, STOP_TIME = (
    "steps", "target", "diverged", "pruned", "time_cap")

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

def trial_hparams(config) -> dict[str, float | int]:
  """The traced values of one trial (an unset embed/head/scalar lr is `optimizer.lr`)."""
  o = config.optimizer
  hp = {k: float(o[k]) for k in build_lib.TRACED_OPTIMIZER_KEYS if k not in _LR_KEYS}
  for k in _LR_KEYS:
    hp[k] = float(o.lr if o[k] is None else o[k])
  hp["alpha"] = float(config.model.alpha)
  hp["lazy_proj_freq"] = int(config.model.lazy_proj_freq)
  return hp


def stack_hparams(configs) -> dict[str, np.ndarray]:
  hps = [trial_hparams(c) for c in configs]
  return {k: np.asarray([h[k] for h in hps],
                        np.int32 if isinstance(hps[0][k], int) else np.float32)
          for k in hps[0]}


def _tx_builder(config) -> Callable[[dict], optax.GradientTransformationExtraArgs]:
  """hparams -> the single run's optimizer chain (`setup.build`) with traced values."""
  project = models.projection(config.model)

  def tx_for(hp):
    tx = build_lib.build_optimizer(
        config.optimizer, {k: hp[k] for k in build_lib.TRACED_OPTIMIZER_KEYS})
    if project is not None:
      tx = optax.chain(tx, project_every(project, hp["lazy_proj_freq"]))
    return tx

  return tx_for


def _set_alpha(config, params, alpha):
  """Gated nGPT: `model.alpha` is the init value of every `alpha_*` leaf; set it per trial."""
  if config.model.name != "gated_ngpt":
    return params

  def fix(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    return jnp.full_like(leaf, alpha) if name.startswith("alpha_") else leaf

  return jax.tree_util.tree_map_with_path(fix, params)


def _num(x) -> float | None:
  """A float for JSON files: None for NaN, +-1e308 for infinities (as metrics.jsonl does)."""
  x = float(x)
  if math.isnan(x):
    return None
  return x if math.isfinite(x) else math.copysign(1e308, x)


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
    model = run.model
    tokens = np.zeros((1, config.data.seq_len), np.int32)
    grad_accum = config.train.grad_accum

    def init_one(seed, hp):
      state, _ = state_lib.create(model, tx_for(hp), jax.random.PRNGKey(seed), tokens)
      return state.replace(params=_set_alpha(config, state.params, hp["alpha"]))

    def train_one(state, hp, alive, batch, progress):
      step_fn = step_lib.make_train_step(model.apply, tx_for(hp), grad_accum)
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
    b, t = cfg.train.batch_size, cfg.data.seq_len
    bshape = (b, t) if self.shared_batch else (k, b, t)
    bsh = self.repl if self.shared_batch else self.cohort
    batch = {n: jax.ShapeDtypeStruct(bshape, jnp.int32, sharding=bsh)
             for n in ("inputs", "targets")}
    hp = {n: jax.ShapeDtypeStruct((k,), v.dtype, sharding=self.cohort)
          for n, v in stack_hparams([cfg]).items()}
    alive = jax.ShapeDtypeStruct((k,), jnp.bool_, sharding=self.cohort)
    prog = jax.ShapeDtypeStruct((), jnp.float32, sharding=self.repl)
    st = self.state_shardings()
    train = jax.jit(self._train, out_shardings=(st, self.cohort, self.cohort),
                    donate_argnums=(0,)).lower(self.abstract_with_shardings(), hp, alive, batch,
                                               prog).compile()
    if not with_eval:
      return train, None
    eb = setup_lib.eval_batch_size(cfg)
    ebatch = {"inputs": jax.ShapeDtypeStruct((eb, t), jnp.int32, sharding=self.repl),
              "targets": jax.ShapeDtypeStruct((eb, t), jnp.int32, sharding=self.repl),
              "weights": jax.ShapeDtypeStruct((eb, t), jnp.float32, sharding=self.repl)}
    evl = jax.jit(self._eval, out_shardings=self.cohort).lower(
        self.abstract_with_shardings().params, ebatch).compile()
    return train, evl


def _evaluate(prog: CohortProgram, eval_fn, params, max_tokens: int | None) -> list[dict]:
  """Per-trial eval summaries over the validation windows (sums in float64 on the host)."""
  cfg = prog.config
  sums: dict[str, np.ndarray] = {}
  for local in data.eval_batches(prog.run.spec, "val", seq_len=cfg.data.seq_len,
                                 batch_size=setup_lib.eval_batch_size(cfg), max_tokens=max_tokens):
    out = jax.device_get(eval_fn(params, prog.put(local, prog.repl)))
    for name, v in out.items():
      sums[name] = sums.get(name, 0.0) + np.asarray(v, np.float64)
  return [step_lib.summarize_eval({n: v[i] for n, v in sums.items()}) for i in range(prog.k)]


def cohort_program(config, k: int, shared_batch: bool, devices) -> CohortProgram:
  """The cohort program of this structure, built once per process (a worker running many
  cohorts of one structure, or a benchmark, traces and compiles once)."""
  key = (static_key(config), k, shared_batch, tuple(d.id for d in devices))
  if key not in _PROGRAMS:
    base = config.copy_and_resolve_references()
    base.mesh.update(data=-1, fsdp=1, tensor=1)  # the single-trial pieces live on one device
    run = setup_lib.build(base, devices=devices[:1])
    if len(_PROGRAMS) >= _MAX_PROGRAMS:
      _PROGRAMS.pop(next(iter(_PROGRAMS)))
    _PROGRAMS[key] = CohortProgram(config, run, k, shared_batch, devices)
  return _PROGRAMS[key]


def _solo_step_time(config, devices, steps: int) -> float:
  """Seconds per step of this static structure alone (K = 1), compile excluded; cached."""
  key = static_key(config)
  if key not in _SOLO_STEP_TIME:
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
    t0 = time.perf_counter()
    for _ in range(steps):
      state, alive, _ = train(state, hp, alive, batch, p)
    jax.block_until_ready(state)
    _SOLO_STEP_TIME[key] = (time.perf_counter() - t0) / steps
  return _SOLO_STEP_TIME[key]


# ------------------------------------------------------------------------------------------
# The loop.

class _Batches:
  """One training iterator per distinct data seed; a shared [B, T] batch or a stacked [K, B, T]."""

  def __init__(self, spec, configs):
    c = configs[0]
    self.seeds = [_data_seed(x) for x in configs]
    self.its = {s: data.train_iterator(spec, seq_len=c.data.seq_len,
                                       global_batch_size=c.train.batch_size, seed=s,
                                       worker_count=c.data.worker_count)
                for s in dict.fromkeys(self.seeds)}
    self.shared = len(self.its) == 1

  def next(self) -> dict:
    got = {s: next(it) for s, it in self.its.items()}
    if self.shared:
      return got[self.seeds[0]]
    return {n: np.stack([got[s][n] for s in self.seeds]) for n in ("inputs", "targets")}

  def get_state(self) -> dict:
    return {"iterators": {str(s): it.get_state() for s, it in self.its.items()}}

  def set_state(self, state: dict) -> None:
    for s, it in self.its.items():
      it.set_state(state["iterators"][str(s)])

  def close(self) -> None:
    for it in self.its.values():
      it.close()


def _new_record(config) -> dict:
  return {"stop_reason": None, "best_val_loss": None, "step_to_target": None, "steps": 0,
          "curve": [], "target_loss": config.train.target_loss}


def _check_resume(saved: list, current: list) -> None:
  lines = []
  for i, (a, b) in enumerate(zip(saved, current)):
    for key, (x, y) in config_lib.config_diff(a, b).items():
      lines.append(f"  trial {i} {key}: {x!r} -> {y!r}")
  if len(saved) != len(current):
    lines.append(f"  number of trials: {len(saved)} -> {len(current)}")
  if lines:
    raise loop_lib.ConfigChangedError(
        "this cohort workdir holds trials with a different config; differing keys:\n"
        + "\n".join(lines) + "\nuse another workdir")


def train_cohort(configs: Sequence[Any], workdir: str, *,
                 on_eval: Callable[[int, int, dict], bool] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 solo_steps: int = 5, final_eval_tokens: int | None = None,
                 devices: Sequence[jax.Device] | None = None) -> list[dict]:
  """Trains len(configs) trials of one static structure as ONE vmapped jitted program.

  Checkpoints in `workdir` and resumes if it holds a checkpoint. `on_eval(trial, step,
  metrics)` is called after each periodic evaluation of each live trial; True prunes (freezes)
  it. `solo_steps`: steps timed for the solo step time (0: skip; time-to-target fields None).
  `final_eval_tokens`: the final evaluation's tokens (None: the whole validation split, as a
  single run). `devices`: default all; the cohort axis is split over the largest number of
  them that divides K. Returns one summary per trial (also `workdir/trial_<i>/summary.json`).
  """
  wall0 = time.time()
  if not configs:
    raise ValueError("train_cohort needs at least one config")
  for c in configs:
    config_lib.validate(c)
  _check_same_static(configs)
  devices = list(devices) if devices is not None else jax.devices()
  k, cfg0 = len(configs), configs[0]
  tcfg = cfg0.train
  shared = len({_data_seed(c) for c in configs}) == 1
  prog = cohort_program(cfg0, k, shared, devices)
  run = prog.run
  batches = _Batches(run.spec, configs)
  hp = prog.put(stack_hparams(configs))
  cfg_dicts = [config_lib.to_dict(c) for c in configs]
  trial_dirs = [os.path.join(workdir, f"trial_{i}") for i in range(k)]
  os.makedirs(workdir, exist_ok=True)
  mngr = ckpt_lib.manager(os.path.join(workdir, "checkpoints"),
                          keep_latest=tcfg.keep_checkpoints, keep_best=0)

  meta = {"step": 0, "train_time_s": 0.0, "eval_time_s": 0.0, "solo_step_time_s": None,
          "trials": [_new_record(c) for c in configs], "configs": cfg_dicts}
  latest = mngr.latest_step()
  if latest is not None:
    saved = mngr.restore(latest, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    _check_resume(saved["configs"], cfg_dicts)  # before the state, whose shapes may differ
    target = {"state": prog.abstract_with_shardings(),
              "alive": jax.ShapeDtypeStruct((k,), jnp.bool_, sharding=prog.cohort)}
    restored, data_state, saved = ckpt_lib.restore(mngr, target, latest)
    meta.update(saved)
    state, alive = restored["state"], restored["alive"]
    batches.set_state(data_state)
  else:
    state = prog.init([c.train.seed for c in configs], hp)
    alive = prog.put(np.ones((k,), bool))
  step, recs = int(meta["step"]), meta["trials"]

  writers = []
  for i, d in enumerate(trial_dirs):
    files.atomic_write_json(os.path.join(d, "config.json"), cfg_dicts[i])
    w = metrics_lib.MetricsWriter(d, tensorboard=False)
    w.truncate_after(step)
    writers.append(w)

  train_step, eval_step, compile_s = prog.compile()
  if solo_steps and meta["solo_step_time_s"] is None:
    meta["solo_step_time_s"] = _solo_step_time(cfg0, devices, solo_steps)
  tokens_per_step = tcfg.batch_size * cfg0.data.seq_len
  train_time, eval_time = float(meta["train_time_s"]), float(meta["eval_time_s"])
  ckpt_every = tcfg.checkpoint_every or tcfg.eval_every

  def save():
    meta.update(step=step, train_time_s=train_time, eval_time_s=eval_time)
    ckpt_lib.save(mngr, step, {"state": state, "alive": alive}, batches.get_state(),
                  json.loads(json.dumps(meta)), None)

  live = [r["stop_reason"] is None for r in recs]
  seg_start = clock()
  try:
    while any(live) and step < tcfg.steps:
      batch = batches.next()
      batch = prog.put(batch, prog.repl if batches.shared else prog.cohort)
      p = schedules.progress(step, tcfg.steps, train_time + clock() - seg_start, tcfg.max_time_s)
      state, alive, m = train_step(state, hp, alive, batch, prog.put(np.float32(p), prog.repl))
      step += 1
      do_eval = step % tcfg.eval_every == 0 or step == tcfg.steps
      do_ckpt = step % ckpt_every == 0
      time_up = tcfg.max_time_s is not None and train_time + clock() - seg_start >= tcfg.max_time_s
      if not (do_eval or do_ckpt or time_up or step % tcfg.log_every == 0 or step == tcfg.steps):
        continue
      # ---- timing boundary: wait for the device, close the training segment
      m, alive_h = jax.device_get((m, alive))
      jax.block_until_ready(state)
      train_time += clock() - seg_start
      steps_h = np.asarray(jax.device_get(state.step))
      logged = [i for i in range(k) if live[i]]
      for i in logged:
        recs[i]["steps"] = int(steps_h[i])
        if not alive_h[i]:
          recs[i]["stop_reason"] = STOP_DIVERGED
      ev = None
      if do_eval and any(alive_h):
        t0 = clock()
        ev = _evaluate(prog, eval_step, state.params, tcfg.eval_tokens)
        eval_time += clock() - t0
      for i in logged:
        rec, cfg = recs[i], configs[i]
        row = {"elapsed_s": train_time, "train_loss": _num(m["train_loss"][i]),
               "grad_norm": _num(m["grad_norm"][i]),
               "lr": build_lib.learning_rate(cfg.optimizer, p)}
        point = {"step": step, "train_loss": row["train_loss"], "val_loss": None}
        if ev is not None and rec["stop_reason"] is None:
          row.update(ev[i])
          val = ev[i]["val_loss"]
          point["val_loss"] = val
          best = rec["best_val_loss"]
          rec["best_val_loss"] = val if best is None else min(best, val)
          if cfg.train.target_loss is not None and val <= cfg.train.target_loss:
            rec.update(stop_reason=STOP_TARGET, step_to_target=step)
          elif on_eval is not None and on_eval(i, step, dict(ev[i], train_loss=row["train_loss"])):
            rec["stop_reason"] = STOP_PRUNED
        rec["curve"].append(point)
        writers[i].write(step, **row)
      time_up = tcfg.max_time_s is not None and train_time >= tcfg.max_time_s
      for i in logged:
        if recs[i]["stop_reason"] is None and (time_up or step >= tcfg.steps):
          recs[i]["stop_reason"] = STOP_TIME if time_up and step < tcfg.steps else STOP_STEPS
      live = [r["stop_reason"] is None for r in recs]
      alive = prog.put(np.asarray(live, bool))  # freezes every stopped trial from here on
      if do_ckpt or not any(live):
        save()
      seg_start = clock()
  except BaseException:  # a crash still completes the checkpoint being written
    mngr.wait_until_finished()
    batches.close()
    for w in writers:
      w.close()
    raise
  mngr.wait_until_finished()
  mngr.close()
  batches.close()

  finals = _evaluate(prog, eval_step, state.params, final_eval_tokens)
  solo = meta["solo_step_time_s"]
  summaries = []
  for i, (rec, cfg, d) in enumerate(zip(recs, configs, trial_dirs)):
    fin = finals[i] if rec["stop_reason"] != STOP_DIVERGED else {}
    val_loss = fin.get("val_loss")
    s = {
        "trial_index": i, "cohort_size": k, "name": cfg.name, "hparams": trial_hparams(cfg),
        "seed": cfg.train.seed, "data_seed": _data_seed(cfg), "num_params":
        models.count_params(run.abstract_state.params), "tokens_per_step": tokens_per_step,
        "steps": rec["steps"], "stop_reason": rec["stop_reason"] or STOP_STEPS,
        "final_val_loss": val_loss, "best_val_loss": rec["best_val_loss"],
        "val_bpb": fin.get("val_bpb"), "val_acc": fin.get("val_acc"),
        "val_ppl": math.exp(val_loss) if val_loss is not None else None,
        "target_loss": rec["target_loss"], "reached_target": rec["step_to_target"] is not None,
        "step_to_target": rec["step_to_target"],
        "time_to_target_s": (rec["step_to_target"] * solo
                             if rec["step_to_target"] is not None and solo else None),
        "solo_step_time_s": solo,
        "tokens_per_s": tokens_per_step / solo if solo else None,
        "cohort_train_time_s": train_time, "cohort_eval_time_s": eval_time,
        "compile_time_s": compile_s, "cohort_wall_time_s": time.time() - wall0,
        "cohort_devices": prog.mesh.size, "shared_batches": batches.shared,
        "backend": jax.default_backend(), "curve": rec["curve"],
    }
    writers[i].write(rec["steps"], final_val_loss=val_loss, val_bpb=s["val_bpb"],
                     val_acc=s["val_acc"])
    writers[i].close()
    files.atomic_write_json(os.path.join(d, "summary.json"), s)
    summaries.append(s)
  files.atomic_write_json(os.path.join(workdir, "cohort.json"), {
      "cohort_size": k, "static_key": static_key(cfg0), "steps": step,
      "cohort_train_time_s": train_time, "cohort_eval_time_s": eval_time,
      "compile_time_s": compile_s, "cohort_wall_time_s": time.time() - wall0,
      "solo_step_time_s": solo, "trials": [{x: v for x, v in s.items() if x != "curve"}
                                           for s in summaries]})
  return summaries
