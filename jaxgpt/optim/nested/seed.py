"""`optimizer.nested.mode="seed"`: the nested grid's DeepNestedOptimizer as it computes in that
grid (the TitanMAC / DeepNestedOptimizer grid of bigwolfeman/5-dollar-llm, branch
001-TitanMAC-Testing, docs/design.md "Sources"). The original is PyTorch:
bigwolfeman/TitanMAC-Standalone's `titans_core/opt/deep_nested_optimizer.py`.

What the grid's configuration (use_cms_updates=False, mode='explicit', use_unrolled=False)
computes, step by step (docs/nested.md has the full account and the original's quirks):

  per step (`scale_by_seed_nested`, an optax transform):
    stats[g] = [||grad_g||, ||param_g||, depth_g]   for g in (core, embed), grads before clipping
    mult     = 0.1 + 1.9 * sigmoid(controller(stats))   in [0.1, 2.0]; a non-finite stat or
               output gives 1.0 (the original's NaN guard)
    grads    = grads * min(1, max_grad_norm / (||grads|| + 1e-6))   (torch clip_grad_norm_)
    update   = -lr * mult[g] * (adam(grads) + weight_decay * param)
               (AdamW: torch's bias-corrected m / (sqrt(v) + eps), decoupled decay on every leaf)
  every meta_every steps, after the evaluation (`meta_update`, from the trainer's host_update):
    record (val_loss, mult) in a window of `history` entries (oldest first)
    m        = controller mult of stats [0, ||param_g||, depth_g] (the gradients are cleared
               before the original recomputes its stats, so the grad norm input is 0)
    loss(m)  = mean((m - 1)^2)                                      with < 10 records
             = mean((m - mult_last)^2)          if loss[oldest] - loss[newest] > 0.001
             = mean((m - 1)^2) - 0.1 mean|m - 1|                   otherwise
    controller <- controller - meta_lr * adam(clip(grad loss, 1.0))

The momentum network (the original's DirectUpdateMLP, widths 4 -> min(hidden, 20) x M -> 1) is
built and kept in the state, but nothing reads it: in this configuration the original never
routes a gradient to it. It is built first from the same key chain as the controller, so its
depth M changes the controller's initialisation, as in the original.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgpt.optim.nested import groups as groups_lib
from jaxgpt.optim.nested import mlp

MIN_HISTORY = 10  # the original's SimplifiedMetaTrainer: fewer records -> regularisation only
IMPROVEMENT = 0.001  # its improvement threshold
MIN_MULT, MAX_MULT = 0.1, 2.0
MOMENTUM_HIDDEN_CAP = 20  # DirectUpdateMLP(hidden_dim=min(momentum_hidden_dim, 20))


class SeedState(NamedTuple):
  count: jax.Array  # int32 (), optimizer steps done
  adam: optax.ScaleByAdamState  # the base AdamW's moments
  mults: jax.Array  # float32 [2]: the multipliers of the last step (core, embed)
  controller: Any  # MLP 3 -> hidden x C -> 1
  controller_adam: optax.ScaleByAdamState  # the meta optimizer's moments
  momentum_net: Any  # MLP 4 -> min(hidden, 20) x M -> 1 (never used, as in the original)
  hist_loss: jax.Array  # float32 [history]: recorded validation losses, oldest first
  hist_mult: jax.Array  # float32 [history, 2]: the multipliers recorded with them
  hist_len: jax.Array  # int32 (): records held (<= history)
  meta_lr: jax.Array  # float32 (): the meta optimizer's learning rate (traced in cohorts)

  def log_metrics(self) -> dict:
    return {"opt/lr_mult_core": self.mults[0], "opt/lr_mult_embed": self.mults[1]}


@dataclasses.dataclass(frozen=True)
class SeedSettings:
  """The settings of mode "seed"; numeric ones may be traced scalars (cohorts)."""
  lr: Any = 3e-4
  b1: Any = 0.9
  b2: Any = 0.999
  eps: float = 1e-8
  weight_decay: Any = 0.2
  max_grad_norm: float = 1.0
  meta_lr: Any = 1e-4
  momentum_layers: int = 2
  momentum_hidden: int = 64
  controller_layers: int = 2
  controller_hidden: int = 32
  history: int = 50
  init_seed: int = 0


def key_from_params(params: Any, salt: int) -> jax.Array:
  """A PRNG key from the bits of the initial parameters (so it follows `train.seed`, and
  differs per cohort trial without extra plumbing), with `salt` folded in."""
  h = jnp.uint32(0)
  for x in jax.tree.leaves(params):
    bits = jax.lax.bitcast_convert_type(jnp.asarray(x, jnp.float32), jnp.uint32)
    h = h * jnp.uint32(2654435761) + jnp.sum(bits, dtype=jnp.uint32)
  return jax.random.fold_in(jax.random.PRNGKey(salt), h)


def init_nets(key: jax.Array, s: SeedSettings) -> tuple[Any, Any]:
  """(momentum net, controller) drawn from one key chain, the momentum net first."""
  hidden = min(s.momentum_hidden, MOMENTUM_HIDDEN_CAP)
  mom, key = mlp.init_chain(key, mlp.widths(4, hidden, s.momentum_layers, 1))
  out_w = jnp.zeros((hidden, 1), jnp.float32).at[1, 0].set(0.1)  # the original's output init
  mom = mlp.with_output(mom, w=out_w, b=jnp.zeros((1,)))
  ctrl, _ = mlp.init_chain(key, mlp.widths(3, s.controller_hidden, s.controller_layers, 1))
  return mom, ctrl


def controller_mults(ctrl: Any, stats_g3: jax.Array) -> jax.Array:
  """float32 [2] in [0.1, 2]: the original's NestedController on stats [2, 3] (ReLU MLP)."""
  finite = jnp.isfinite(stats_g3)
  out = mlp.apply(ctrl, jnp.where(finite, stats_g3, 1.0), jax.nn.relu)[..., 0]
  m = jnp.clip(MIN_MULT + (MAX_MULT - MIN_MULT) * jax.nn.sigmoid(out), MIN_MULT, MAX_MULT)
  m = jnp.where(jnp.isfinite(m), m, 1.0)
  return jnp.where(jnp.all(finite), m, 1.0)


