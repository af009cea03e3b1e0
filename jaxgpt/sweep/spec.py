"""Sweep specs: the sweep config file, its validation, and the trial configs it expands to.

A sweep config (`configs/sweeps/NAME.py`, `get_config(variants)`) starts from `base_sweep()`
and names a base experiment (a `configs/*.py` file, its variants and nested overrides), a
search space (short name -> dotted config key and values or a range), a sampler (or the named
groups of the groups design), a trial budget, the trials' clock (measured, or calibrated:
`jaxgpt.sweep.calibrate`), the cohort size K, seeds, pruning, an optional refined second stage,
an LR-scaling rule for batch size, and report settings. A trial's config is the base experiment
with the trial's knobs, its seed and the scaled learning rates written in, then validated like
any run.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Mapping

from ml_collections import config_dict

from jaxgpt import checks
from jaxgpt import config as config_lib
from jaxgpt.errors import ConfigError
from jaxgpt.sweep.objectives import OBJECTIVES

placeholder = config_dict.placeholder

# oat: one factor at a time; groups: named groups of points from one baseline (sweep/space.py)
SAMPLERS = ("grid", "oat", "groups", "random", "tpe")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
GRID_SAMPLERS = ("grid", "oat", "groups")  # fixed point lists, enqueued whole
CLOCKS = ("measured", "calibrated")
LR_RULES = ("none", "linear", "sqrt")
LR_KEYS = ("optimizer.lr", "optimizer.embed_lr", "optimizer.head_lr", "optimizer.scalar_lr")


def overrides_of(sweep) -> dict:
  """The sweep's `base.overrides` as a plain dict (a deep copy), for a variant that extends
  it: `c.base.overrides = {**overrides_of(c), "model": {...}}`."""
  o = sweep.base.overrides
  return copy.deepcopy(o.to_dict() if hasattr(o, "to_dict") else dict(o))


def base_sweep() -> config_dict.ConfigDict:
  """Defaults shared by every sweep config; sweep files override them."""
  c = config_dict.ConfigDict()
  c.name = "sweep"  # the Optuna study name (stage 2 appends "-stage2")
  c.variants = ""
  # The experiment every trial starts from: configs file, its variants, nested overrides.
  c.base = config_dict.ConfigDict(dict(config="configs/gpt.py", variants="",
                                       overrides=config_dict.ConfigDict()))
  # name -> {key: dotted config key, values: [...]} (grid or categorical) or
  # {key, low, high, log, num} (a range: random/TPE sample it; grid uses `num` points).
  c.space = config_dict.ConfigDict()
  # sampler "groups": group name -> points (knob override dicts, {"grid": {knob: [values]}}).
  c.groups = config_dict.ConfigDict()
  # ... and group name -> more seeds for that group's points (the baseline included where the
  # group lists it): 5 seeds where 3 do not resolve a comparison, without rerunning the rest.
  c.group_seeds = config_dict.ConfigDict()
  c.sampler = "grid"
  c.sampler_seed = 0
  c.n_trials = placeholder(int)  # trials (configurations x seeds); None = the whole grid
  c.cohort_size = 8  # K trials asked at once and trained as vmapped cohorts
  c.seeds = (0,)  # every configuration runs once per seed (train.seed)
  c.objective = "final_val_loss"  # sweep/objectives.py; unreached targets count as +inf time
  # The trials' clock: "measured" (a cohort's solo step time, timed at compile) or
  # "calibrated" (`repeats` timings of `steps` steps per static structure, one worker and
  # nothing else running, stored in DIR/calibration.json; every trial's train.step_time_s).
  c.clock = "measured"
  c.calibration = config_dict.ConfigDict(dict(repeats=3, steps=10))
  c.pruner = config_dict.ConfigDict(dict(
      name="none", startup_trials=4, warmup_steps=0, percentile=50.0, min_resource=1,
      reduction_factor=3))
  # LR scaling with batch size: lr * (batch / ref_batch)^p, p = 0 | 1 | 1/2.
  c.lr_scaling = config_dict.ConfigDict(dict(rule="none", ref_batch=32,
                                             apply_to=LR_KEYS))
  # Two-stage mode: after stage 1, a grid of `points` values per numeric knob spanning a
  # factor `span` around the best `top_k` configurations (categorical knobs: their values).
  # `knobs`: the numeric knobs stage 2 refines (None: every float knob); the others keep the
  # best configurations' values.
  c.stage2 = config_dict.ConfigDict(dict(enabled=False, top_k=2, points=3, span=2.0,
                                         knobs=placeholder(tuple)))
  c.loss_ref = placeholder(float)  # efficiency score reference; None = ln(vocab size)
  c.time_ref = placeholder(float)  # ... and time reference; None = the baseline's planned time
  # statistics: compare every configuration with the pre-set baseline (needs 2+ seeds; a
  # verdict needs 3).
  c.report = config_dict.ConfigDict(dict(top_k=10, heatmap_x=placeholder(str),
                                         heatmap_y=placeholder(str), statistics=True))
  c.heartbeat_s = 30  # a running trial records a heartbeat this often ...
  c.grace_s = 120  # ... and is failed (and retried) when none came for this long
  c.max_retry = 1  # a failed trial is re-queued at most this many times
  return c


# ------------------------------------------------------------------------------------------
# Loading config files (jaxgpt.config) and dotted keys.



def load_sweep(arg: str) -> config_dict.ConfigDict:
  """`configs/sweeps/NAME.py[:VARIANTS]` -> validated sweep config."""
  path, _, variants = arg.partition(":")
  sweep = config_lib.load_file(path, variants)
  validate_sweep(sweep)
  return sweep


# ------------------------------------------------------------------------------------------
# Validation.

def _fail(key: str, value: Any, rule: str):
  raise ConfigError(f"sweep {key}={value!r} {rule}")


def validate_sweep(sweep) -> None:
  """Checks a sweep config; errors name the key, the bad value and what is allowed."""
  checks.one_of("sweep sampler", sweep.sampler, SAMPLERS)
  checks.one_of("sweep pruner.name", sweep.pruner.name, PRUNERS)
  checks.one_of("sweep objective", sweep.objective, OBJECTIVES)
  checks.one_of("sweep lr_scaling.rule", sweep.lr_scaling.rule, LR_RULES)
  checks.one_of("sweep clock", sweep.clock, CLOCKS)
  checks.integer("sweep calibration.repeats", sweep.calibration.repeats, 3)
  checks.integer("sweep calibration.steps", sweep.calibration.steps, 1)
  for key in ("loss_ref", "time_ref"):
    checks.number(f"sweep {key}", sweep[key], allow_none=True)
  if sweep.time_ref is not None:
    checks.positive("sweep time_ref", sweep.time_ref)
  checks.integer("sweep cohort_size", sweep.cohort_size, 1)
  seeds = list(sweep.seeds)
  if not seeds or len(set(seeds)) != len(seeds) or not all(map(checks.is_integer, seeds)):
    _fail("seeds", seeds, "must be a non-empty list of distinct integers")
  checks.integer("sweep n_trials", sweep.n_trials, 1, allow_none=True)  # None: the whole grid
  if sweep.sampler not in GRID_SAMPLERS and sweep.n_trials is None:
    _fail("n_trials", None, f"must be set for sampler {sweep.sampler!r} (only "
          f"{' and '.join(GRID_SAMPLERS)} may omit it)")
  for key in ("heartbeat_s", "grace_s"):  # seconds
    checks.integer(f"sweep {key}", sweep[key], 1)
  if sweep.grace_s <= sweep.heartbeat_s:
    _fail("grace_s", sweep.grace_s, f"must exceed heartbeat_s={sweep.heartbeat_s}")
  checks.integer("sweep max_retry", sweep.max_retry, 0)
  checks.positive("sweep lr_scaling.ref_batch", sweep.lr_scaling.ref_batch)
  if checks.boolean("sweep stage2.enabled", sweep.stage2.enabled):
    checks.integer("sweep stage2.points", sweep.stage2.points, 2)
    checks.number("sweep stage2.span", sweep.stage2.span, 1, low_open=True)  # a factor
    checks.integer("sweep stage2.top_k", sweep.stage2.top_k, 1)
    names = [str(n) for n in sweep.space]
    for knob in sweep.stage2.knobs or ():
      if knob not in names:
        _fail("stage2.knobs", knob, f"must be one of the space's knobs {names}")
  if not sweep.space:
    _fail("space", {}, "must name at least one knob")
  from jaxgpt.sweep import space as space_lib  # validates each dimension
  dims = space_lib.dims_from_config(sweep.space)
  if sweep.sampler in GRID_SAMPLERS:
    for d in dims:
      if d.values is None:
        _fail(f"space.{d.name}", d.key, f"needs `values` or `num` for the {sweep.sampler} "
              "sampler")
  if sweep.sampler == "groups":
    space_lib.group_points(sweep.groups.to_dict(), dims)  # errors name the group and entry
    if checks.boolean("sweep report.statistics", sweep.report.statistics) and len(seeds) < 2:
      _fail("seeds", seeds, "has one seed, but report.statistics compares every configuration "
            "with the baseline over seeds (a verdict needs 3); give seeds=(0, 1, 2), or set "
            "report.statistics=False for a pilot")
    for g, extra in sweep.group_seeds.items():
      if g not in sweep.groups:
        _fail(f"group_seeds.{g}", extra, f"names no group (the groups are {list(sweep.groups)})")
      if (not isinstance(extra, (list, tuple)) or not extra or len(set(extra)) != len(extra)
          or not all(map(checks.is_integer, extra))):
        _fail(f"group_seeds.{g}", extra, "must be a non-empty list of distinct integers")
  elif sweep.groups or sweep.group_seeds:
    key = "groups" if sweep.groups else "group_seeds"
    _fail(key, list(sweep[key]), f"is read only by the groups sampler, not {sweep.sampler!r}")
  if sweep.sampler == "oat":
    for d in dims:
      if d.baseline is None:
        _fail(f"space.{d.name}.baseline", None, "must name one of the knob's values (the "
              "oat sampler holds every other axis at the baselines)")
  for axis in ("heatmap_x", "heatmap_y"):
    name = sweep.report[axis]
    if name is not None and name not in {d.name for d in dims}:
      _fail(f"report.{axis}", name, f"must be one of the space's knobs {[d.name for d in dims]}")


# ------------------------------------------------------------------------------------------
# Trial configs.

def load_experiment(sweep) -> config_dict.ConfigDict:
  """The base experiment config with the sweep's overrides written in."""
  config = config_lib.load_file(sweep.base.config, sweep.base.variants)
  config_lib.apply_overrides(config, sweep.base.overrides.to_dict()
                  if hasattr(sweep.base.overrides, "to_dict") else sweep.base.overrides)
  return config


