"""Int6 quantization-aware training (QAT) with a straight-through estimator, and the plan of
which leaves the artifact quantizes (docs/formulas.md "Int6 QAT").

The plan (`reduce_axes`, `int8_axes`, `int6_axes`) is the artifact's (`jaxgpt/export`): a leaf
is quantized when one layer's matrix has at least 2 axes and more than
`export.fp16_max_numel` elements, with one scale per output channel over its fan_in axes. The
int6 artifact stores the Muon matrices (attention and MLP kernels) in [-31, 31] and keeps the
other quantized leaves (embedding table, untied LM head, routers) int8, as parameter-golf's
mixed export does; QAT fake-quantizes exactly the leaves the int6 artifact stores as int6.

Fake quantization of one leaf `w` (per output channel, over its reduce axes):
  clip  = the `clip_quantile` quantile of |w| (linear interpolation, numpy's default;
          1.0: max|w|)
  scale = max(clip / 31, floor) (1 where that is 0: an all-zero channel stays 0)
  fq(w) = clip(round(w / scale), -31, 31) * scale
and the forward uses `w + stop_gradient(fq(w) - w)`: the value is fq(w), the gradient passes
straight through (identity).

`model.qat` picks the form (both published in parameter-golf's records):
  none           no QAT
  int6_quantile  always on; clip at `model.qat_clip_quantile` (0.9999984), no floor
  int6_late      on once the LR schedule's multiplier falls below `model.qat_threshold` (0.15),
                 clip at max|w|, scale floor `model.qat_scale_floor` (None: 1/31, the
                 published clamp_min). The switch is a `lax.cond` on the traced multiplier,
                 so the jitted step never recompiles; off, the forward uses the parameters
                 themselves (bitwise the no-QAT step).
The train step logs `metric/qat_on` (0 or 1) and `metric/qat_floor_share` (the share of
quantized output channels whose scale the floor sets, clip / 31 < floor).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgpt import checks
from jaxgpt.errors import ConfigError
from jaxgpt.keypath import path_str
from jaxgpt.optim import partition, schedules

FORMS = ("none", "int6_quantile", "int6_late")  # model.qat
INT6_MAX = 31  # int6 levels: [-31, 31] (symmetric; stored in int8 containers)
LATE_FLOOR = 1.0 / INT6_MAX  # int6_late's published scale floor (clamp_min(1/31))


# ------------------------------------------------------------------------------------------
# The plan: which leaves are quantized, over which axes (the artifact's rule).

def reduce_axes(path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The axes one scale spans (the fan_in side), so every output channel has a scale.

  Muon matrices: partition's fan_in axes (layers axes stay per-layer). Other kernels (Dense
  (in, out), e.g. the untied LM head): the axis before the last. Tables (vocab, d_model): the
  last axis, one scale per row."""
  try:
    info = partition.classify(path, shape)
  except ValueError:
    info = None
  if info is not None and info.fan_in_axes:
    return info.fan_in_axes
  return (len(shape) - 2,) if path.endswith("kernel") else (len(shape) - 1,)


def int8_axes(path: str, shape: tuple[int, ...], fp16_max_numel: int) -> tuple[int, ...] | None:
  """The reduce axes if the leaf is quantized, None if stored fp16: quantized when one layer's
  matrix (the shape without stacked axes such as scanned layers) has at least 2 axes and more
  than `fp16_max_numel` elements."""
  stacked = sum(n for pattern, n in partition.DEFAULT.stacked if re.search(pattern, path))
  core = tuple(shape)[stacked:]
  if len(core) < 2 or math.prod(core) <= fp16_max_numel:
    return None
  return reduce_axes(path, shape)


def is_int6(path: str, shape: tuple[int, ...]) -> bool:
  """Whether a quantized leaf is int6 in the int6 artifact: a Muon matrix (attention and MLP
  kernels); embedding tables, LM heads and routers stay int8."""
  try:
    return partition.classify(path, shape).label == partition.MUON
  except ValueError:
    return False