def torch_clip(tree: Any, max_norm: float) -> tuple[Any, jax.Array]:
  """(tree * min(1, max_norm / (||tree|| + 1e-6)), ||tree||): torch's clip_grad_norm_."""
  norm = optax.tree.norm(tree)
  coef = jnp.minimum(1.0, max_norm / (norm + 1e-6))
  return jax.tree.map(lambda x: (x * coef).astype(x.dtype), tree), norm


def scale_by_seed_nested(s: SeedSettings) -> optax.GradientTransformation:
  """The original's per-step update (module docstring): returns the parameter update itself
  (learning rate and sign included)."""
  adam = optax.scale_by_adam(b1=s.b1, b2=s.b2, eps=s.eps)

  def init_fn(params):
    mom, ctrl = init_nets(key_from_params(params, s.init_seed), s)
    return SeedState(
        count=jnp.zeros((), jnp.int32), adam=adam.init(params),
        mults=jnp.ones((2,), jnp.float32), controller=ctrl,
        controller_adam=optax.scale_by_adam().init(ctrl), momentum_net=mom,
        hist_loss=jnp.zeros((s.history,), jnp.float32),
        hist_mult=jnp.zeros((s.history, 2), jnp.float32), hist_len=jnp.zeros((), jnp.int32),
        meta_lr=jnp.asarray(s.meta_lr, jnp.float32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("deep_nested needs params: call update(updates, state, params)")
    g = groups_lib.groups(updates)
    mults = controller_mults(state.controller, groups_lib.group_stats(updates, params, g))
    clipped, _ = torch_clip(updates, s.max_grad_norm)
    direction, adam_state = adam.update(clipped, state.adam)
    leaves, treedef = jax.tree.flatten(direction)
    lrs = groups_lib.per_leaf(s.lr * mults, g.index)
    out = [(-lr * (d + s.weight_decay * p)).astype(p.dtype)
           for d, p, lr in zip(leaves, jax.tree.leaves(params), lrs)]
    return treedef.unflatten(out), state._replace(
        count=optax.safe_increment(state.count), adam=adam_state, mults=mults)

  return optax.GradientTransformation(init_fn, update_fn)


def record(state: SeedState, val_loss: jax.Array) -> SeedState:
  """Appends (val_loss, the last step's multipliers) to the window, dropping the oldest."""
  full = state.hist_len >= state.hist_loss.shape[0]
  at = jnp.minimum(state.hist_len, state.hist_loss.shape[0] - 1)
  loss = jnp.where(full, jnp.roll(state.hist_loss, -1), state.hist_loss)
  mult = jnp.where(full, jnp.roll(state.hist_mult, -1, axis=0), state.hist_mult)
  return state._replace(
      hist_loss=loss.at[at].set(jnp.asarray(val_loss, jnp.float32)),
      hist_mult=mult.at[at].set(state.mults),
      hist_len=jnp.minimum(state.hist_len + 1, state.hist_loss.shape[0]))


def proxy_loss(m: jax.Array, hist_loss: jax.Array, hist_mult: jax.Array,
               hist_len: jax.Array) -> jax.Array:
  """The original's SimplifiedMetaTrainer.compute_proxy_loss (module docstring), branch-free."""
  newest = jnp.maximum(hist_len - 1, 0)
  regular = jnp.mean(jnp.square(m - 1.0))
  keep = jnp.mean(jnp.square(m - hist_mult[newest]))
  explore = regular - 0.1 * jnp.mean(jnp.abs(m - 1.0))
  improving = hist_loss[0] - hist_loss[newest] > IMPROVEMENT
  return jnp.where(hist_len < MIN_HISTORY, regular, jnp.where(improving, keep, explore))


def meta_update(state: SeedState, params: Any, val_loss: jax.Array) -> SeedState:
  """One meta-update of the controller from a validation loss (module docstring)."""
  state = record(state, val_loss)
  stats = groups_lib.group_stats(None, params, groups_lib.groups(params))

  def loss_fn(ctrl):
    return proxy_loss(controller_mults(ctrl, stats), state.hist_loss, state.hist_mult,
                      state.hist_len)

  grads, _ = torch_clip(jax.grad(loss_fn)(state.controller), 1.0)
  step, adam_state = optax.scale_by_adam().update(grads, state.controller_adam)
  ctrl = jax.tree.map(lambda p, u: p - state.meta_lr * u, state.controller, step)
  return state._replace(controller=ctrl, controller_adam=adam_state)
