"""Muon (orthogonalized momentum) and its variants as optax transforms.

`scale_by_muon` does the math and returns the update direction `u` (descent: p <- p - lr * u);
`muon(learning_rate, ...)` chains it with decoupled (optionally cautious) weight decay and the
learning rate. Both are `optax.GradientTransformation`s with pure `init`/`update` and a NamedTuple
state, so they drop into `optax.chain`, `optax.multi_transform` and `optax.inject_hyperparams`.

One `update`, per matrix (every leaf is one matrix or a stack of independent matrices):

    beta  = momentum, or (1 - f) * 0.85 + f * momentum with f = min(count / warmup_steps, 1)
    c     = g                                                  (variance_reduction != "mars")
    c     = clip_F(g + gamma * beta / (1 - beta) * (g - g_prev), 1)      ("mars"; c = g at count 0)
    EMA:  m = beta * m + (1 - beta) * c;  u = (1 - beta) * c + beta * m  (Nesterov) or u = m
    SGD:  m = beta * m + c;               u = c + beta * m               (Nesterov) or u = m
    O     = orthogonalize(u)          (Newton–Schulz / Polar Express / cubic, on (fan_in, fan_out))
    NorMuon: v = mean(O^2 over fan_in); nu = beta2 * nu + (1 - beta2) * v;
             O = O / sqrt(nu), rescaled so ||O||_F is unchanged
    O     = scale * O;
            scale = 1 | sqrt(max(1, fan_out / fan_in)) | 0.2 * sqrt(max(fan_in, fan_out))
    cautious: mask = (O * g > 0);  O = O * mask * numel / (sum(mask) + 1)
    muon(): p <- p * (1 - lr * wd * [O * p >= 0 if cautious_wd]) - lr * O

References:
  Jordan et al., Muon, https://kellerjordan.github.io/posts/muon/ and modded-nanogpt (2024).
  Liu et al., "Muon is Scalable for LLM Training", arXiv 2502.16982 (rms_match scale).
  Amsel et al., "The Polar Express", arXiv 2505.16932.
  NorMuon as in modded-nanogpt (per-output-neuron second moment after orthogonalization).
  Yuan et al., MARS, arXiv 2411.10438; Liu, Yuan, Gu, MARS-M, arXiv 2510.21800.
  Liang et al., "Cautious Optimizers", arXiv 2411.16085.
  Chen et al., cautious weight decay, arXiv 2510.12402.

Dimension numbers: each leaf names its fan_in (reduction) and fan_out (output) axes with
`MuonDimensionNumbers(reduction_axis, output_axis)` (optax's type, re-exported; ints or tuples);
every other axis is a batch axis (layers, experts, cohort) and indexes independent matrices. A
leaf is moved to (batch..., fan_in, fan_out), orthogonalized, and moved back.

Gradient accumulation: Muon orthogonalizes once per `update`; accumulate micro-batch gradients
first (e.g. `optax.MultiSteps` or a scan in the train step) and call `update` once per step.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers

from jaxgpt import registry
from jaxgpt.errors import ConfigError
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim import partition

ArrayLike = jax.typing.ArrayLike

MOMENTUM_STYLES = ("ema", "sgd")
UPDATE_SCALES = ("none", "shape", "rms_match")
VARIANCE_REDUCTIONS = ("none", "normuon", "mars")

# Arguments of `muon` that `optax.inject_hyperparams` must leave alone: they fix shapes, the
# unrolled iteration or dtypes, or are callables that it would mistake for schedules.
MUON_STATIC_ARGS = ("ns_steps", "pe_lower", "compute_dtype", "mu_dtype", "dimension_numbers",
                    "matrix_sharding")

DimensionNumbers = Any  # MuonDimensionNumbers | pytree of (MuonDimensionNumbers | None) | callable


class MuonState(NamedTuple):
  """State of `scale_by_muon`."""
  count: jax.Array  # int32 (), number of updates done
  mu: optax.Updates  # momentum, params' shapes
  nu: optax.Updates | None  # NorMuon: params' shapes with fan_in axes of size 1, f32; else None
  prev_grad: optax.Updates | None  # MARS: the previous step's gradient; else None


class _Layout(NamedTuple):
  """Static description of how one leaf maps to (batch..., fan_in, fan_out)."""
  fan_in_axes: tuple[int, ...]
  fan_out_axes: tuple[int, ...]
  batch_axes: tuple[int, ...]
  fan_in: int
  fan_out: int


def _axes(axes, ndim: int) -> tuple[int, ...]:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return tuple(int(a) % ndim for a in axes)


def matrix_layout(shape: tuple[int, ...], dims: MuonDimensionNumbers) -> _Layout:
  """fan_in / fan_out / batch axes (non-negative) and sizes of a leaf of `shape`."""
  ndim = len(shape)
  if ndim < 2:
    raise ValueError(f"Muon needs leaves of rank >= 2, got shape {shape}")
  fan_in_axes = _axes(dims.reduction_axis, ndim)
  fan_out_axes = _axes(dims.output_axis, ndim)
  if not fan_in_axes or not fan_out_axes or set(fan_in_axes) & set(fan_out_axes):
    raise ValueError(f"fan_in axes {fan_in_axes} and fan_out axes {fan_out_axes} must be "
                     f"non-empty and disjoint (shape {shape}, {dims})")
  batch_axes = tuple(a for a in range(ndim) if a not in fan_in_axes + fan_out_axes)
  return _Layout(fan_in_axes, fan_out_axes, batch_axes,
                 math.prod(shape[a] for a in fan_in_axes),
                 math.prod(shape[a] for a in fan_out_axes))


def _to_matrix(x: jax.Array, lay: _Layout) -> jax.Array:
  """(any layout) -> (batch..., fan_in, fan_out)."""
  batch_shape = tuple(x.shape[a] for a in lay.batch_axes)
  perm = lay.batch_axes + lay.fan_in_axes + lay.fan_out_axes
  return jnp.transpose(x, perm).reshape(batch_shape + (lay.fan_in, lay.fan_out))


def _from_matrix(x_bio: jax.Array, lay: _Layout, shape: tuple[int, ...]) -> jax.Array:
  """(batch..., fan_in, fan_out) -> the leaf's own layout."""
  perm = lay.batch_axes + lay.fan_in_axes + lay.fan_out_axes
  x = x_bio.reshape(tuple(shape[a] for a in perm))
  return jnp.transpose(x, tuple(perm.index(a) for a in range(len(shape))))


