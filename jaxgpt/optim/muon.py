"""Muon (orthogonalized momentum) and its variants as a chain of small optax transforms.

Each idea is one public transform with pure `init`/`update` and a NamedTuple state:
`scale_by_mars`, `ema_momentum` / `sgd_momentum`, `orthogonalize_update`, `scale_by_normuon`,
`scale_by_shape` and the `cautious_mask` wrapper. `muon_chain(MuonSettings(...))` chains them;
`scale_by_muon` is that chain with its states kept as one `MuonState` (the tree checkpoints hold),
and `muon(learning_rate, ...)` adds decoupled (optionally cautious) weight decay and the learning
rate. All drop into `optax.chain`, `optax.multi_transform` and `optax.inject_hyperparams`.

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
every other axis is a batch axis (layers, experts, cohort) and indexes independent matrices
(`jaxgpt.optim.matrix`). A leaf is moved to (batch..., fan_in, fan_out), orthogonalized, and moved
back.

Gradient accumulation: Muon orthogonalizes once per `update`; accumulate micro-batch gradients
first (e.g. `optax.MultiSteps` or a scan in the train step) and call `update` once per step.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers

from jaxgpt import checks, registry
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim import partition
from jaxgpt.optim.matrix import (
  DimensionNumbers,
  MatrixLayout,
  dims_per_leaf,
  from_matrix,
  layouts,
  map_matrices,
  matrix_layout,
  matrix_sum,
  to_matrix,
)

ArrayLike = jax.typing.ArrayLike

MOMENTUM_STYLES = ("ema", "sgd")
UPDATE_SCALES = ("none", "shape", "rms_match")
VARIANCE_REDUCTIONS = ("none", "normuon", "mars")


# ------------------------------------------------------------------------------------------
# The small transforms. Each acts per matrix (see jaxgpt.optim.matrix) and composes with
# optax.chain; `scale_by_muon` chains them in the order of the module docstring.

class MarsState(NamedTuple):
  """State of `scale_by_mars`."""
  count: jax.Array  # int32 (), number of updates done (for the momentum schedule)
  prev_grad: optax.Updates  # the previous update's input gradient


class MomentumState(NamedTuple):
  """State of `ema_momentum` and `sgd_momentum`."""
  count: jax.Array  # int32 (), number of updates done
  mu: optax.Updates  # momentum, params' shapes


class NorMuonState(NamedTuple):
  """State of `scale_by_normuon`: params' shapes with fan_in axes of size 1, f32."""
  nu: optax.Updates


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


def scale_by_mars(momentum: ArrayLike = 0.95, gamma: ArrayLike = 0.025, *,
                  momentum_warmup_steps: ArrayLike = 0, momentum_warmup_start: ArrayLike = 0.85,
                  dimension_numbers: DimensionNumbers = None) -> optax.GradientTransformation:
  """MARS's corrected gradient (Yuan et al., arXiv 2411.10438), to feed a momentum transform.

      c = clip_F(g + gamma * beta / (1 - beta) * (g - g_prev), 1)   per matrix; c = g at count 0

  beta is the momentum of this update (`momentum_at` with the same warm-up as the momentum
  transform that follows). State: the update count and the previous gradient.
  """

  def init_fn(params):
    return MarsState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    beta = momentum_at(state.count, momentum, momentum_warmup_steps, momentum_warmup_start)

    def leaf(g, prev, lay):
      corrected = g + (gamma * beta / (1.0 - beta)) * (g - prev)
      corrected = jnp.where(state.count == 0, g, corrected)  # no previous gradient yet
      norm = jnp.sqrt(matrix_sum(jnp.square(corrected.astype(jnp.float32)), lay))
      return ((corrected / jnp.maximum(norm, 1.0)).astype(g.dtype),)

    (c,) = map_matrices(leaf, 1, dimension_numbers, updates, state.prev_grad)
    return c, MarsState(optax.safe_increment(state.count), updates)

  return optax.GradientTransformation(init_fn, update_fn)


