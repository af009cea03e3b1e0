"""`optimizer.nested.mode="dmgd"`: deep momentum gradient descent (Nested Learning, Eqs. 23-24),
with its momentum network and LR controller trained online by a one-step-lookahead
hypergradient.

Per leaf l at step t (v the momentum, g the gradient, p the parameter):

    x_l   = [cos(v, g), log1p|v|, log1p|g|, log1p rms(v), log1p rms(g), t / 1000]  (no gradient)
    s, h  = sigmoid(o_0), 2 sigmoid(o_1),  o = MLP_phi(x_l)   (SiLU; M hidden layers of H)
    v'    = s v + h g
    u     = v'  or, for Muon-labelled leaves with newton_schulz, scale * NS(v')   (Eq. 24)
    mult  = 0.1 + 1.9 sigmoid(MLP_psi([log1p|g_G|, log1p|p_G|, depth_G]))   per group G of the
            nested grid's two (core, embed); C = 0 layers: no controller, mult = 1
    delta = -lr_l * mult_G * (u + weight_decay * p)

lr_l is optimizer.lr for Muon-labelled leaves and embed_lr / head_lr / scalar_lr (unset: lr)
for the others (`jaxgpt.optim.partition`). The output layers start at zero weights, with
biases giving s = beta0, h = 1 - beta0 (beta0 = nested.momentum_init) and mult = 1: at
initialisation v' is the EMA momentum beta0 v + (1 - beta0) g, and with newton_schulz the
update on Muon leaves is Muon's (EMA style, no Nesterov).

Training signal for theta = (phi, psi), at step t + 1, before its own update: the new gradient
g' = dL/dW at W_{t+1} = W_t + delta_t gives the one-step-lookahead hypergradient

    dL(W_{t+1}) / dtheta = sum_l < g'_l, d delta_{t,l} / dtheta >

computed with `jax.vjp` of the step-t update map (recomputed from the cached v_t, g_t, x_t and
group stats; the decay term uses p_{t+1} for p_t) with cotangent g'. It is clipped to global
norm `meta_clip` and applied with Adam(meta_lr). The schedule's factor on delta (applied after
this transform) is left out: a positive scale per step. Memory: v, v_t and g_t are three
parameter-sized buffers (float32 when the parameters are).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgpt.keypath import path_str
from jaxgpt.optim import matrix, partition
from jaxgpt.optim import muon as muon_lib
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim.nested import groups as groups_lib
from jaxgpt.optim.nested import mlp
from jaxgpt.optim.nested.seed import MAX_MULT, MIN_MULT, key_from_params

NUM_FEATURES = 6


class DmgdState(NamedTuple):
  count: jax.Array  # int32 (), optimizer steps done
  v: Any  # momentum, params' shapes
  v_prev: Any  # the momentum step t started from (for the hypergradient at t + 1)
  g_prev: Any  # step t's gradient
  feats_prev: jax.Array  # float32 [leaves, NUM_FEATURES]: step t's features
  stats_prev: jax.Array  # float32 [2, 3]: step t's controller inputs
  theta: Any  # {"momentum": MLP, "controller": MLP or ()}
  theta_adam: optax.ScaleByAdamState
  meta_lr: jax.Array  # float32 ()
  mults: jax.Array  # float32 [2]: the last step's multipliers (core, embed)
  coefs: jax.Array  # float32 [leaves, 2]: the last step's (s, h)
  hypergrad_norm: jax.Array  # float32 (): norm of the last hypergradient, before clipping

  def log_metrics(self) -> dict:
    return {"opt/lr_mult_core": self.mults[0], "opt/lr_mult_embed": self.mults[1],
            "opt/momentum_s": jnp.mean(self.coefs[:, 0]),
            "opt/momentum_h": jnp.mean(self.coefs[:, 1]),
            "opt/hypergrad_norm": self.hypergrad_norm}


@dataclasses.dataclass(frozen=True)
class DmgdSettings:
  """dmgd's settings; lrs, weight_decay and meta_lr may be traced scalars (cohorts)."""
  lr: Any = 0.02
  embed_lr: Any = None
  head_lr: Any = None
  scalar_lr: Any = None
  weight_decay: Any = 0.0
  meta_lr: Any = 1e-4
  meta_clip: float = 1.0
  momentum_init: float = 0.9
  momentum_layers: int = 2
  momentum_hidden: int = 32
  controller_layers: int = 2
  controller_hidden: int = 32
  newton_schulz: bool = False
  orthogonalizer: str = "newton_schulz"
  ns_steps: int = 5
  update_scale: str = "shape"
  init_seed: int = 0

  def lr_for(self, label: str):
    other = {partition.ADAMW_EMBED: self.embed_lr, partition.ADAMW_HEAD: self.head_lr,
             partition.ADAMW_SCALAR: self.scalar_lr}.get(label)
    return self.lr if other is None else other