def _matrix_sum(x: jax.Array, lay: _Layout) -> jax.Array:
  """Sum over each matrix (fan_in and fan_out axes), keeping dims: one value per matrix."""
  return jnp.sum(x, axis=lay.fan_in_axes + lay.fan_out_axes, keepdims=True)


def _is_dims_leaf(x) -> bool:
  return x is None or isinstance(x, MuonDimensionNumbers)


def dims_per_leaf(dimension_numbers: DimensionNumbers, tree: Any) -> list[MuonDimensionNumbers]:
  """One MuonDimensionNumbers per array leaf of `tree` (MaskedNode subtrees hold no leaves).

  `dimension_numbers` is None (every leaf's last two axes are (fan_in, fan_out), leading axes are
  batch), one MuonDimensionNumbers for every leaf, a pytree prefix of `tree` whose leaves are
  MuonDimensionNumbers or None (None only where `tree` has no arrays, e.g. leaves masked out by
  `optax.multi_transform`), or a callable tree -> such a pytree.
  """
  if callable(dimension_numbers):
    dimension_numbers = dimension_numbers(tree)
  if dimension_numbers is None:
    dimension_numbers = MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)
  if isinstance(dimension_numbers, MuonDimensionNumbers):
    return [dimension_numbers] * len(jax.tree.leaves(tree))
  spec_leaves, spec_def = jax.tree.flatten(dimension_numbers, is_leaf=_is_dims_leaf)
  out = []
  for dims, sub in zip(spec_leaves, spec_def.flatten_up_to(tree)):
    n = len(jax.tree.leaves(sub))
    if n and dims is None:
      raise ValueError("a parameter reached Muon with dimension numbers None; route it to "
                       "another optimizer (optax.multi_transform) or give it dimension numbers")
    out.extend([dims] * n)
  return out


def momentum_at(count: ArrayLike, momentum: ArrayLike, warmup_steps: ArrayLike = 0,
                warmup_start: ArrayLike = 0.85) -> jax.Array:
  """Momentum for the update with index `count` (0-based): linear warmup_start -> momentum.

  beta = (1 - f) * warmup_start + f * momentum, f = min(count / warmup_steps, 1) (f = 1 when
  warmup_steps is 0), so count 0 gives warmup_start and count >= warmup_steps gives momentum
  exactly. modded-nanogpt: 0.85 -> 0.95 over 300 steps. Counted in steps, not in `progress`.
  """
  count = jnp.asarray(count, jnp.float32)
  steps = jnp.asarray(warmup_steps, jnp.float32)
  frac = jnp.where(steps > 0, jnp.clip(count / jnp.maximum(steps, 1.0), 0.0, 1.0), 1.0)
  return (1.0 - frac) * warmup_start + frac * momentum