def int6_axes(path: str, shape: tuple[int, ...], fp16_max_numel: int) -> tuple[int, ...] | None:
  """The reduce axes if the int6 artifact stores the leaf as int6 (and QAT fake-quantizes it),
  else None."""
  axes = int8_axes(path, shape, fp16_max_numel)
  return axes if axes is not None and is_int6(path, shape) else None


# ------------------------------------------------------------------------------------------
# Fake quantization.

def _rows(w: jnp.ndarray, axes: tuple[int, ...]) -> jnp.ndarray:
  """`w` with its reduce axes moved last and flattened: (kept axes..., n)."""
  keep = [a for a in range(w.ndim) if a not in axes]
  moved = jnp.transpose(w, keep + list(axes))
  return moved.reshape(moved.shape[:len(keep)] + (-1,))


def row_quantile(a_rn: jnp.ndarray, q: float) -> jnp.ndarray:
  """The `q` quantile of each row (last axis) of `a_rn`, numpy's linear interpolation:
  sorted[i] + (pos - i) (sorted[i + 1] - sorted[i]) with pos = q (n - 1), i = floor(pos).
  Reads only the top n - i values (`lax.top_k`): a few for the high quantiles QAT uses."""
  n = a_rn.shape[-1]
  pos = q * (n - 1)
  i = min(int(math.floor(pos)), n - 1)
  frac = pos - i
  top = jax.lax.top_k(a_rn, n - i)[0]  # descending: top[..., j] = sorted[n - 1 - j]
  lo = top[..., n - 1 - i]
  if frac == 0.0 or i == n - 1:
    return lo
  return lo + frac * (top[..., n - 2 - i] - lo)