def _logit(p: float) -> float:
  return math.log(p / (1.0 - p))


def init_theta(key: jax.Array, s: DmgdSettings) -> dict:
  """Momentum net and controller with zero output weights (EMA momentum, mult 1 at init)."""
  mom, key = mlp.init_chain(key, mlp.widths(NUM_FEATURES, s.momentum_hidden,
                                            s.momentum_layers, 2))
  beta = s.momentum_init
  mom = mlp.with_output(mom, w=jnp.zeros(mom[-1]["w"].shape),
                        b=jnp.asarray([_logit(beta), _logit((1.0 - beta) / 2.0)]))
  ctrl = ()
  if s.controller_layers > 0:
    ctrl, _ = mlp.init_chain(key, mlp.widths(3, s.controller_hidden, s.controller_layers, 1))
    ctrl = mlp.with_output(ctrl, w=jnp.zeros(ctrl[-1]["w"].shape),
                           b=jnp.asarray([_logit((1.0 - MIN_MULT) / (MAX_MULT - MIN_MULT))]))
  return {"momentum": mom, "controller": ctrl}


def features(v: jax.Array, g: jax.Array, count: jax.Array) -> jax.Array:
  """float32 [NUM_FEATURES] of one leaf (module docstring); no gradient flows through them."""
  v32, g32 = v.astype(jnp.float32), g.astype(jnp.float32)
  nv, ng = jnp.sqrt(jnp.sum(v32 * v32)), jnp.sqrt(jnp.sum(g32 * g32))
  root_n = math.sqrt(max(v.size, 1))
  cos = jnp.sum(v32 * g32) / (nv * ng + 1e-12)
  x = jnp.stack([cos, jnp.log1p(nv), jnp.log1p(ng), jnp.log1p(nv / root_n),
                 jnp.log1p(ng / root_n), count.astype(jnp.float32) / 1000.0])
  return jax.lax.stop_gradient(x)


def momentum_coefs(mom: Any, feats_lf: jax.Array) -> jax.Array:
  """[leaves, 2]: (s, h) per leaf."""
  o = mlp.apply(mom, feats_lf, jax.nn.silu)
  return jnp.stack([jax.nn.sigmoid(o[:, 0]), 2.0 * jax.nn.sigmoid(o[:, 1])], axis=1)


def mults_of(ctrl: Any, stats_g3: jax.Array) -> jax.Array:
  if not ctrl:
    return jnp.ones((2,), jnp.float32)
  x = jnp.stack([jnp.log1p(stats_g3[:, 0]), jnp.log1p(stats_g3[:, 1]), stats_g3[:, 2]], 1)
  out = mlp.apply(ctrl, x, jax.nn.relu)[:, 0]
  return MIN_MULT + (MAX_MULT - MIN_MULT) * jax.nn.sigmoid(out)


class _Leaf(NamedTuple):
  """Static per-leaf facts."""
  label: str
  group: int
  layout: Any  # matrix.MatrixLayout for orthogonalized leaves, else None
  scale: float


def _leaves(params: Any, s: DmgdSettings) -> list[_Leaf]:
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  out = []
  for path, x in flat:
    info = partition.classify(path_str(path), np.shape(x))
    lay, scale = None, 1.0
    if s.newton_schulz and info.label == partition.MUON:
      lay = matrix.matrix_layout(tuple(np.shape(x)), info.dimension_numbers)
      scale = muon_lib.update_scale_factor(lay, s.update_scale)
      if s.update_scale == "rms_match":
        scale *= 0.2  # Muon's default rms_scale
    out.append(_Leaf(info.label, groups_lib.group_of(info), lay, scale))
  return out


def _orthogonalize(x: jax.Array, leaf: _Leaf, s: DmgdSettings) -> jax.Array:
  # The same (batch..., fan_in, fan_out) view Muon uses.
  o = ortho.orthogonalize(matrix.to_matrix(x, leaf.layout), s.orthogonalizer, s.ns_steps)
  return (matrix.from_matrix(o, leaf.layout, x.shape) * leaf.scale).astype(x.dtype)