def lr_scale(rule: str, batch: int, ref_batch: int) -> float:
  """The learning-rate multiplier for `batch` under `rule` (none | linear | sqrt)."""
  ratio = batch / ref_batch
  return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def _python(v: Any) -> Any:
  """numpy scalars -> Python scalars (ConfigDict is type-safe)."""
  return v.item() if hasattr(v, "item") else v


def trial_config(base, knobs: Mapping[str, Any], seed: int, sweep) -> config_dict.ConfigDict:
  """`base` with the knobs (dotted key -> value), the seed and LR scaling applied; validated.

  Learning rates in `knobs` are at the reference batch; the config holds the scaled ones.
  """
  config = copy.deepcopy(base)
  for key, value in knobs.items():
    config_lib.set_key(config, key, _python(value))
  config.train.seed = int(seed)
  scale = lr_scale(sweep.lr_scaling.rule, config.train.batch_size, sweep.lr_scaling.ref_batch)
  if scale != 1.0:
    for key in sweep.lr_scaling.apply_to:
      value = config_lib.get_key(config, key)
      if value is not None:
        config_lib.set_key(config, key, float(value) * scale)
  config_lib.validate(config)
  return config


def vocab_size(config) -> int:
  """The model's (padded) vocabulary size, as the trainer resolves it."""
  if config.model.vocab_size is not None:
    return int(config.model.vocab_size)
  n = 256 if config.data.tokenizer == "byte" else int(config.data.bpe_vocab_size)
  return -(-n // 64) * 64


def default_loss_ref(config) -> float:
  return math.log(vocab_size(config))


def workdir_paths(workdir: str) -> dict[str, str]:
  return {"db": os.path.join(workdir, "study.db"), "runs": os.path.join(workdir, "runs"),
          "meta": os.path.join(workdir, "sweep.json")}