def _check(name: str, value: str, allowed: tuple[str, ...]):
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")


def scale_by_muon(
    momentum: ArrayLike = 0.95,
    *,
    nesterov: bool = True,
    momentum_style: str = "ema",
    bias_correction: bool = False,
    momentum_warmup_steps: ArrayLike = 0,
    momentum_warmup_start: ArrayLike = 0.85,
    orthogonalizer: str = "newton_schulz",
    ns_steps: int = 5,
    ns_eps: ArrayLike | None = None,
    pe_lower: float = ortho.PE_LOWER,
    compute_dtype=None,
    update_scale: str = "shape",
    rms_scale: ArrayLike = 0.2,
    variance_reduction: str = "none",
    beta2: ArrayLike = 0.95,
    mars_gamma: ArrayLike = 0.025,
    cautious_update: bool = False,
    dimension_numbers: DimensionNumbers = None,
    mu_dtype=None,
    matrix_sharding: str = "round_robin",
) -> optax.GradientTransformation:
  """Muon's update direction: momentum, orthogonalization, variance reduction, scaling.

  The exact rule is in the module docstring. Returns u with p <- p - lr * u (the `muon` alias
  applies weight decay and -lr). Numeric hyperparameters (momentum, beta2, mars_gamma, rms_scale,
  ns_eps, momentum_warmup_*) may be traced scalars (cohorts under `jax.vmap`, injected
  hyperparameters): the code never branches on their values.

  Args:
    momentum: beta (EMA style) or mu (SGD style); 0.95 in Muon and modded-nanogpt.
    nesterov: use the Nesterov look-ahead u (see module docstring) instead of m.
    momentum_style: "ema" (m = beta m + (1-beta) g; Muon, modded-nanogpt) or "sgd"
      (m = mu m + g; Moonlight, parameter-golf). With a constant momentum the two u differ by
      the factor (1 - beta), which the orthogonalization's normalization removes; they differ
      under momentum warm-up, bias correction and MARS clipping.
    bias_correction: EMA only. Divide m by (1 - beta^t) as `optax.contrib.muon` does (with
      Nesterov, exactly optax's form: beta m / (1 - beta^(t+1)) + (1-beta) g / (1 - beta^t)).
      Muon and modded-nanogpt do not bias-correct.
    momentum_warmup_steps: linear momentum warm-up from `momentum_warmup_start` over this many
      updates (0 = off); see `momentum_at`.
    orthogonalizer: "newton_schulz", "polar_express" or "newton_schulz_cubic"
      (`jaxgpt.optim.orthogonalize`).
    ns_steps: iterations (static int).
    ns_eps: normalization eps override (None: the method's own; 1e-8 matches optax).
    pe_lower: Polar Express design lower bound (static; see `orthogonalize.coefficients`).
    compute_dtype: dtype of the iteration (None: bf16 on GPU, f32 otherwise).
    update_scale: "none"; "shape": sqrt(max(1, fan_out / fan_in)) (modded-nanogpt, optax);
      "rms_match": rms_scale * sqrt(max(fan_in, fan_out)) (Moonlight; AdamW learning rates and
      weight decay transfer). Pin it in any config that quotes a published learning rate.
    rms_scale: the 0.2 of "rms_match".
    variance_reduction: "none"; "normuon": per-output-neuron second moment of O (mean of O^2 over
      the fan_in axes), EMA with beta2, O / sqrt(nu) rescaled to keep each matrix's ||O||_F;
      "mars": the MARS correction c (module docstring), with state g_prev.
    beta2: NorMuon's EMA rate (0.95; modded-nanogpt uses 0.9).
    mars_gamma: MARS gamma (0.025: factor 0.475 at beta 0.95).
    cautious_update: Liang et al.'s mask, per matrix: mask = (O * g > 0),
      O = O * mask * numel / (sum(mask) + 1), numel = fan_in * fan_out.
    dimension_numbers: see `dims_per_leaf`; e.g. `jaxgpt.optim.partition.muon_dimension_numbers`.
    mu_dtype: momentum dtype (None: the parameter's).
    matrix_sharding: where the orthogonalization runs on a sharded mesh: "round_robin" (whole
      matrices dealt out over the devices, results gathered), "gather" or "gspmd" (see
      `jaxgpt.optim.orthogonalize` and docs/sharding.md). Without a mesh it changes nothing.

  Momentum is applied once per call: with gradient accumulation, accumulate first.
  """
  _check("momentum_style", momentum_style, MOMENTUM_STYLES)
  _check("update_scale", update_scale, UPDATE_SCALES)
  _check("variance_reduction", variance_reduction, VARIANCE_REDUCTIONS)
  _check("orthogonalizer", orthogonalizer, ortho.METHODS)
  _check("matrix_sharding", matrix_sharding, ortho.SHARDINGS)
  if bias_correction and momentum_style != "ema":
    raise ValueError("bias_correction applies to momentum_style='ema' only")
  ortho.coefficients(orthogonalizer, ns_steps, pe_lower)  # validate steps early (and cache)
  normuon = variance_reduction == "normuon"
  mars = variance_reduction == "mars"

  def layouts(tree):
    return [matrix_layout(x.shape, d)
            for x, d in zip(jax.tree.leaves(tree), dims_per_leaf(dimension_numbers, tree))]

  def init_fn(params):
    lays = layouts(params)  # validates the dimension numbers against the shapes
    mu = jax.tree.map(lambda p: jnp.zeros(p.shape, mu_dtype or p.dtype), params)
    nu = prev = None
    if normuon:
      leaves, treedef = jax.tree.flatten(params)
      nu = treedef.unflatten([
          jnp.zeros(tuple(1 if a in lay.fan_in_axes else n for a, n in enumerate(p.shape)),
                    jnp.float32)
          for p, lay in zip(leaves, lays)])
    if mars:
      prev = jax.tree.map(jnp.zeros_like, params)
    return MuonState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, prev_grad=prev)

  def scale_for(lay: _Layout) -> float:
    if update_scale == "shape":
      return math.sqrt(max(1.0, lay.fan_out / lay.fan_in))
    if update_scale == "rms_match":
      return math.sqrt(max(lay.fan_in, lay.fan_out))  # times rms_scale (may be traced)
    return 1.0

  def update_leaf(g, m, nu, prev, lay, count, beta):
    dtype = g.dtype
    t = (count + 1).astype(jnp.float32)  # this update's 1-based index
    c = g
    new_prev = None
    if mars:
      corrected = g + (mars_gamma * beta / (1.0 - beta)) * (g - prev)
      corrected = jnp.where(count == 0, g, corrected)  # no previous gradient yet
      norm = jnp.sqrt(_matrix_sum(jnp.square(corrected.astype(jnp.float32)), lay))
      c = (corrected / jnp.maximum(norm, 1.0)).astype(dtype)
      new_prev = g
    if momentum_style == "ema":
      m = (1.0 - beta) * c + beta * m
      if nesterov and bias_correction:
        u = beta * m / (1.0 - beta**(t + 1)) + (1.0 - beta) * c / (1.0 - beta**t)
      elif nesterov:
        u = (1.0 - beta) * c + beta * m
      else:
        u = m / (1.0 - beta**t) if bias_correction else m
    else:
      m = beta * m + c
      u = c + beta * m if nesterov else m
    m = m.astype(mu_dtype or dtype)

    o = ortho.orthogonalize(_to_matrix(u.astype(dtype), lay), orthogonalizer, ns_steps,
                            compute_dtype, eps=ns_eps, pe_lower=pe_lower,
                            sharding=matrix_sharding)
    o = _from_matrix(o, lay, g.shape)

    new_nu = None
    if normuon:
      o32 = o.astype(jnp.float32)
      v = jnp.mean(jnp.square(o32), axis=lay.fan_in_axes, keepdims=True)
      new_nu = nu + (1.0 - beta2) * (v - nu)  # lerp(nu, v, 1 - beta2)
      scaled = o32 * jax.lax.rsqrt(jnp.maximum(new_nu, 1e-10))
      norm_in = jnp.sqrt(_matrix_sum(jnp.square(o32), lay))
      norm_out = jnp.sqrt(_matrix_sum(jnp.square(scaled), lay))
      o = (scaled * (norm_in / jnp.maximum(norm_out, 1e-10))).astype(dtype)

    o = o * scale_for(lay)
    if update_scale == "rms_match":
      o = o * rms_scale
    if cautious_update:
      mask = (o * g > 0).astype(dtype)
      o = o * mask * (lay.fan_in * lay.fan_out) / (_matrix_sum(mask, lay) + 1)
    return o.astype(dtype), m, new_nu, new_prev

  def update_fn(updates, state, params=None):
    del params
    leaves, treedef = jax.tree.flatten(updates)
    lays = layouts(updates)
    beta = momentum_at(state.count, momentum, momentum_warmup_steps, momentum_warmup_start)
    mus = jax.tree.leaves(state.mu)
    nus = jax.tree.leaves(state.nu) if normuon else [None] * len(leaves)
    prevs = jax.tree.leaves(state.prev_grad) if mars else [None] * len(leaves)
    outs = [update_leaf(g, m, nu, prev, lay, state.count, beta)
            for g, m, nu, prev, lay in zip(leaves, mus, nus, prevs, lays)]
    new_u, new_mu, new_nu, new_prev = (list(col) for col in zip(*outs)) if outs else ([],) * 4
    return treedef.unflatten(new_u), MuonState(
        count=optax.safe_increment(state.count),
        mu=treedef.unflatten(new_mu),
        nu=treedef.unflatten(new_nu) if normuon else None,
        prev_grad=treedef.unflatten(new_prev) if mars else None)

  return optax.GradientTransformation(init_fn, update_fn)