def _momentum(step, momentum, warmup_steps, warmup_start, mu_dtype
              ) -> optax.GradientTransformation:
  """A momentum transform from step(c, m, beta, t) -> (u, m_new), per leaf."""

  def init_fn(params):
    mu = jax.tree.map(lambda p: jnp.zeros(p.shape, mu_dtype or p.dtype), params)
    return MomentumState(count=jnp.zeros([], jnp.int32), mu=mu)

  def update_fn(updates, state, params=None):
    del params
    beta = momentum_at(state.count, momentum, warmup_steps, warmup_start)
    t = (state.count + 1).astype(jnp.float32)  # this update's 1-based index

    def leaf(c, m):
      u, m = step(c, m, beta, t)
      return u.astype(c.dtype), m.astype(mu_dtype or c.dtype)

    leaves, treedef = jax.tree.flatten(updates)
    outs = [leaf(c, m) for c, m in zip(leaves, jax.tree.leaves(state.mu))]
    u, mu = (treedef.unflatten(list(col)) for col in (zip(*outs) if outs else ((), ())))
    return u, MomentumState(count=optax.safe_increment(state.count), mu=mu)

  return optax.GradientTransformation(init_fn, update_fn)


def ema_momentum(momentum: ArrayLike = 0.95, *, nesterov: bool = True,
                 bias_correction: bool = False, warmup_steps: ArrayLike = 0,
                 warmup_start: ArrayLike = 0.85, mu_dtype=None) -> optax.GradientTransformation:
  """EMA momentum (Muon, modded-nanogpt): m = beta m + (1 - beta) c, returns u.

      u = (1 - beta) c + beta m  (nesterov), or u = m
      bias_correction: u = m / (1 - beta^t), or with nesterov exactly optax.contrib.muon's
      beta m / (1 - beta^(t+1)) + (1 - beta) c / (1 - beta^t)

  beta follows `momentum_at(count, momentum, warmup_steps, warmup_start)`; `mu_dtype` is the
  stored momentum's dtype (None: the update's).
  """

  def step(c, m, beta, t):
    m = (1.0 - beta) * c + beta * m
    if nesterov and bias_correction:
      return beta * m / (1.0 - beta**(t + 1)) + (1.0 - beta) * c / (1.0 - beta**t), m
    if nesterov:
      return (1.0 - beta) * c + beta * m, m
    return (m / (1.0 - beta**t) if bias_correction else m), m

  return _momentum(step, momentum, warmup_steps, warmup_start, mu_dtype)


def sgd_momentum(momentum: ArrayLike = 0.95, *, nesterov: bool = True,
                 warmup_steps: ArrayLike = 0, warmup_start: ArrayLike = 0.85,
                 mu_dtype=None) -> optax.GradientTransformation:
  """SGD momentum (Moonlight, parameter-golf): m = mu m + c; u = c + mu m (nesterov) or m.

  With a constant momentum u is the EMA style's u / (1 - mu), which orthogonalization's
  normalization removes; the two differ under warm-up and MARS clipping.
  """

  def step(c, m, beta, t):
    del t
    m = beta * m + c
    return (c + beta * m if nesterov else m), m

  return _momentum(step, momentum, warmup_steps, warmup_start, mu_dtype)


