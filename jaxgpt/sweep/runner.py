"""The sweep worker: ask K trials, train them as vmapped cohorts, tell the results.

Any number of workers may run `run_worker` on one study at once. Each loop: fail trials whose
worker stopped beating (they are re-queued up to `max_retry` times), claim up to K trials
(queued grid points, queued repeats of a configuration with other seeds, or fresh samples from
random/TPE while the trial budget lasts), build each trial's config, split them into cohorts of
equal static structure (`cohort.group_static`) and train each cohort in one vmapped program
(`cohort.train_cohort`), with a heartbeat running and periodic evaluations feeding Optuna's
pruner. A cohort's run directory is named by the trials' first numbers (stable across
retries), so a re-queued cohort resumes from its checkpoint. A worker stops when its stage has
no trial left to claim or run; with `stage2.enabled` it then builds the refined grid (once per
study) and continues with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
import warnings
from typing import Callable, Sequence

import optuna
from optuna.trial import TrialState

from jaxgpt import config as config_lib
from jaxgpt import files
from jaxgpt.sweep import space as space_lib
from jaxgpt.sweep import spec as spec_lib
from jaxgpt.sweep import study as study_lib

SUMMARY_KEYS = ("final_val_loss", "best_val_loss", "val_bpb", "val_acc", "val_ppl", "steps",
                "stop_reason", "reached_target", "step_to_target", "time_to_target_s",
                "solo_step_time_s", "cohort_train_time_s", "cohort_wall_time_s",
                "compile_time_s", "tokens_per_s", "num_params")


@dataclasses.dataclass
class Claimed:
  trial: optuna.Trial
  params: dict  # short knob name -> value (learning rates at the reference batch)
  seed: int
  root: int  # first trial number of its retry chain


@dataclasses.dataclass
class Stage:
  name: str
  study: optuna.Study
  dims: list
  grid_mode: bool
  budget: int | None  # trials (roots) for random/TPE; None for a grid


# The trainer is imported when first needed: importing `cohort` loads JAX, which workers with
# an injected (cheap) trainer never need.
def _default_train_fn():
  from jaxgpt.sweep import cohort  # loads JAX: only when the real trainer is used
  return cohort.train_cohort


def _default_group_fn():
  from jaxgpt.sweep import cohort  # loads JAX: only when the real trainer is used
  return cohort.group_static


def _quiet():
  warnings.filterwarnings("ignore", message=".*Heartbeat of storage.*")
  warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
  optuna.logging.set_verbosity(optuna.logging.WARNING)


# ------------------------------------------------------------------------------------------
# Stages.

def _default_traced_keys() -> tuple[str, ...]:
  from jaxgpt.sweep import cohort  # loads JAX: only when the real trainer is used
  return cohort.TRACED_KEYS


def _grid_for(sweep, dims, traced_keys) -> list[dict]:
  points = (space_lib.oat_points if sweep.sampler == "oat" else space_lib.grid_points)(
      dims, traced_keys)
  if sweep.n_trials is not None:  # the budget counts trials, i.e. points x seeds
    points = points[:max(1, -(-sweep.n_trials // len(sweep.seeds)))]
  return points


def open_stage1(sweep, storage, url: str, traced_keys: Sequence[str]) -> Stage:
  dims = space_lib.dims_from_config(sweep.space)
  grid_mode = sweep.sampler in spec_lib.GRID_SAMPLERS
  study = study_lib.load_or_create(sweep.name, storage, url,
                                   study_lib.make_sampler(sweep, dims, grid_mode),
                                   study_lib.make_pruner(sweep))
  if grid_mode:
    study_lib.enqueue_once(study, url, _grid_for(sweep, dims, traced_keys), list(sweep.seeds))
  return Stage(sweep.name, study, dims, grid_mode, None if grid_mode else sweep.n_trials)


def best_configs(study: optuna.Study, k: int) -> list[dict]:
  """The k configurations (params without the seed) of lowest mean objective over seeds."""
  by_config: dict[str, list] = {}
  for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
    if t.value is not None and math.isfinite(t.value):
      key = study_lib.point_key(t.params, 0)
      by_config.setdefault(key, [dict(t.params), []])[1].append(t.value)
  ranked = sorted(by_config.values(), key=lambda pv: sum(pv[1]) / len(pv[1]))
  return [p for p, _ in ranked[:k]]


def open_stage2(sweep, storage, url: str, stage1: Stage) -> Stage:
  """The refined grid's study, created and enqueued by the first worker to get here.

  All of it runs under the stage-2 study's claim lock, so workers reaching stage 2 together
  (on any backend) create the study and enqueue the grid once; later ones load the stored grid.
  """
  name = sweep.name + "-stage2"
  with study_lib.claim_lock(url, name):
    existing = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    grid = None
    if name in existing:  # the grid is the one the first worker stored
      grid = optuna.load_study(study_name=name, storage=storage).user_attrs.get("grid")
    if grid is None:
      best = best_configs(stage1.study, sweep.stage2.top_k)
      if not best:
        raise RuntimeError(f"stage 2 of {sweep.name!r}: stage 1 finished no trial with a "
                           "finite objective, so there is no best region to refine")
      grid = space_lib.refined_grid(stage1.dims, best, sweep.stage2.points, sweep.stage2.span)
    dims = space_lib.stage2_dims(stage1.dims, grid)
    study = study_lib.load_or_create(name, storage, url,
                                     study_lib.make_sampler(sweep, dims, True),
                                     study_lib.make_pruner(sweep))
    study_lib.enqueue_once(study, url, grid, list(sweep.seeds), extra_attrs={"grid": grid})
    grid = study.user_attrs.get("grid", grid)
  return Stage(name, study, space_lib.stage2_dims(stage1.dims, grid), True, None)


def stage_finished(stage: Stage) -> bool:
  c = study_lib.counts(stage.study)
  if c["running"] or c["waiting"]:
    return False
  return stage.grid_mode or study_lib.num_roots(stage.study) >= stage.budget


# ------------------------------------------------------------------------------------------
# Claiming.

def claim(stage: Stage, sweep, url: str, k: int) -> list[Claimed]:
  """Up to k trials for this worker: queued ones first, then fresh samples within budget."""
  out = []
  with study_lib.claim_lock(url, stage.name):
    while len(out) < k:
      trial, fresh = study_lib.pop_waiting(stage.study), False
      if trial is None:
        if stage.grid_mode or study_lib.num_roots(stage.study) >= stage.budget:
          break
        trial, fresh = stage.study.ask(), True
        stage.study._storage.record_heartbeat(trial._trial_id)
      params = space_lib.suggest(trial, stage.dims)
      seed = trial.user_attrs.get("seed")
      if seed is None:
        seed = int(sweep.seeds[0])
        trial.set_user_attr("seed", seed)
      if fresh:  # the other seeds of this configuration are queued, usually claimed next
        for s in list(sweep.seeds)[1:]:
          stage.study.enqueue_trial(params, user_attrs={"seed": int(s)})
      frozen = stage.study._storage.get_trial(trial._trial_id)
      out.append(Claimed(trial, params, int(seed), study_lib.root_number(frozen)))
  return out


def requeue(study: optuna.Study, trial: optuna.Trial) -> None:
  """Fails a trial this worker stops running and queues it again, not counted as a retry."""
  study.tell(trial, state=TrialState.FAIL)
  t = study._storage.get_trial(trial._trial_id)
  system_attrs = {"failed_trial": t.number, "retry_history": [], **t.system_attrs}
  study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=t.params,
                                      distributions=t.distributions, user_attrs=t.user_attrs,
                                      system_attrs=system_attrs))


def fail(study: optuna.Study, trial: optuna.Trial, error: str, retry: bool,
         max_retry: int) -> None:
  """Marks a trial failed with its error; `retry` re-queues it (at most max_retry times)."""
  trial.set_user_attr("error", error[-2000:])
  study.tell(trial, state=TrialState.FAIL)
  if retry:
    study_lib.retry_callback(max_retry)(study, study._storage.get_trial(trial._trial_id))


# ------------------------------------------------------------------------------------------
# Running cohorts.

def cohort_dir(workdir: str, stage: str, members: Sequence[Claimed]) -> str:
  roots = sorted(m.root for m in members)
  digest = hashlib.sha1(repr((stage, roots)).encode()).hexdigest()[:8]
  return os.path.join(workdir, "runs", f"{stage}-t{roots[0]:04d}-{digest}")


def objective_value(summary: dict, objective: str) -> float:
  if objective == "time_to_target_s":
    v = summary.get("time_to_target_s")
    return float(v) if summary.get("reached_target") and v is not None else math.inf
  v = summary.get(objective)
  return float(v) if v is not None and math.isfinite(float(v)) else math.inf


def _scalars(summary: dict) -> dict:
  out = {}
  for k in SUMMARY_KEYS:
    v = summary.get(k)
    out[k] = v.item() if hasattr(v, "item") else v
  return out


def tell(stage: Stage, member: Claimed, summary: dict, sweep, run_dir: str, workdir: str,
         index: int, config) -> None:
  """Records a trial's summary as user attributes and tells Optuna its state and value."""
  trial = member.trial
  trial.set_user_attr("summary", _scalars(summary))
  trial.set_user_attr("run", {  # where its files are, and the values its config ran with
      "run_dir": os.path.relpath(run_dir, workdir), "cohort_index": index,
      "knobs": {d.key: config_lib.get_key(config, d.key) for d in stage.dims},
      "vocab_size": spec_lib.vocab_size(config)})
  if summary.get("stop_reason") == "pruned":
    stage.study.tell(trial, state=TrialState.PRUNED)
  else:  # diverged trials are complete with +inf, so samplers learn to avoid the region
    stage.study.tell(trial, objective_value(summary, sweep.objective))


