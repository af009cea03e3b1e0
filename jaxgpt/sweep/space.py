"""Search spaces: knobs as Optuna distributions, grids, and the refined stage-2 grid.

A knob has a short name (the Optuna parameter and the report's column) and a dotted config
key. It is either a list of `values` (categorical; the grid takes them all) or a range
`low..high` (float, `log` spaced, or `int`) that random and TPE sample and the grid cuts into
`num` points. Stage 2 refines around the best configurations: numeric knobs get `points` values
between the best value's neighbours (a list) or within a factor `span` of it (a range), clipped
to the stage-1 bounds; integer and categorical knobs keep the values the best configurations
used.

One factor at a time (sampler "oat"): every knob also names a `baseline` among its values; the
points are the baseline configuration with one knob moved to each of its values, the others at
their baselines (the baseline itself once), as in sensitivity studies that vary LR, momentum and
Newton-Schulz steps separately. With any sampler, when every knob names a `baseline`, that point
is the pre-set baseline the report compares every configuration with (`jaxgpt.stats`); without
one the report gives no verdicts. `tied` = ((dotted key, factor), ...) sets further keys to
factor x the knob's value (e.g. an Adam learning rate kept at 0.1 x the Muon learning rate).

Named groups (sampler "groups"), as the time-to-target study ran them: every knob names its
`baseline` (its `values` may be left out), and `groups` maps a group name to its points, each a
dict of knob overrides applied to the baseline (an optional "label" names it, e.g. "A1_ne"), or
`{"grid": {knob: [values], ...}}`, a small grid over a few knobs. A point that several groups
share (the baseline, identical knobs under two names) is one point: trained once per seed and
listed in each group. Explicit hand-picked points are simply a group of override dicts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np
import optuna

from jaxgpt import checks
from jaxgpt.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Dim:
  name: str
  key: str
  values: tuple | None = None  # categorical / grid values
  low: float | None = None
  high: float | None = None
  log: bool = False
  is_int: bool = False
  baseline: Any = None  # the value the other knobs' one-factor-at-a-time axes hold it at
  tied: tuple[tuple[str, float], ...] = ()  # (dotted key, factor): key = factor x value

  @property
  def numeric(self) -> bool:
    vals = self.values if self.values is not None else (self.low, self.high)
    return all(map(checks.is_number, vals))

  @property
  def integral(self) -> bool:
    vals = self.values if self.values is not None else (self.low, self.high)
    return self.is_int or all(map(checks.is_integer, vals))

  def distribution(self) -> optuna.distributions.BaseDistribution:
    if self.values is not None and (self.low is None):
      return optuna.distributions.CategoricalDistribution(list(self.values))
    if self.is_int:
      return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
    return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)


def _round(v: float) -> float:
  return float(f"{v:.6g}")


def dims_from_config(space) -> list[Dim]:
  """ConfigDict `space` -> knobs, in the config's order; errors name the knob."""
  dims = []
  for name, spec in space.items():
    spec = dict(spec)
    key = spec.get("key")
    if not isinstance(key, str) or "." not in key:
      raise ConfigError(f"sweep space.{name}.key={key!r} must be a dotted config key, e.g. "
                        "'optimizer.lr'")
    values, low, high = spec.get("values"), spec.get("low"), spec.get("high")
    log, is_int, num = bool(spec.get("log", False)), bool(spec.get("int", False)), spec.get("num")
    extra = dict(baseline=spec.get("baseline"), tied=_tied(name, spec.get("tied") or ()))
    if values is None and low is None and high is None and extra["baseline"] is not None:
      values = (extra["baseline"],)  # a knob the groups design moves (values come from groups)
    if values is not None:
      values = tuple(values)
      if not values or len(set(values)) != len(values):
        raise ConfigError(f"sweep space.{name}.values={list(values)!r} must be non-empty and "
                          "distinct")
      if extra["baseline"] is not None and extra["baseline"] not in values:
        raise ConfigError(f"sweep space.{name}.baseline={extra['baseline']!r} must be one of its "
                          f"values {list(values)!r}")
      dims.append(Dim(name, key, values, **extra))
      continue
    if low is None or high is None or not low < high:
      raise ConfigError(f"sweep space.{name}: give `values` or a range low < high "
                        f"(got low={low!r}, high={high!r})")
    if log and low <= 0:
      raise ConfigError(f"sweep space.{name}.low={low!r} must be > 0 for a log range")
    grid = None
    if num is not None:
      checks.integer(f"sweep space.{name}.num", num, 2)
      pts = np.geomspace(low, high, num) if log else np.linspace(low, high, num)
      grid = tuple(int(round(p)) for p in pts) if is_int else tuple(_round(p) for p in pts)
    dims.append(Dim(name, key, grid, float(low), float(high), log, is_int, **extra))
  return dims