def orthogonalize_update(method: str = "newton_schulz", ns_steps: int = 5, *,
                         ns_eps: ArrayLike | None = None, pe_lower: float = ortho.PE_LOWER,
                         compute_dtype=None, dimension_numbers: DimensionNumbers = None,
                         matrix_sharding: str = "round_robin") -> optax.GradientTransformation:
  """u -> orthogonalize(u) per matrix on its (fan_in, fan_out) view (`jaxgpt.optim.orthogonalize`:
  Newton–Schulz, Polar Express or the cubic; `matrix_sharding` places the iteration on a mesh).
  Stateless."""
  ortho.coefficients(method, ns_steps, pe_lower)  # validate steps early (and cache)

  def update_fn(updates, state, params=None):
    del params

    def leaf(u, lay):
      o = ortho.orthogonalize(to_matrix(u, lay), method, ns_steps, compute_dtype, eps=ns_eps,
                              pe_lower=pe_lower, sharding=matrix_sharding)
      return (from_matrix(o, lay, u.shape),)

    return map_matrices(leaf, 1, dimension_numbers, updates)[0], state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def scale_by_normuon(beta2: ArrayLike = 0.95, *, dimension_numbers: DimensionNumbers = None
                     ) -> optax.GradientTransformation:
  """NorMuon (modded-nanogpt): per-output-neuron second moment of the orthogonalized update.

      v = mean(O^2 over fan_in);  nu = beta2 nu + (1 - beta2) v;  O' = O / sqrt(nu)
      O' rescaled so each matrix keeps its ||O||_F

  beta2 0.95 by default (modded-nanogpt uses 0.9). State: nu, f32.
  """

  def init_fn(params):
    lays = layouts(dimension_numbers, params)
    leaves, treedef = jax.tree.flatten(params)
    return NorMuonState(treedef.unflatten([
        jnp.zeros(tuple(1 if a in lay.fan_in_axes else n for a, n in enumerate(p.shape)),
                  jnp.float32) for p, lay in zip(leaves, lays)]))

  def update_fn(updates, state, params=None):
    del params

    def leaf(o, nu, lay):
      o32 = o.astype(jnp.float32)
      v = jnp.mean(jnp.square(o32), axis=lay.fan_in_axes, keepdims=True)
      new_nu = nu + (1.0 - beta2) * (v - nu)  # lerp(nu, v, 1 - beta2)
      scaled = o32 * jax.lax.rsqrt(jnp.maximum(new_nu, 1e-10))
      norm_in = jnp.sqrt(matrix_sum(jnp.square(o32), lay))
      norm_out = jnp.sqrt(matrix_sum(jnp.square(scaled), lay))
      return (scaled * (norm_in / jnp.maximum(norm_out, 1e-10))).astype(o.dtype), new_nu

    out, nu = map_matrices(leaf, 2, dimension_numbers, updates, state.nu)
    return out, NorMuonState(nu)

  return optax.GradientTransformation(init_fn, update_fn)


def update_scale_factor(lay: MatrixLayout, update_scale: str) -> float:
  """The static factor of `scale_by_shape`: 1, sqrt(max(1, fan_out / fan_in)) ("shape"), or
  sqrt(max(fan_in, fan_out)) ("rms_match", to be multiplied by rms_scale)."""
  if update_scale == "shape":
    return math.sqrt(max(1.0, lay.fan_out / lay.fan_in))
  if update_scale == "rms_match":
    return math.sqrt(max(lay.fan_in, lay.fan_out))
  return 1.0


def scale_by_shape(update_scale: str = "shape", rms_scale: ArrayLike = 0.2, *,
                   dimension_numbers: DimensionNumbers = None) -> optax.GradientTransformation:
  """O -> factor * O per matrix: "none" 1; "shape" sqrt(max(1, fan_out / fan_in))
  (modded-nanogpt, optax); "rms_match" rms_scale * sqrt(max(fan_in, fan_out)) (Moonlight: AdamW
  learning rates and weight decay transfer). Stateless; `rms_scale` may be traced."""
  _check("update_scale", update_scale, UPDATE_SCALES)

  def update_fn(updates, state, params=None):
    del params

    def leaf(o, lay):
      out = o * update_scale_factor(lay, update_scale)
      if update_scale == "rms_match":
        out = out * rms_scale
      return (out.astype(o.dtype),)

    return map_matrices(leaf, 1, dimension_numbers, updates)[0], state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def cautious_mask(inner: optax.GradientTransformation, *,
             dimension_numbers: DimensionNumbers = None) -> optax.GradientTransformation:
  """Liang et al.'s cautious mask (arXiv 2411.16085) on what `inner` makes of the gradient g:

      O = inner(g);  mask = (O * g > 0);  O * mask * numel / (sum(mask) + 1)   per matrix

  with numel = fan_in * fan_out. A wrapper, since the mask needs the gradient `inner` consumed;
  the state is `inner`'s, unchanged.
  """

  def update_fn(updates, state, params=None):
    out, state = inner.update(updates, state, params)

    def leaf(o, g, lay):
      mask = (o * g > 0).astype(g.dtype)
      return ((o * mask * (lay.fan_in * lay.fan_out) / (matrix_sum(mask, lay) + 1)
               ).astype(g.dtype),)

    return map_matrices(leaf, 1, dimension_numbers, out, updates)[0], state

  return optax.GradientTransformation(inner.init, update_fn)