def run_cohorts(stage: Stage, claimed: list[Claimed], base, sweep, workdir: str, storage,
                train_fn: Callable, group_fn: Callable) -> None:
  configs, ok = [], []
  for m in claimed:
    try:
      configs.append(spec_lib.trial_config(
          base, space_lib.knobs_to_keys(stage.dims, m.params), m.seed, sweep))
      ok.append(m)
    except ValueError as e:  # a config error repeats on retry: fail without retrying
      fail(stage.study, m.trial, f"invalid trial config: {e}", False, 0)
  for group in group_fn(configs):
    members = [ok[i] for i in group]
    run_dir = cohort_dir(workdir, stage.name, members)
    files.atomic_write_json(os.path.join(run_dir, "trials.json"), [
        {"index": j, "number": m.trial.number, "root": m.root, "seed": m.seed,
         "params": m.params} for j, m in enumerate(members)])

    def on_eval(i: int, step: int, metrics: dict, members=members) -> bool:
      v = metrics.get("val_loss")
      if v is None or not math.isfinite(float(v)):
        return False
      members[i].trial.report(float(v), int(step))
      return members[i].trial.should_prune()

    ids = [m.trial._trial_id for m in members]
    try:
      with study_lib.Heartbeat(storage, ids, sweep.heartbeat_s):
        summaries = train_fn([configs[i] for i in group], run_dir, on_eval=on_eval)
    except (KeyboardInterrupt, SystemExit):
      for m in members:
        requeue(stage.study, m.trial)
      raise
    except Exception as e:  # noqa: BLE001 - a crashed cohort fails its trials, retried
      for m in members:
        fail(stage.study, m.trial, f"{type(e).__name__}: {e}", True, sweep.max_retry)
      continue
    for j, (m, s) in enumerate(zip(members, summaries)):
      tell(stage, m, s, sweep, run_dir, workdir, j, configs[group[j]])