def _tied(name: str, tied: Any) -> tuple[tuple[str, float], ...]:
  """(dotted key, factor) pairs (a ConfigDict cannot hold dotted keys, so not a dict)."""
  out = []
  for pair in tied:
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    key, factor = pair if ok else (None, None)
    if not (ok and isinstance(key, str) and "." in key and checks.is_number(factor)):
      raise ConfigError(f"sweep space.{name}.tied={tied!r} must be (dotted config key, factor) "
                        "pairs, e.g. (('optimizer.embed_lr', 0.1),)")
    out.append((key, float(factor)))
  return tuple(out)


def suggest(trial: optuna.Trial, dims: Sequence[Dim]) -> dict[str, Any]:
  """Each knob's value for `trial` (fixed by an enqueued grid point, else sampled)."""
  out = {}
  for d in dims:
    dist = d.distribution()
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
      out[d.name] = trial.suggest_categorical(d.name, dist.choices)
    elif isinstance(dist, optuna.distributions.IntDistribution):
      out[d.name] = trial.suggest_int(d.name, dist.low, dist.high, log=dist.log)
    else:
      out[d.name] = trial.suggest_float(d.name, dist.low, dist.high, log=dist.log)
  return out


def knobs_to_keys(dims: Sequence[Dim], params: Mapping[str, Any]) -> dict[str, Any]:
  """{short name: value} -> {dotted config key: value}, tied keys included."""
  out = {}
  for d in dims:
    if d.name in params:
      out[d.key] = params[d.name]
      out.update({key: factor * params[d.name] for key, factor in d.tied})
  return out