# ------------------------------------------------------------------------------------------
# Muon: the transforms above in one chain, configured by one settings dataclass.

def _static(default):
  return dataclasses.field(default=default, metadata={"static": True})


@dataclasses.dataclass(frozen=True)
class MuonSettings:
  """Every option of `scale_by_muon` (the transforms above, in chain order).

  Numeric fields may be traced scalars (cohorts under `jax.vmap`, injected hyperparameters): the
  code never branches on their values. Fields marked static fix shapes, the unrolled iteration
  or dtypes, or are callables; `optax.inject_hyperparams` must leave them alone.

  momentum: beta (EMA style) or mu (SGD style); 0.95 in Muon and modded-nanogpt.
  nesterov, momentum_style ("ema" | "sgd"), bias_correction (EMA only; optax.contrib.muon's
    form; Muon and modded-nanogpt do not bias-correct), momentum_warmup_steps /
    momentum_warmup_start (`momentum_at`), mu_dtype: `ema_momentum`, `sgd_momentum`.
  orthogonalizer ("newton_schulz" | "polar_express" | "newton_schulz_cubic"), ns_steps, ns_eps
    (None: the method's own; 1e-8 matches optax), pe_lower, compute_dtype (None: bf16 on GPU,
    f32 otherwise), matrix_sharding ("round_robin" | "gather" | "gspmd"; docs/sharding.md):
    `orthogonalize_update`.
  update_scale ("none" | "shape" | "rms_match"), rms_scale: `scale_by_shape`. Pin update_scale
    in any config that quotes a published learning rate.
  variance_reduction: "none"; "normuon" (`scale_by_normuon`, rate beta2); "mars"
    (`scale_by_mars`, factor mars_gamma; 0.025 gives 0.475 at beta 0.95).
  cautious_update: `cautious_mask` around the whole chain.
  dimension_numbers: see `jaxgpt.optim.matrix.dims_per_leaf`; e.g.
    `jaxgpt.optim.partition.muon_dims_fn()`.
  """
  momentum: ArrayLike = 0.95
  nesterov: bool = True
  momentum_style: str = "ema"
  bias_correction: bool = False
  momentum_warmup_steps: ArrayLike = 0
  momentum_warmup_start: ArrayLike = 0.85
  orthogonalizer: str = "newton_schulz"
  ns_steps: int = _static(5)
  ns_eps: ArrayLike | None = None
  pe_lower: float = _static(ortho.PE_LOWER)
  compute_dtype: Any = _static(None)
  update_scale: str = "shape"
  rms_scale: ArrayLike = 0.2
  variance_reduction: str = "none"
  beta2: ArrayLike = 0.95
  mars_gamma: ArrayLike = 0.025
  cautious_update: bool = False
  dimension_numbers: DimensionNumbers = _static(None)
  mu_dtype: Any = _static(None)
  matrix_sharding: str = _static("round_robin")

  def __post_init__(self):
    _check("momentum_style", self.momentum_style, MOMENTUM_STYLES)
    _check("update_scale", self.update_scale, UPDATE_SCALES)
    _check("variance_reduction", self.variance_reduction, VARIANCE_REDUCTIONS)
    _check("orthogonalizer", self.orthogonalizer, ortho.METHODS)
    _check("matrix_sharding", self.matrix_sharding, ortho.SHARDINGS)
    if self.bias_correction and self.momentum_style != "ema":
      raise ValueError("bias_correction applies to momentum_style='ema' only")