def channel_scale(w: jnp.ndarray, axes: tuple[int, ...], clip_quantile: float,
                  floor: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(clip, scale) per output channel, with the reduce axes kept as size 1:
  clip = quantile(|w|, clip_quantile), scale = max(clip / 31, floor), 1 where that is 0."""
  rows = _rows(jnp.abs(w.astype(jnp.float32)), axes)
  if clip_quantile >= 1.0:
    clip = jnp.max(rows, axis=-1)
  else:
    clip = row_quantile(rows, clip_quantile)
  # the kept axes are in their original order: size-1 reduce axes go back in place
  clip = clip.reshape([1 if a in axes else n for a, n in enumerate(w.shape)])
  scale = jnp.maximum(clip / INT6_MAX, floor)
  return clip, jnp.where(scale > 0, scale, 1.0)


def fake_quant(w: jnp.ndarray, axes: tuple[int, ...], clip_quantile: float,
               floor: float = 0.0) -> jnp.ndarray:
  """clip(round(w / scale), -31, 31) * scale per output channel (module docstring)."""
  _, scale = channel_scale(w, axes, clip_quantile, floor)
  w32 = w.astype(jnp.float32)
  q = jnp.clip(jnp.round(w32 / scale), -INT6_MAX, INT6_MAX)
  return (q * scale).astype(w.dtype)


def ste(w: jnp.ndarray, fq: Callable[[jnp.ndarray], jnp.ndarray]) -> jnp.ndarray:
  """w + stop_gradient(fq(w) - w): forward fq(w), gradient the identity."""
  return w + jax.lax.stop_gradient(fq(w) - w)


def floor_binds(w: jnp.ndarray, axes: tuple[int, ...], clip_quantile: float,
                floor: float) -> jnp.ndarray:
  """Per output channel (reduce axes dropped): whether the floor sets the scale."""
  clip, _ = channel_scale(w, axes, clip_quantile, floor)
  return jnp.squeeze(clip / INT6_MAX < floor, axis=axes)


# ------------------------------------------------------------------------------------------
# The config's QAT.

@dataclasses.dataclass(frozen=True)
class QAT:
  """One run's QAT: the form, the leaves it quantizes ({path: reduce axes}), its numbers and
  the schedule whose multiplier switches the late form."""
  form: str
  axes: dict[str, tuple[int, ...]]
  clip_quantile: float
  floor: float
  threshold: float
  schedule: Callable[..., jnp.ndarray]

  def active(self, progress: jnp.ndarray, step: jnp.ndarray) -> jnp.ndarray:
    """A traced bool: always True for int6_quantile; schedule(progress, step) < threshold for
    int6_late (`step`: the steps done before this one, as the schedule transform counts)."""
    if self.form == "int6_quantile":
      return jnp.bool_(True)
    return self.schedule(progress, step) < self.threshold

  def _map(self, fn, params):
    return jax.tree_util.tree_map_with_path(
        lambda p, w: fn(path_str(p), w) if path_str(p) in self.axes else w, params)

  def quantized(self, params: Any) -> Any:
    """`params` with every planned leaf replaced by its straight-through fake quantization."""
    return self._map(lambda path, w: ste(w, lambda x: fake_quant(
        x, self.axes[path], self.clip_quantile, self.floor)), params)

  def apply(self, params: Any, on: jnp.ndarray) -> Any:
    """The parameters the forward uses: `quantized(params)` when `on`, else `params` itself."""
    if self.form == "int6_quantile":
      return self.quantized(params)
    return jax.lax.cond(on, self.quantized, lambda p: p, params)

  def metrics(self, params: Any, on: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """metric/qat_on and metric/qat_floor_share (over every quantized output channel)."""
    binds = [floor_binds(w, self.axes[path], self.clip_quantile, self.floor)
             for path, w in _flat(params).items() if path in self.axes]
    hits = sum(jnp.sum(b.astype(jnp.float32)) for b in binds)
    rows = sum(b.size for b in binds)
    return {"metric/qat_on": on.astype(jnp.float32),
            "metric/qat_floor_share": hits / rows}


def _flat(params: Any) -> dict[str, Any]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  return {path_str(p): x for p, x in leaves}


def check(config) -> None:
  """The model.qat* keys (called by `config.validate`)."""
  m = config.model
  checks.one_of("model.qat", m.qat, FORMS)
  checks.number("model.qat_clip_quantile", m.qat_clip_quantile, 0.0, 1.0, low_open=True)
  checks.positive("model.qat_threshold", m.qat_threshold)
  checks.positive("model.qat_scale_floor", m.qat_scale_floor, allow_zero=True, allow_none=True)




def check_export(e) -> None:
  """The int6 keys (called by `config.validate`; export.format is checked there): they live
  here, with the int6 rule, because `config` may not import `jaxgpt.export` (which builds on
  train)."""
  qs = e.int6_clip_quantiles
  if not (isinstance(qs, (tuple, list)) and qs
          and all(checks.is_number(q) and 0 < q <= 1 for q in qs)):
    raise ConfigError(f"export.int6_clip_quantiles={qs!r} must be a non-empty tuple of numbers "
                      "in (0, 1]")
  checks.positive("export.int6_scale_floor", e.int6_scale_floor, allow_zero=True)


def floor_of(cfg_model) -> float:
  """model.qat_scale_floor, or the form's published floor when unset (late: 1/31; the
  always-on form: 0)."""
  if cfg_model.qat_scale_floor is not None:
    return float(cfg_model.qat_scale_floor)
  return LATE_FLOOR if cfg_model.qat == "int6_late" else 0.0


def from_config(config, params: Any) -> QAT | None:
  """The run's QAT for a params tree (arrays or ShapeDtypeStructs), None for model.qat="none".
  A model with nothing to quantize is a ConfigError naming model.qat."""
  m = config.model
  if m.qat == "none":
    return None
  limit = config.export.fp16_max_numel
  axes = {path: a for path, x in _flat(params).items()
          if (a := int6_axes(path, tuple(x.shape), limit)) is not None}
  if not axes:
    raise ConfigError(
        f"model.qat={m.qat!r} has nothing to quantize: no matrix of this model has more than "
        f"export.fp16_max_numel={limit} elements per layer (the artifact's int6 rule); lower "
        "export.fp16_max_numel or set model.qat='none'")
  clip_q = float(m.qat_clip_quantile) if m.qat == "int6_quantile" else 1.0
  return QAT(m.qat, axes, clip_q, floor_of(m), float(m.qat_threshold),
             schedules.from_config(config.optimizer))