def step_map(theta: dict, v: list, g: list, feats_lf: jax.Array, stats_g3: jax.Array,
             p: list, leaves: list[_Leaf], s: DmgdSettings):
  """theta -> (deltas, new momenta, (s, h) per leaf, mults): one dmgd step on leaf lists."""
  coefs = momentum_coefs(theta["momentum"], feats_lf)
  mults = mults_of(theta["controller"], stats_g3)
  deltas, new_v = [], []
  for i, (vi, gi, pi, leaf) in enumerate(zip(v, g, p, leaves)):
    vn = (coefs[i, 0] * vi + coefs[i, 1] * gi).astype(vi.dtype)
    u = vn if leaf.layout is None else _orthogonalize(vn, leaf, s)
    lr = s.lr_for(leaf.label) * mults[leaf.group]
    deltas.append((-lr * (u + s.weight_decay * pi)).astype(pi.dtype))
    new_v.append(vn)
  return deltas, new_v, coefs, mults


def hypergradient(theta: dict, v_prev: list, g_prev: list, feats_prev: jax.Array,
                  stats_prev: jax.Array, p: list, g_next: list, leaves: list[_Leaf],
                  s: DmgdSettings) -> dict:
  """sum_l <g_next_l, d delta_l / d theta> of the step cached in (v_prev, g_prev, ...)."""
  _, vjp = jax.vjp(lambda th: step_map(th, v_prev, g_prev, feats_prev, stats_prev, p, leaves,
                                       s)[0], theta)
  return vjp(list(g_next))[0]


def scale_by_dmgd(s: DmgdSettings) -> optax.GradientTransformation:
  """The dmgd transform (module docstring): returns the parameter update itself."""
  meta_adam = optax.scale_by_adam()

  def init_fn(params):
    theta = init_theta(key_from_params(params, s.init_seed), s)
    zeros = jax.tree.map(jnp.zeros_like, params)
    n = len(jax.tree.leaves(params))
    return DmgdState(
        count=jnp.zeros((), jnp.int32), v=zeros, v_prev=zeros, g_prev=zeros,
        feats_prev=jnp.zeros((n, NUM_FEATURES), jnp.float32),
        stats_prev=jnp.zeros((2, 3), jnp.float32), theta=theta,
        theta_adam=meta_adam.init(theta), meta_lr=jnp.asarray(s.meta_lr, jnp.float32),
        mults=jnp.ones((2,), jnp.float32), coefs=jnp.zeros((n, 2), jnp.float32),
        hypergrad_norm=jnp.zeros((), jnp.float32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("deep_nested needs params: call update(updates, state, params)")
    leaves = _leaves(updates, s)
    g, treedef = jax.tree.flatten(updates)
    p = jax.tree.leaves(params)
    # 1. Train theta on the previous step's update (nothing to learn from at the first step).
    hg = hypergradient(state.theta, jax.tree.leaves(state.v_prev),
                       jax.tree.leaves(state.g_prev), state.feats_prev, state.stats_prev, p, g,
                       leaves, s)
    hg = jax.lax.stop_gradient(hg)  # the meta step itself is never differentiated
    hg_norm = optax.tree.norm(hg)
    hg = jax.tree.map(lambda x: x * jnp.minimum(1.0, s.meta_clip / (hg_norm + 1e-6)), hg)
    step, adam_state = meta_adam.update(hg, state.theta_adam)
    learned = jax.tree.map(lambda t, u: t - state.meta_lr * u, state.theta, step)
    first = state.count == 0
    theta = jax.tree.map(lambda a, b: jnp.where(first, a, b), state.theta, learned)
    adam_state = jax.tree.map(lambda a, b: jnp.where(first, a, b), state.theta_adam,
                              adam_state)
    # 2. This step's update with the new theta.
    v = jax.tree.leaves(state.v)
    feats = jnp.stack([features(vi, gi, state.count) for vi, gi in zip(v, g)]) if g else (
        jnp.zeros((0, NUM_FEATURES), jnp.float32))
    stats = groups_lib.group_stats(updates, params, groups_lib.groups(updates))
    deltas, new_v, coefs, mults = step_map(theta, v, g, feats, stats, p, leaves, s)
    return treedef.unflatten(deltas), DmgdState(
        count=optax.safe_increment(state.count), v=treedef.unflatten(new_v), v_prev=state.v,
        g_prev=updates, feats_prev=feats, stats_prev=stats, theta=theta,
        theta_adam=adam_state, meta_lr=state.meta_lr, mults=mults, coefs=coefs,
        hypergrad_norm=jnp.where(first, 0.0, hg_norm))

  return optax.GradientTransformation(init_fn, update_fn)