# Arguments of `muon` that `optax.inject_hyperparams` must leave alone.
MUON_STATIC_ARGS = tuple(f.name for f in dataclasses.fields(MuonSettings)
                         if f.metadata.get("static"))


def _check(name: str, value: str, allowed: tuple[str, ...]):
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")


class MuonState(NamedTuple):
  """State of `scale_by_muon`: the chain's states gathered in one tuple (one tree to checkpoint,
  the layout the single-transform Muon had)."""
  count: jax.Array  # int32 (), number of updates done
  mu: optax.Updates  # momentum, params' shapes
  nu: optax.Updates | None  # NorMuon: params' shapes with fan_in axes of size 1, f32; else None
  prev_grad: optax.Updates | None  # MARS: the previous step's gradient; else None


def muon_chain(s: MuonSettings) -> optax.GradientTransformation:
  """The chain `scale_by_muon` runs: [MARS], momentum, orthogonalization, [NorMuon], shape
  scale, all inside [cautious]. Its state is a tuple with one entry per stage."""
  dims = s.dimension_numbers
  warmup = dict(warmup_steps=s.momentum_warmup_steps, warmup_start=s.momentum_warmup_start)
  stages = []
  if s.variance_reduction == "mars":
    stages.append(scale_by_mars(s.momentum, s.mars_gamma, dimension_numbers=dims,
                                momentum_warmup_steps=s.momentum_warmup_steps,
                                momentum_warmup_start=s.momentum_warmup_start))
  if s.momentum_style == "ema":
    stages.append(ema_momentum(s.momentum, nesterov=s.nesterov, mu_dtype=s.mu_dtype,
                               bias_correction=s.bias_correction, **warmup))
  else:
    stages.append(sgd_momentum(s.momentum, nesterov=s.nesterov, mu_dtype=s.mu_dtype, **warmup))
  stages.append(orthogonalize_update(
      s.orthogonalizer, s.ns_steps, ns_eps=s.ns_eps, pe_lower=s.pe_lower,
      compute_dtype=s.compute_dtype, dimension_numbers=dims, matrix_sharding=s.matrix_sharding))
  if s.variance_reduction == "normuon":
    stages.append(scale_by_normuon(s.beta2, dimension_numbers=dims))
  stages.append(scale_by_shape(s.update_scale, s.rms_scale, dimension_numbers=dims))
  chain = optax.chain(*stages)
  return cautious_mask(chain, dimension_numbers=dims) if s.cautious_update else chain


def _pack(s: MuonSettings, states: tuple) -> MuonState:
  mars = s.variance_reduction == "mars"
  momentum = states[int(mars)]
  return MuonState(count=momentum.count, mu=momentum.mu,
                   nu=states[int(mars) + 2].nu if s.variance_reduction == "normuon" else None,
                   prev_grad=states[0].prev_grad if mars else None)


def _unpack(s: MuonSettings, state: MuonState) -> tuple:
  states = [MomentumState(state.count, state.mu), optax.EmptyState()]
  if s.variance_reduction == "mars":
    states.insert(0, MarsState(state.count, state.prev_grad))
  if s.variance_reduction == "normuon":
    states.append(NorMuonState(state.nu))
  return tuple(states) + (optax.EmptyState(),)


def scale_by_muon(momentum: ArrayLike = 0.95, **settings) -> optax.GradientTransformation:
  """Muon's update direction u (p <- p - lr * u): `muon_chain(MuonSettings(momentum, **settings))`
  with its states kept as one `MuonState`.

  The rule is in the module docstring, the options in `MuonSettings`. Momentum is applied once
  per call: with gradient accumulation, accumulate first.
  """
  s = MuonSettings(momentum=momentum, **settings)
  chain = muon_chain(s)

  def init_fn(params):
    layouts(s.dimension_numbers, params)  # validates the dimension numbers against the shapes
    return _pack(s, chain.init(params))

  def update_fn(updates, state, params=None):
    updates, states = chain.update(updates, _unpack(s, state), params)
    return updates, _pack(s, states)

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