def oat_points(dims: Sequence[Dim], traced_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
  """One factor at a time: the baseline point with each knob moved through its values, each
  point once (knobs in config order, values in theirs). Points are then ordered so that knobs
  whose key is not traced vary slowest (one cohort per static structure, as for the grid)."""
  for d in dims:
    if d.values is None or d.baseline is None:
      raise ConfigError(f"sweep space.{d.name} needs `values` and a `baseline` for the oat "
                        "sampler")
  base = {d.name: d.baseline for d in dims}
  points: list[dict[str, Any]] = []
  for d in dims:
    for v in d.values:
      p = {**base, d.name: v}
      if p not in points:
        points.append(p)
  static = [d for d in dims if d.key not in traced_keys]
  rank = {d.name: {v: i for i, v in enumerate(d.values)} for d in static}
  return sorted(points, key=lambda p: tuple(rank[d.name][p[d.name]] for d in static))


def oat_axis(dims: Sequence[Dim], knob: str, params: Mapping[str, Any]) -> bool:
  """Whether a point lies on `knob`'s one-factor-at-a-time axis (every other knob at its
  baseline)."""
  return all(params.get(d.name) == d.baseline for d in dims if d.name != knob)


def grid_points(dims: Sequence[Dim], traced_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
  """The full grid; knobs whose key is not traced vary slowest, so consecutive points (the K
  trials a worker claims) share static structure and pack into one cohort."""
  for d in dims:
    if d.values is None:
      raise ConfigError(f"sweep space.{d.name} has no grid values (give `values` or `num`)")
  order = sorted(dims, key=lambda d: d.key in traced_keys)
  return [dict(zip([d.name for d in order], combo))
          for combo in itertools.product(*[d.values for d in order])]


def _bounds(d: Dim) -> tuple[float, float]:
  if d.low is not None:
    return d.low, d.high
  return min(d.values), max(d.values)


def _mid(a: float, b: float, log: bool) -> float:
  return math.sqrt(a * b) if log and a > 0 and b > 0 else 0.5 * (a + b)


def refine_values(d: Dim, best: Any, points: int, span: float) -> tuple:
  """`points` values around `best` for a numeric float knob (see the module docstring)."""
  log = d.log or (d.values is not None and min(d.values) > 0 and
                  max(d.values) / min(d.values) >= 10)
  lo_b, hi_b = _bounds(d)
  if d.values is not None and d.low is None:
    vals = sorted(d.values)
    i = vals.index(best)
    lo = _mid(vals[i - 1], best, log) if i > 0 else best
    hi = _mid(best, vals[i + 1], log) if i + 1 < len(vals) else best
  elif log:
    lo, hi = best / span, best * span
  else:
    half = (hi_b - lo_b) / (2 * span)
    lo, hi = best - half, best + half
  lo, hi = max(lo, lo_b), min(hi, hi_b)
  if hi <= lo:
    return (best,)
  pts = np.geomspace(lo, hi, points) if log else np.linspace(lo, hi, points)
  out = sorted({_round(p) for p in pts} | {_round(best)})
  return tuple(out)


def refined_grid(dims: Sequence[Dim], best_configs: Sequence[Mapping[str, Any]], points: int,
                 span: float, knobs: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """Stage 2: the union over the best configurations of a local grid around each (refining
  `knobs`, default every float knob)."""
  seen, out = set(), []
  for best in best_configs:
    axes = []
    for d in dims:
      v = best[d.name]
      if d.numeric and not d.integral and (knobs is None or d.name in knobs):
        axes.append(refine_values(d, v, points, span))
      else:  # integer and categorical knobs: the values the best configurations used
        axes.append(tuple(dict.fromkeys(b[d.name] for b in best_configs)))
    for combo in itertools.product(*axes):
      key = tuple(combo)
      if key not in seen:
        seen.add(key)
        out.append(dict(zip([d.name for d in dims], combo)))
  return out


def stage2_dims(dims: Sequence[Dim], grid: Sequence[Mapping[str, Any]]) -> list[Dim]:
  """Knobs whose values are exactly those of the refined grid (categorical for Optuna)."""
  return [Dim(d.name, d.key, tuple(dict.fromkeys(p[d.name] for p in grid))) for d in dims]


# ------------------------------------------------------------------------------------------
# Named groups.

LABEL = "label"


def _sort_key(v: Any):
  return (isinstance(v, str), v if not isinstance(v, str) else 0, str(v))


def _group_overrides(name: str, entries: Any, knobs: Sequence[str]) -> list[tuple[str, dict]]:
  """One group's (label, overrides) list, grids expanded; errors name the group and entry."""
  if isinstance(entries, Mapping) or not isinstance(entries, (list, tuple)) or not entries:
    raise ConfigError(f"sweep groups.{name}={entries!r} must be a non-empty list of points "
                      "(override dicts, or {'grid': {knob: [values]}})")
  out = []
  for i, entry in enumerate(entries):
    where = f"sweep groups.{name}[{i}]"
    entry = dict(entry) if isinstance(entry, Mapping) else entry
    if not isinstance(entry, dict):
      raise ConfigError(f"{where}={entry!r} must be a dict of knob overrides")
    if "grid" in entry:
      grid = dict(entry.pop("grid"))
      if entry or not grid or not all(isinstance(v, (list, tuple)) and v for v in grid.values()):
        raise ConfigError(f"{where}: a grid point is {{'grid': {{knob: [values], ...}}}} with "
                          f"non-empty value lists and nothing beside it (got {entry or grid!r})")
      bad = [k for k in grid if k not in knobs]
      if bad:
        raise ConfigError(f"{where} names unknown knob {bad[0]!r}; knobs: {', '.join(knobs)}")
      for combo in itertools.product(*grid.values()):
        o = dict(zip(grid, combo))
        out.append((f"{name}:" + ",".join(f"{k}={v}" for k, v in o.items()), o))
      continue
    label = entry.pop(LABEL, None)
    bad = [k for k in entry if k not in knobs]
    if bad:
      raise ConfigError(f"{where} names unknown knob {bad[0]!r}; knobs: {', '.join(knobs)}")
    if label is not None and not isinstance(label, str):
      raise ConfigError(f"{where}.label={label!r} must be a string")
    out.append((label or f"{name}{i + 1}", entry))
  return out


def group_points(groups: Mapping[str, Any], dims: Sequence[Dim]
                 ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
  """(every distinct point once, in first-seen order; {group: [{"label", "params"}, ...]}).

  A point is the baseline with a group entry's overrides; points with equal knobs are one."""
  if not groups:
    raise ConfigError("sweep groups is empty: name at least one group of points")
  missing = [d.name for d in dims if d.baseline is None]
  if missing:
    raise ConfigError(f"sweep space.{missing[0]}.baseline is unset: the groups design applies "
                      "each group's overrides to the baseline, so every knob needs one")
  knobs = [d.name for d in dims]
  base = {d.name: d.baseline for d in dims}
  points: list[dict[str, Any]] = []
  table: dict[str, list[dict[str, Any]]] = {}
  for name, entries in groups.items():
    table[name] = []
    for label, overrides in _group_overrides(name, entries, knobs):
      p = {**base, **overrides}
      if p not in points:
        points.append(p)
      table[name].append({LABEL: label, "params": p})
  return points, table


def point_seeds(points: Sequence[Mapping[str, Any]], table: Mapping[str, Sequence[Mapping]],
                seeds: Sequence[int], group_seeds: Mapping[str, Sequence[int]]
                ) -> list[list[int]]:
  """Each point's seeds: `seeds`, then the seeds of every group listing it in `group_seeds`
  (more seeds where 3 do not resolve a comparison: the group's points and the baseline they are
  compared with get them), each once, in that order."""
  unknown = [g for g in group_seeds if g not in table]
  if unknown:
    raise ConfigError(f"sweep group_seeds.{unknown[0]} names no group (the groups are "
                      f"{list(table)})")
  out = []
  for p in points:
    extra = [s for g, ss in group_seeds.items()
             if any(e["params"] == dict(p) for e in table[g]) for s in ss]
    out.append([int(s) for s in dict.fromkeys([*seeds, *extra])])
  return out


def group_dims(dims: Sequence[Dim], points: Sequence[Mapping[str, Any]]) -> list[Dim]:
  """The knobs as categorical dimensions over the values the points use (Optuna's params)."""
  out = []
  for d in dims:
    used = dict.fromkeys(p[d.name] for p in points)
    out.append(dataclasses.replace(d, values=tuple(sorted(used, key=_sort_key)), low=None,
                                   high=None, log=False))
  return out


def order_by_structure(points: Sequence[Mapping[str, Any]], dims: Sequence[Dim],
                       traced_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
  """Points with the knobs whose key is not traced varying slowest (stable otherwise), so the
  K trials a worker claims share static structure and pack into one cohort."""
  static = [d for d in dims if d.key not in traced_keys]
  return sorted((dict(p) for p in points),
                key=lambda p: tuple(_sort_key(p[d.name]) for d in static))