# ------------------------------------------------------------------------------------------
# The worker.

class Progress:
  """A tqdm bar of finished trials with done / running / pruned / failed counts."""

  def __init__(self, enabled: bool):
    self._bar, self._enabled = None, enabled

  def update(self, stage: Stage) -> dict:
    c = study_lib.counts(stage.study)
    if not self._enabled:
      return c
    import tqdm
    total = len(stage.study.get_trials(deepcopy=False)) if stage.grid_mode else stage.budget
    if self._bar is None or self._bar.desc != stage.name:
      if self._bar is not None:
        self._bar.close()
      self._bar = tqdm.tqdm(total=total, desc=stage.name, unit="trial", dynamic_ncols=True)
    self._bar.total = max(total, c["done"] + c["pruned"])
    self._bar.n = c["done"] + c["pruned"]
    self._bar.set_postfix_str(f"done {c['done']} running {c['running']} pruned {c['pruned']} "
                              f"failed {c['failed']}")
    return c

  def close(self):
    if self._bar is not None:
      self._bar.close()


def write_meta(sweep, workdir: str, url: str | None) -> None:
  dims = space_lib.dims_from_config(sweep.space)
  base = spec_lib.load_experiment(sweep)
  meta = {"name": sweep.name, "variants": sweep.variants,
          "studies": [sweep.name] + ([sweep.name + "-stage2"] if sweep.stage2.enabled else []),
          "storage": url, "objective": sweep.objective, "sampler": sweep.sampler,
          "seeds": list(sweep.seeds), "cohort_size": sweep.cohort_size,
          "knobs": {d.name: d.key for d in dims},
          "baselines": ({d.name: d.baseline for d in dims} if sweep.sampler == "oat" else None),
          # The pre-set baseline the report compares every configuration with (any sampler).
          "baseline": ({d.name: d.baseline for d in dims}
                       if all(d.baseline is not None for d in dims) else None),
          "base": {"config": sweep.base.config, "variants": sweep.base.variants},
          "loss_ref": sweep.loss_ref if sweep.loss_ref is not None
          else spec_lib.default_loss_ref(base),
          "target_loss": base.train.target_loss,
          "report": {"top_k": sweep.report.top_k, "heatmap_x": sweep.report.heatmap_x,
                     "heatmap_y": sweep.report.heatmap_y}}
  files.atomic_write_json(spec_lib.workdir_paths(workdir)["meta"], meta)


