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

The groups design (sampler "groups") enqueues every distinct point of every group once per seed
(`group_seeds` gives some groups' points more seeds);
stage 2 refines around its best configuration and adds only points stage 1 did not run (listed
as the group "stage2" in sweep.json). With `clock = "calibrated"` every trial's
`train.step_time_s` is its structure's calibrated solo step time (`jaxgpt.sweep.calibrate`);
`plan` prints runs x measured time per run. Warnings (a target the first evaluation beats, a
target no trial reached) are kept in sweep.json and repeated by the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from typing import Callable, Sequence

import optuna
from optuna.trial import TrialState

from jaxgpt import config as config_lib
from jaxgpt import files
from jaxgpt.sweep import calibrate as calib_lib
from jaxgpt.sweep import objectives as obj_lib
from jaxgpt.sweep import space as space_lib
from jaxgpt.sweep import spec as spec_lib
from jaxgpt.sweep import study as study_lib

SUMMARY_KEYS = ("final_val_loss", "best_val_loss", "val_bpb", "val_acc", "val_ppl", "steps",
                "stop_reason", "reached_target", "step_to_target", "time_to_target_s",
                "train_time_s", "step_time_s", "solo_step_time_s", "cohort_train_time_s",
                "cohort_wall_time_s", "compile_time_s", "tokens_per_s", "num_params",
                "val_bpb_pg", "val_loss_roundtrip", "val_bpb_roundtrip", "val_bpb_pg_roundtrip",
                "artifact_bytes", "artifact_model_bytes", "artifact_format")


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


def _default_static_key():
  from jaxgpt.sweep import cohort  # loads JAX: only when the real trainer is used
  return cohort.static_key


def stage1_dims(sweep) -> list:
  """The space's knobs; for the groups design, categorical over the values its points use."""
  dims = space_lib.dims_from_config(sweep.space)
  if sweep.sampler == "groups":
    points, _ = space_lib.group_points(sweep.groups.to_dict(), dims)
    dims = space_lib.group_dims(dims, points)
  return dims


def _grid_for(sweep, dims, traced_keys) -> list[dict]:
  if sweep.sampler == "groups":
    points = space_lib.order_by_structure(
        space_lib.group_points(sweep.groups.to_dict(), dims)[0], dims, traced_keys)
  else:
    points = (space_lib.oat_points if sweep.sampler == "oat" else space_lib.grid_points)(
        dims, traced_keys)
  if sweep.n_trials is not None:  # the budget counts trials, i.e. points x seeds
    points = points[:max(1, -(-sweep.n_trials // len(sweep.seeds)))]
  return points


def _seeds_for(sweep, dims, points) -> list[list[int]] | None:
  """Each point's seeds where `group_seeds` gives some groups more (None: `seeds` for all)."""
  if sweep.sampler != "groups" or not sweep.group_seeds:
    return None
  table = space_lib.group_points(sweep.groups.to_dict(), dims)[1]
  return space_lib.point_seeds(points, table, list(sweep.seeds), sweep.group_seeds.to_dict())


def open_stage1(sweep, storage, url: str, traced_keys: Sequence[str]) -> Stage:
  dims = stage1_dims(sweep)
  grid_mode = sweep.sampler in spec_lib.GRID_SAMPLERS
  study = study_lib.load_or_create(sweep.name, storage, url,
                                   study_lib.make_sampler(sweep, dims, grid_mode),
                                   study_lib.make_pruner(sweep))
  if grid_mode:
    points = _grid_for(sweep, dims, traced_keys)
    study_lib.enqueue_once(study, url, points, list(sweep.seeds),
                           point_seeds=_seeds_for(sweep, dims, points))
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


def open_stage2(sweep, storage, url: str, stage1: Stage, workdir: str | None = None) -> Stage:
  """The refined grid's study, created and enqueued by the first worker to get here.

  All of it runs under the stage-2 study's claim lock, so workers reaching stage 2 together
  (on any backend) create the study and enqueue the grid once; later ones load the stored grid.
  The groups design drops the points stage 1 already ran and lists the rest as the group
  "stage2" in sweep.json.
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
      grid = space_lib.refined_grid(stage1.dims, best, sweep.stage2.points, sweep.stage2.span,
                                    sweep.stage2.knobs)
      if sweep.sampler == "groups":
        ran = {study_lib.point_key(t.params, 0) for t in stage1.study.get_trials(deepcopy=False)}
        grid = [p for p in grid if study_lib.point_key(p, 0) not in ran]
        if workdir is not None:
          _add_stage2_group(workdir, grid)
    if not grid:  # nothing new to run
      study = study_lib.load_or_create(name, storage, url, study_lib.make_sampler(sweep, [], True))
      study_lib.enqueue_once(study, url, [], list(sweep.seeds), extra_attrs={"grid": []})
      return Stage(name, study, stage1.dims, True, None)
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


def objective_value(summary: dict, objective: str, refs: tuple | None = None) -> float:
  """The value Optuna minimises (`sweep.objectives`); refs = (loss_ref, time_ref), where an
  unset time_ref scores with 1 s (a constant factor: the ranking is the same)."""
  loss_ref, time_ref = refs or (None, None)
  return obj_lib.objective_value(summary, objective, loss_ref,
                                 1.0 if time_ref is None else time_ref)


def _scalars(summary: dict) -> dict:
  out = {}
  keys = [*SUMMARY_KEYS, *sorted(k for k in summary if k.startswith(("metric/", "opt/")))]
  for k in keys:
    v = summary.get(k)
    out[k] = v.item() if hasattr(v, "item") else v
  return out


def tell(stage: Stage, member: Claimed, summary: dict, sweep, run_dir: str, workdir: str,
         index: int, config, refs: tuple | None = None) -> None:
  """Records a trial's summary as user attributes and tells Optuna its state and value."""
  trial = member.trial
  if summary.get("reached_target") and summary.get("step_to_target") == config.train.eval_every:
    add_warning(workdir, f"target {config.train.target_loss} is beaten at the first evaluation "
                f"(step {config.train.eval_every}) by {member.params}: too easy to rank by")
  trial.set_user_attr("summary", _scalars(summary))
  trial.set_user_attr("run", {  # where its files are, and the values its config ran with
      "run_dir": os.path.relpath(run_dir, workdir), "cohort_index": index,
      "knobs": {d.key: config_lib.get_key(config, d.key) for d in stage.dims},
      "vocab_size": spec_lib.vocab_size(config)})
  if summary.get("stop_reason") == "pruned":
    stage.study.tell(trial, state=TrialState.PRUNED)
  else:  # diverged trials are complete with +inf, so samplers learn to avoid the region
    stage.study.tell(trial, objective_value(summary, sweep.objective, refs))


def name_trials(configs, members: Sequence[Claimed], study: str, stage: str) -> None:
  """Each trial's W&B run (`log.wandb`): grouped by the study's name, named
  `<stage study>-t<trial number>`, where the config does not name them itself."""
  for c, m in zip(configs, members):
    if c.log.wandb:
      c.log.wandb_group = c.log.wandb_group or study
      c.log.wandb_name = c.log.wandb_name or f"{stage}-t{m.trial.number:04d}"


def run_cohorts(stage: Stage, claimed: list[Claimed], base, sweep, workdir: str, storage,
                train_fn: Callable, group_fn: Callable, clock: "Clock | None" = None,
                refs: tuple | None = None) -> None:
  configs, ok = [], []
  for m in claimed:
    try:
      configs.append(spec_lib.trial_config(
          base, space_lib.knobs_to_keys(stage.dims, m.params), m.seed, sweep))
      ok.append(m)
    except ValueError as e:  # a config error repeats on retry: fail without retrying
      fail(stage.study, m.trial, f"invalid trial config: {e}", False, 0)
  if clock is not None:
    clock.apply(configs, [m.params for m in ok], during_sweep=True)
  name_trials(configs, ok, sweep.name, stage.name)
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
      tell(stage, m, s, sweep, run_dir, workdir, j, configs[group[j]], refs)


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


# ------------------------------------------------------------------------------------------
# sweep.json: the metadata the report reads (written under a file lock: workers share it).

def _meta_path(workdir: str) -> str:
  return spec_lib.workdir_paths(workdir)["meta"]


def update_meta(workdir: str, fn: Callable[[dict], None]) -> None:
  """Applies `fn` to sweep.json in place, atomically, under its file lock."""
  path = _meta_path(workdir)
  with files.file_lock(path + ".lock"):
    meta = files.read_json(path, {}) if os.path.exists(path) else {}
    fn(meta)
    files.atomic_write_json(path, meta)


def add_warning(workdir: str, text: str) -> None:
  """A warning the run goes on with and the report repeats (each text once)."""
  def add(meta):
    warnings_ = meta.setdefault("warnings", [])
    if text not in warnings_:
      warnings_.append(text)
  update_meta(workdir, add)


def _add_stage2_group(workdir: str, grid: Sequence[dict]) -> None:
  def add(meta):
    meta.setdefault("groups", {})["stage2"] = [
        {space_lib.LABEL: f"S2-{i + 1}", "params": p} for i, p in enumerate(grid)]
  update_meta(workdir, add)


def write_meta(sweep, workdir: str, url: str | None, refs: tuple | None = None,
               clock: "Clock | None" = None) -> None:
  dims = space_lib.dims_from_config(sweep.space)
  base = spec_lib.load_experiment(sweep)
  loss_ref, time_ref = refs or (None, None)
  groups = (space_lib.group_points(sweep.groups.to_dict(), dims)[1]
            if sweep.sampler == "groups" else None)
  meta = {"name": sweep.name, "variants": sweep.variants,
          "studies": [sweep.name] + ([sweep.name + "-stage2"] if sweep.stage2.enabled else []),
          "storage": url, "objective": sweep.objective, "sampler": sweep.sampler,
          "seeds": list(sweep.seeds), "cohort_size": sweep.cohort_size,
          "group_seeds": ({g: list(v) for g, v in sweep.group_seeds.to_dict().items()}
                          if sweep.group_seeds else None),
          "knobs": {d.name: d.key for d in dims},
          "baselines": ({d.name: d.baseline for d in dims} if sweep.sampler == "oat" else None),
          # The pre-set baseline the report compares every configuration with (any sampler).
          "baseline": ({d.name: d.baseline for d in dims}
                       if all(d.baseline is not None for d in dims) else None),
          "groups": groups,
          "base": {"config": sweep.base.config, "variants": sweep.base.variants},
          "loss_ref": loss_ref if loss_ref is not None else (
              sweep.loss_ref if sweep.loss_ref is not None
              else spec_lib.default_loss_ref(base)),
          "time_ref": time_ref,
          "time_ref_source": ("sweep time_ref" if sweep.time_ref is not None else
                              "the baseline's planned time on the calibrated clock"
                              if time_ref is not None else None),
          "target_loss": base.train.target_loss, "max_time_s": base.train.max_time_s,
          "steps": base.train.steps, "eval_every": base.train.eval_every,
          "clock": clock.describe() if clock is not None else {"kind": "measured"},
          "report": {"top_k": sweep.report.top_k, "heatmap_x": sweep.report.heatmap_x,
                     "heatmap_y": sweep.report.heatmap_y,
                     "statistics": sweep.report.statistics}}

  def merge(old):
    kept = {"warnings": old.get("warnings", [])}
    if groups is not None and "stage2" in (old.get("groups") or {}):
      meta["groups"]["stage2"] = old["groups"]["stage2"]
    old.clear()
    old.update(meta, **kept)
  update_meta(workdir, merge)


def check_space(sweep, base) -> None:
  """Builds the configs of the space's corners (the groups design: of every point), so a bad
  value fails before anything is written."""
  if sweep.objective == "time_to_target_s" and base.train.target_loss is None:
    raise ValueError("sweep objective='time_to_target_s' needs train.target_loss in the base "
                     "experiment; set --config.base.overrides.train.target_loss=LOSS")
  if base.train.get("init_from"):
    raise ValueError(f"train.init_from={base.train.init_from!r}: a sweep's trials start from "
                     "their seeds' random weights (cohorts build their own initial state); "
                     "fine-tune from a folder with single runs (python -m jaxgpt.main)")
  dims = space_lib.dims_from_config(sweep.space)
  if sweep.sampler == "groups":
    points, table = space_lib.group_points(sweep.groups.to_dict(), dims)
    label = {json.dumps(sorted(e["params"].items())): f"{g}:{e[space_lib.LABEL]}"
             for g, entries in table.items() for e in entries}
    for p in points:
      try:
        spec_lib.trial_config(base, space_lib.knobs_to_keys(dims, p), sweep.seeds[0], sweep)
      except ValueError as e:
        raise ValueError(f"sweep groups point {label[json.dumps(sorted(p.items()))]}: "
                         f"{e}") from None
    return
  for d in dims:
    for v in (d.values if d.values is not None else (d.low, d.high)):
      spec_lib.trial_config(base, {d.key: int(v) if d.is_int else v}, sweep.seeds[0], sweep)


# ------------------------------------------------------------------------------------------
# The trials' clock.

class Clock:
  """The calibrated clock of a sweep: writes each trial's `train.step_time_s` from
  DIR/calibration.json, calibrating a structure first met during the sweep."""

  def __init__(self, sweep, workdir: str, dims, static_key_fn: Callable,
               measure: calib_lib.MeasureFn | None, traced_keys: Sequence[str]):
    self.sweep, self.workdir, self.dims = sweep, workdir, dims
    self.static_key_fn, self.measure = static_key_fn, measure
    self.static_dims = [d for d in dims if d.key not in traced_keys]
    self.table = calib_lib.load(workdir)

  def label(self, params: dict) -> str:
    return ", ".join(f"{d.name}={params[d.name]}" for d in self.static_dims) or "all trials"

  def structures(self, configs, params) -> dict:
    out = {}
    for c, p in zip(configs, params):
      out.setdefault(calib_lib.structure_id(self.static_key_fn(c)), (self.label(p), c))
    return out

  def calibrate(self, configs, params, during_sweep: bool, progress: bool = False) -> None:
    cal = self.sweep.calibration
    self.table = calib_lib.calibrate(self.workdir, self.structures(configs, params),
                                     steps=cal.steps, repeats=cal.repeats, measure=self.measure,
                                     during_sweep=during_sweep, progress=progress)

  def apply(self, configs, params, during_sweep: bool) -> None:
    """Sets train.step_time_s of each config (calibrating missing structures first)."""
    sids = [calib_lib.structure_id(self.static_key_fn(c)) for c in configs]
    if any(sid not in self.table["structures"] for sid in sids):
      self.calibrate(configs, params, during_sweep)
    for c, sid in zip(configs, sids):
      c.train.step_time_s = calib_lib.step_time(self.table, sid)

  def describe(self) -> dict:
    t = self.table
    return {"kind": "calibrated", "repeats": t.get("repeats", self.sweep.calibration.repeats),
            "steps": t.get("steps", self.sweep.calibration.steps),
            "structures": list(t["structures"].values())}


def _stage1_configs(sweep, base, dims, traced_keys) -> tuple[list, list]:
  points = _grid_for(sweep, dims, traced_keys)
  return [spec_lib.trial_config(base, space_lib.knobs_to_keys(dims, p), sweep.seeds[0], sweep)
          for p in points], points


def resolve_refs(sweep, base, dims, clock: Clock | None) -> tuple[float, float | None]:
  """(loss_ref, time_ref): the sweep's, else ln(vocab) and, on a calibrated clock, the
  baseline's planned time (its step time x the steps it may take under the cap)."""
  loss_ref = sweep.loss_ref if sweep.loss_ref is not None else spec_lib.default_loss_ref(base)
  if sweep.time_ref is not None:
    return loss_ref, float(sweep.time_ref)
  baseline = {d.name: d.baseline for d in dims}
  if clock is None or any(v is None for v in baseline.values()):
    return loss_ref, None
  config = spec_lib.trial_config(base, space_lib.knobs_to_keys(dims, baseline), sweep.seeds[0],
                                 sweep)
  clock.apply([config], [baseline], during_sweep=False)
  st = config.train.step_time_s
  return loss_ref, calib_lib.planned_steps(config, st) * st


def plan(sweep, workdir: str, *, traced_keys: Sequence[str] | None = None,
         static_key_fn: Callable | None = None, measure: calib_lib.MeasureFn | None = None,
         progress: bool = True, pilot: str | None = None) -> str:
  """The calibration pass over stage 1's structures (what is missing from
  DIR/calibration.json), then the plan: runs x measured time per run. Trains nothing.
  `pilot`: a report's trials.json[:metric] (default metric: the one the report compares):
  its pooled seed spread, and the smallest difference the sweep's seeds can resolve."""
  spec_lib.validate_sweep(sweep)
  base = spec_lib.load_experiment(sweep)
  check_space(sweep, base)
  pilot_text = pilot_line(pilot, sweep) if pilot else None  # a bad pilot fails before timing
  os.makedirs(workdir, exist_ok=True)
  traced_keys = _default_traced_keys() if traced_keys is None else traced_keys
  dims = stage1_dims(sweep)
  clock = Clock(sweep, workdir, dims, static_key_fn or _default_static_key(), measure,
                traced_keys)
  configs, points = _stage1_configs(sweep, base, dims, traced_keys)
  clock.calibrate(configs, points, during_sweep=False, progress=progress)
  runs: dict = {}
  seeds = _seeds_for(sweep, dims, points) or [list(sweep.seeds)] * len(points)
  for c, p, ss in zip(configs, points, seeds):
    sid = calib_lib.structure_id(clock.static_key_fn(c))
    label, cfg, n = runs.get(sid, (clock.label(p), c, 0))
    runs[sid] = (label, cfg, n + len(ss))
  extra = ""
  if sweep.stage2.enabled:
    n_float = sum(1 for d in dims if d.numeric and not d.integral
                  and (sweep.stage2.knobs is None or d.name in sweep.stage2.knobs))
    extra = (f"; stage 2: up to {sweep.stage2.top_k * (sweep.stage2.points + 1) ** n_float} "
             f"configurations x {len(sweep.seeds)} seeds around the stage-1 best")
  text = calib_lib.format_plan(calib_lib.plan_rows(clock.table, runs), extra)
  return text + ("\n" + pilot_text if pilot_text else "")


def pilot_line(pilot: str, sweep) -> str:
  """What a pilot's seed spread says about this sweep's seeds (`plan`)."""
  from jaxgpt import stats  # numpy and scipy only: the pilot's statistics

  path, _, metric = pilot.partition(".json")
  path += ".json" if _ else ""
  objective = sweep.objective
  metric = metric[1:] if metric.startswith(":") else (
      objective if objective in ("best_val_loss", "val_bpb", "val_bpb_roundtrip")
      else "final_val_loss")
  sigma, dof = stats.pooled_std(stats.pilot_groups(path, metric))
  n = len(sweep.seeds)
  d = stats.resolvable_difference(sigma, n)
  return (f"pilot {path}: {metric} spreads by {sigma:.4g} over seeds (pooled, {dof} degrees of "
          f"freedom); with {n} seeds a paired difference below {d:.4g} is not resolvable "
          f"(t_0.975,{n - 1} x sqrt(2) sigma / sqrt({n}), before Holm over a table's "
          "comparisons)")


def run_worker(sweep, workdir: str, *, storage: str | None = None,
               train_fn: Callable | None = None, group_fn: Callable | None = None,
               traced_keys: Sequence[str] | None = None, max_cohorts: int | None = None,
               progress: bool = True, poll_s: float = 2.0,
               static_key_fn: Callable | None = None,
               measure: calib_lib.MeasureFn | None = None) -> dict:
  """Runs trials of `sweep` until the study (both stages) is finished; returns the counts.

  `train_fn`, `group_fn`, `traced_keys`, `static_key_fn` and `measure` default to
  `cohort.train_cohort`, `cohort.group_static`, `cohort.TRACED_KEYS`, `cohort.static_key` and
  `cohort.solo_step_times` (tests inject cheap ones). Bad input (the sweep config, a group, a
  point's config values) raises before anything is written.
  """
  _quiet()
  spec_lib.validate_sweep(sweep)
  base = spec_lib.load_experiment(sweep)
  check_space(sweep, base)
  os.makedirs(workdir, exist_ok=True)
  url = study_lib.storage_url(workdir, storage)
  rdb = study_lib.open_storage(url, sweep)  # a bad URL or missing driver fails before training
  train_fn = train_fn or _default_train_fn()
  group_fn = group_fn or _default_group_fn()
  traced_keys = _default_traced_keys() if traced_keys is None else traced_keys
  dims = stage1_dims(sweep)
  clock = None
  if sweep.clock == "calibrated":
    clock = Clock(sweep, workdir, dims, static_key_fn or _default_static_key(), measure,
                  traced_keys)
    if not os.path.exists(calib_lib.path(workdir)):  # no --plan ran: the pass happens here
      clock.calibrate(*_stage1_configs(sweep, base, dims, traced_keys), during_sweep=False,
                      progress=progress)
  refs = resolve_refs(sweep, base, dims, clock)
  write_meta(sweep, workdir, url if storage else None, refs, clock)
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
        if stage is stage1:
          _warn_unreached(stage1, base, workdir)
        if sweep.stage2.enabled and stage is stage1:
          stage = open_stage2(sweep, rdb, url, stage1, workdir)
          continue
        break
      run_cohorts(stage, claimed, base, sweep, workdir, rdb, train_fn, group_fn, clock, refs)
      cohorts += 1
    if clock is not None:  # structures calibrated during the sweep
      update_meta(workdir, lambda m: m.update(clock=clock.describe()))
    return bar.update(stage)
  finally:
    bar.close()


def _warn_unreached(stage: Stage, base, workdir: str) -> None:
  target = base.train.target_loss
  if target is None:
    return
  done = stage.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
  if done and not any(t.user_attrs.get("summary", {}).get("reached_target") for t in done):
    add_warning(workdir, f"no trial of {stage.name} reached the target {target}: time to "
                "target ranks nothing; lower-loss targets need a pilot")