def add_decoupled_weight_decay(weight_decay: ArrayLike = 0.0, cautious: bool = False
                               ) -> optax.GradientTransformation:
  """u <- u + wd * p, or with `cautious` (Chen et al. 2025, arXiv 2510.12402)
  u + wd * 1[u*p >= 0] * p.

  Followed by -lr this is p <- p - lr * (u + wd * mask * p): decoupled decay, scaled by the
  learning rate (and its schedule) like PyTorch's. The cautious mask decays only coordinates the
  update already moves toward zero (update and parameter agree in sign). `weight_decay` may be
  traced; 0 leaves updates unchanged.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("weight decay needs params: call update(updates, state, params)")

    def decay(u, p):
      if cautious:
        p = jnp.where(u * p >= 0, p, jnp.zeros_like(p))
      return (u + weight_decay * p).astype(u.dtype)

    return jax.tree.map(decay, updates, params), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def muon(
    learning_rate: optax.ScalarOrSchedule,
    momentum: ArrayLike = 0.95,
    weight_decay: ArrayLike = 0.0,
    *,
    nesterov: bool = True,
    momentum_style: str = "ema",
    bias_correction: bool = False,
    momentum_warmup_steps: ArrayLike = 0,
    momentum_warmup_start: ArrayLike = 0.85,
    orthogonalizer: str = "newton_schulz",
    ns_steps: int = 5,
    ns_eps: ArrayLike | None = None,
    pe_lower: float = ortho.PE_LOWER,
    compute_dtype=None,
    update_scale: str = "shape",
    rms_scale: ArrayLike = 0.2,
    variance_reduction: str = "none",
    beta2: ArrayLike = 0.95,
    mars_gamma: ArrayLike = 0.025,
    cautious_update: bool = False,
    cautious_wd: bool = False,
    dimension_numbers: DimensionNumbers = None,
    mu_dtype=None,
    matrix_sharding: str = "round_robin",
) -> optax.GradientTransformation:
  """Muon: `scale_by_muon`, then decoupled weight decay, then -learning_rate.

      p <- p - lr * (O + wd * mask * p),  mask = 1, or 1[O * p >= 0] with cautious_wd

  i.e. p * (1 - lr * wd) - lr * O without the mask. `learning_rate` is a float, a schedule
  count -> lr, or a traced scalar; `momentum`, `weight_decay`, `beta2` (and the other numeric
  hyperparameters) may be traced too, so a cohort built inside `jax.vmap` works. With
  `optax.inject_hyperparams`, pass `static_args=MUON_STATIC_ARGS` (or use `injectable_muon`).
  Only hidden matrices belong here; route embeddings, the LM head and vectors to AdamW with
  `jaxgpt.optim.partition`. Other arguments: see `scale_by_muon`.

  With momentum_style "ema", nesterov, bias_correction, orthogonalizer "newton_schulz",
  ns_eps 1e-8 and update_scale "shape" this is `optax.contrib.muon` on 2-D parameters.
  """
  return optax.chain(
      scale_by_muon(
          momentum, nesterov=nesterov, momentum_style=momentum_style,
          bias_correction=bias_correction, momentum_warmup_steps=momentum_warmup_steps,
          momentum_warmup_start=momentum_warmup_start, orthogonalizer=orthogonalizer,
          ns_steps=ns_steps, ns_eps=ns_eps, pe_lower=pe_lower, compute_dtype=compute_dtype,
          update_scale=update_scale, rms_scale=rms_scale,
          variance_reduction=variance_reduction, beta2=beta2, mars_gamma=mars_gamma,
          cautious_update=cautious_update, dimension_numbers=dimension_numbers,
          mu_dtype=mu_dtype, matrix_sharding=matrix_sharding),
      add_decoupled_weight_decay(weight_decay, cautious=cautious_wd),
      optax.scale_by_learning_rate(learning_rate),
  )


def injectable_muon(**kwargs) -> optax.GradientTransformationExtraArgs:
  """`optax.inject_hyperparams(muon, static_args=MUON_STATIC_ARGS)(**kwargs)`.

  The numeric hyperparameters (learning_rate, momentum, weight_decay, beta2, ...) live in
  `state.hyperparams` and can be read or overwritten between steps, or scheduled.
  """
  return optax.inject_hyperparams(muon, static_args=MUON_STATIC_ARGS)(**kwargs)


# ------------------------------------------------------------------------------------------
# `optimizer.name="muon"`: Muon on hidden matrices, AdamW on the rest (registered below).

def muon_with_adamw(o) -> optax.GradientTransformation:
  """Muon on hidden matrices, AdamW (no weight decay) on embeddings, the head and vectors;
  an MoE router goes to AdamW or Muon by `optimizer.router`.

  Which leaf goes where, and each Muon leaf's fan_in / fan_out / batch axes, comes from the
  rules in `jaxgpt.optim.partition`; `optimizer.embed_lr`, `head_lr`, `scalar_lr` default to
  `optimizer.lr` when unset. `o` is `config.optimizer` (or a view of it with traced values).
  """
  adam = lambda lr: optax.adam(lr if lr is not None else o.lr, b1=o.b1, b2=o.b2, eps=o.eps)
  part = partition.for_router(o.router)
  transforms = {
      partition.MUON: muon(
          o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov,
          momentum_style=o.momentum_style, momentum_warmup_steps=o.momentum_warmup_steps,
          orthogonalizer=o.orthogonalize, ns_steps=o.ns_steps, update_scale=o.update_scale,
          variance_reduction=o.variance_reduction, beta2=o.beta2, cautious_wd=o.cautious_wd,
          dimension_numbers=partition.muon_dims_fn(part), matrix_sharding=o.matrix_sharding),
      partition.ADAMW_EMBED: adam(o.embed_lr),
      partition.ADAMW_HEAD: adam(o.head_lr),
      partition.ADAMW_SCALAR: adam(o.scalar_lr),
  }
  return partition.multi_transform(transforms, part)


def _check_config(config) -> None:
  """The `optimizer.*` keys only Muon reads."""
  o = config.optimizer
  for key, allowed in (("orthogonalize", registry.ORTHOGONALIZERS.names()),
                       ("update_scale", UPDATE_SCALES),
                       ("variance_reduction", VARIANCE_REDUCTIONS),
                       ("momentum_style", MOMENTUM_STYLES),
                       ("matrix_sharding", ortho.SHARDINGS),
                       ("router", partition.ROUTER_OPTIMIZERS)):
    if o[key] not in allowed:
      raise ConfigError(f"optimizer.{key}={o[key]!r} is not allowed; choose one of {allowed}")
  if not (isinstance(o.ns_steps, int) and not isinstance(o.ns_steps, bool) and o.ns_steps >= 1):
    raise ConfigError(f"optimizer.ns_steps={o.ns_steps!r} must be an integer >= 1")
  for key in ("momentum", "beta2"):
    if not (isinstance(o[key], (int, float)) and 0.0 <= o[key] <= 1.0):
      raise ConfigError(f"optimizer.{key}={o[key]!r} must be a fraction in [0, 1]")
  if not (isinstance(o.momentum_warmup_steps, int) and o.momentum_warmup_steps >= 0):
    raise ConfigError(f"optimizer.momentum_warmup_steps={o.momentum_warmup_steps!r} must be an "
                      "integer >= 0")


registry.OPTIMIZERS.register("muon", registry.Optimizer(build=muon_with_adamw,
                                                        check=_check_config))


__all__ = [
    "MUON_STATIC_ARGS", "MuonDimensionNumbers", "MuonState", "add_decoupled_weight_decay",
    "dims_per_leaf", "injectable_muon", "matrix_layout", "momentum_at", "muon",
    "muon_with_adamw", "scale_by_muon",
]