def check_space(sweep, base) -> None:
  """Builds the configs of the space's corners, so a bad value fails before any training."""
  if sweep.objective == "time_to_target_s" and base.train.target_loss is None:
    raise ValueError("sweep objective='time_to_target_s' needs train.target_loss in the base "
                     "experiment; set --config.base.overrides.train.target_loss=LOSS")
  dims = space_lib.dims_from_config(sweep.space)
  for d in dims:
    for v in (d.values if d.values is not None else (d.low, d.high)):
      spec_lib.trial_config(base, {d.key: int(v) if d.is_int else v}, sweep.seeds[0], sweep)


def run_worker(sweep, workdir: str, *, storage: str | None = None,
               train_fn: Callable | None = None, group_fn: Callable | None = None,
               traced_keys: Sequence[str] | None = None, max_cohorts: int | None = None,
               progress: bool = True, poll_s: float = 2.0) -> dict:
  """Runs trials of `sweep` until the study (both stages) is finished; returns the counts.

  `train_fn`, `group_fn` and `traced_keys` default to `cohort.train_cohort`,
  `cohort.group_static` and `cohort.TRACED_KEYS` (tests inject cheap ones).
  """
  _quiet()
  spec_lib.validate_sweep(sweep)
  os.makedirs(workdir, exist_ok=True)
  url = study_lib.storage_url(workdir, storage)
  rdb = study_lib.open_storage(url, sweep)  # first: a bad URL or missing driver fails fast
  train_fn = train_fn or _default_train_fn()
  group_fn = group_fn or _default_group_fn()
  base = spec_lib.load_experiment(sweep)
  check_space(sweep, base)
  write_meta(sweep, workdir, url if storage else None)
  traced_keys = _default_traced_keys() if traced_keys is None else traced_keys
  stage = open_stage1(sweep, rdb, url, traced_keys)
  stage1 = stage
  bar, cohorts = Progress(progress), 0
  try:
    while max_cohorts is None or cohorts < max_cohorts:
      study_lib.fail_stale(stage.study, url)
      bar.update(stage)
      claimed = claim(stage, sweep, url, sweep.cohort_size)
      if not claimed:
        if not stage_finished(stage):  # others' trials still run (or wait to be failed)
          time.sleep(poll_s)
          continue
        if sweep.stage2.enabled and stage is stage1:
          stage = open_stage2(sweep, rdb, url, stage1)
          continue
        break
      run_cohorts(stage, claimed, base, sweep, workdir, rdb, train_fn, group_fn)
      cohorts += 1
    return bar.update(stage)
  finally:
    bar.close()