def muon(learning_rate: optax.ScalarOrSchedule, momentum: ArrayLike = 0.95,
         weight_decay: ArrayLike = 0.0, *, cautious_wd: bool = False, **settings
         ) -> optax.GradientTransformation:
  """Muon: `scale_by_muon`, then decoupled weight decay, then -learning_rate.

      p <- p - lr * (O + wd * mask * p),  mask = 1, or 1[O * p >= 0] with cautious_wd

  i.e. p * (1 - lr * wd) - lr * O without the mask. `learning_rate` is a float, a schedule
  count -> lr, or a traced scalar; `momentum`, `weight_decay` and the numeric `settings`
  (`MuonSettings`' fields) may be traced too, so a cohort built inside `jax.vmap` works. With
  `optax.inject_hyperparams`, pass `static_args=MUON_STATIC_ARGS` (or use `injectable_muon`).
  Only hidden matrices belong here; route embeddings, the LM head and vectors to AdamW with
  `jaxgpt.optim.partition`.

  With momentum_style "ema", nesterov, bias_correction, orthogonalizer "newton_schulz",
  ns_eps 1e-8 and update_scale "shape" this is `optax.contrib.muon` on 2-D parameters.
  """
  return optax.chain(
      scale_by_muon(momentum, **settings),
      add_decoupled_weight_decay(weight_decay, cautious=cautious_wd),
      optax.scale_by_learning_rate(learning_rate),
  )


def _muon_signature() -> inspect.Signature:
  """muon's signature with `**settings` spelled out as MuonSettings' fields, for
  `optax.inject_hyperparams`, which binds arguments by name to find the numeric ones."""
  params = list(inspect.signature(muon).parameters.values())[:-1]  # without **settings
  kw = inspect.Parameter.KEYWORD_ONLY
  params += [inspect.Parameter(f.name, kw, default=f.default)
             for f in dataclasses.fields(MuonSettings) if f.name != "momentum"]
  return inspect.Signature(params)


muon.__signature__ = _muon_signature()


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


def check_config(config) -> None:
  """The `optimizer.*` keys only Muon reads."""
  o = config.optimizer
  for key, allowed in (("orthogonalize", registry.ORTHOGONALIZERS.names()),
                       ("update_scale", UPDATE_SCALES),
                       ("variance_reduction", VARIANCE_REDUCTIONS),
                       ("momentum_style", MOMENTUM_STYLES),
                       ("matrix_sharding", ortho.SHARDINGS),
                       ("router", partition.ROUTER_OPTIMIZERS)):
    checks.one_of(f"optimizer.{key}", o[key], allowed)
  checks.integer("optimizer.ns_steps", o.ns_steps, 1)
  checks.fraction("optimizer.momentum", o.momentum)
  checks.fraction("optimizer.beta2", o.beta2)
  checks.integer("optimizer.momentum_warmup_steps", o.momentum_warmup_steps, 0)


def describe_partition(o, params, fold: bool) -> str:
  """Which leaf goes to Muon and which to AdamW, with each Muon leaf's axes (`partition`)."""
  return partition.describe(params, partition.for_router(o.router), fold=fold)


registry.OPTIMIZERS.register("muon", registry.Optimizer(build=muon_with_adamw, check=check_config,
                                                        describe=describe_partition))


__all__ = [
    "MUON_STATIC_ARGS", "MarsState", "MatrixLayout", "MomentumState", "MuonDimensionNumbers",
    "MuonSettings", "MuonState", "NorMuonState", "add_decoupled_weight_decay", "cautious_mask",
    "check_config", "describe_partition", "dims_per_leaf", "ema_momentum", "from_matrix",
    "injectable_muon", "matrix_layout", "matrix_sum", "momentum_at", "muon", "muon_chain",
    "muon_with_adamw", "orthogonalize_update", "scale_by_mars", "scale_by_muon",
    "scale_by_normuon", "scale_by_shape", "sgd_momentum", "to_matrix", "update_scale_factor",
]
