"""`optimizer.name="deep_nested"`: the nested grid's DeepNestedOptimizer and deep momentum (DMGD).

`optimizer.nested.mode` picks what it computes (docs/nested.md):
- "seed" (`seed.py`): AdamW with two per-group LR multipliers from a controller MLP, the
  controller trained by the nested grid's proxy loss every `nested.meta_every` steps from the
  validation loss (this module's `host_update`, which the training loop calls after every
  periodic evaluation); the momentum network is built with M layers and never used.
- "dmgd" (`dmgd.py`): deep momentum gradient descent, its momentum MLP and controller
  trained online by a one-step-lookahead hypergradient; optional Newton-Schulz on
  Muon-labelled matrices (Muon is its linear-EMA case).

Both are optax transforms whose state is a NamedTuple of arrays (Orbax saves it; jit- and
vmap-safe). In a cohort the learning rates, weight decay, betas and `nested.meta_lr` are traced;
the depths M and C and the hidden widths change the state's structure, so they are static keys
and a sweep over them runs one cohort per (M, C) value.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgpt import checks, registry
from jaxgpt.errors import ConfigError
from jaxgpt.optim import muon as muon_lib
from jaxgpt.optim.nested import dmgd as dmgd_lib
from jaxgpt.optim.nested import seed as seed_lib
from jaxgpt.optim.nested.dmgd import DmgdSettings, DmgdState, scale_by_dmgd
from jaxgpt.optim.nested.seed import SeedSettings, SeedState, scale_by_seed_nested

MODES = ("seed", "dmgd")


def seed_settings(o) -> SeedSettings:
  n = o.nested
  return SeedSettings(
      lr=o.lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
      max_grad_norm=n.max_grad_norm, meta_lr=o["nested.meta_lr"],
      momentum_layers=n.momentum_layers, momentum_hidden=n.momentum_hidden,
      controller_layers=n.controller_layers, controller_hidden=n.controller_hidden,
      history=n.history, init_seed=n.init_seed)


def dmgd_settings(o) -> DmgdSettings:
  n = o.nested
  return DmgdSettings(
      lr=o.lr, embed_lr=o.embed_lr, head_lr=o.head_lr, scalar_lr=o.scalar_lr,
      weight_decay=o.weight_decay, meta_lr=o["nested.meta_lr"], meta_clip=n.meta_clip,
      momentum_init=n.momentum_init, momentum_layers=n.momentum_layers,
      momentum_hidden=n.momentum_hidden, controller_layers=n.controller_layers,
      controller_hidden=n.controller_hidden, newton_schulz=n.newton_schulz,
      orthogonalizer=o.orthogonalize, ns_steps=o.ns_steps, update_scale=o.update_scale,
      init_seed=n.init_seed)


def build(o) -> optax.GradientTransformation:
  """The transform of `config.optimizer` (or a view of it with traced values)."""
  if o.nested.mode == "seed":
    return scale_by_seed_nested(seed_settings(o))
  return scale_by_dmgd(dmgd_settings(o))


# ------------------------------------------------------------------------------------------
# The nested grid's meta-update (mode "seed"), from the training loop's periodic callback.

def _is_seed_state(x) -> bool:
  return isinstance(x, SeedState)


def _meta_all(opt_state: Any, params: Any, val_loss: jax.Array) -> Any:
  return jax.tree.map(lambda s: seed_lib.meta_update(s, params, val_loss) if _is_seed_state(s)
                      else s, opt_state, is_leaf=_is_seed_state)


@functools.lru_cache(maxsize=None)
def _meta_fn(stacked: bool):
  return jax.jit(jax.vmap(_meta_all) if stacked else _meta_all)


def host_update(opt_cfg, state, step: int, evals: list) -> Any:
  """Seed mode: a meta-update at every evaluation whose step is a multiple of
  `nested.meta_every`, from each trial's `val_loss`. `state` is the TrainState, or a cohort's
  stacked one (a leading trial axis on every leaf, one entry of `evals` per trial)."""
  if opt_cfg.nested.mode != "seed" or step % opt_cfg.nested.meta_every:
    return state
  stacked = np.ndim(state.step) == 1
  losses = jnp.asarray([e["val_loss"] for e in evals], jnp.float32)
  new = _meta_fn(stacked)(state.opt_state, state.params, losses if stacked else losses[0])
  # Keep every leaf where it was: the compiled train step expects the same placement.
  new = jax.tree.map(lambda a, b: jax.device_put(a, b.sharding)
                     if isinstance(b, jax.Array) else a, new, state.opt_state)
  return state.replace(opt_state=new)


# ------------------------------------------------------------------------------------------
# Memory of the optimizer state.

def state_bytes(opt_state: Any) -> dict[str, int]:
  """Bytes of an optimizer state (arrays or ShapeDtypeStructs): `total`, and for the nested
  states the parts that scale with the parameters (`param_sized`) and the learned nets'."""
  nbytes = lambda t: int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize
                             for x in jax.tree.leaves(t)))
  out = {"total": nbytes(opt_state)}
  for node in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, (SeedState,
                                                                           DmgdState))):
    if isinstance(node, SeedState):
      out["param_sized"] = nbytes((node.adam.mu, node.adam.nu))
      out["nets"] = nbytes((node.controller, node.controller_adam, node.momentum_net))
    elif isinstance(node, DmgdState):
      out["param_sized"] = nbytes((node.v, node.v_prev, node.g_prev))
      out["nets"] = nbytes((node.theta, node.theta_adam))
  return out


# ------------------------------------------------------------------------------------------
# Config check.

def check(config) -> None:
  """Every `optimizer.nested.*` key, and what deep_nested needs of the rest."""
  o, n = config.optimizer, config.optimizer.nested
  k = "optimizer.nested."
  seed = checks.one_of(k + "mode", n.mode, MODES) == "seed"
  checks.integer(k + "momentum_layers", n.momentum_layers, 1 if seed else 0)
  checks.integer(k + "momentum_hidden", n.momentum_hidden, 2)
  checks.integer(k + "controller_layers", n.controller_layers, 1 if seed else 0)
  checks.integer(k + "controller_hidden", n.controller_hidden, 1)
  checks.integer(k + "history", n.history, 1)
  checks.integer(k + "meta_every", n.meta_every, 1)
  checks.integer(k + "init_seed", n.init_seed, 0)
  checks.positive(k + "meta_lr", n.meta_lr, allow_zero=True)
  checks.positive(k + "max_grad_norm", n.max_grad_norm)
  checks.positive(k + "meta_clip", n.meta_clip)
  checks.number(k + "momentum_init", n.momentum_init, 0.0, 1.0, low_open=True, high_open=True)
  checks.boolean(k + "newton_schulz", n.newton_schulz)
  if seed:
    if o.grad_clip:
      raise ConfigError(
          f"optimizer.grad_clip={o.grad_clip!r} must be 0 with optimizer.nested.mode='seed': "
          "it clips after taking its gradient-norm statistics, at "
          f"optimizer.nested.max_grad_norm={n.max_grad_norm!r}")
    if n.meta_every % config.train.eval_every:
      raise ConfigError(
          f"optimizer.nested.meta_every={n.meta_every!r} must be a multiple of "
          f"train.eval_every={config.train.eval_every!r}: the meta-update runs after "
          "evaluations")
    if n.newton_schulz:
      raise ConfigError("optimizer.nested.newton_schulz=True needs "
                        "optimizer.nested.mode='dmgd'")
  elif n.newton_schulz:
    muon_lib.check_config(config)  # the orthogonalizer's keys, as Muon reads them


registry.OPTIMIZERS.register("deep_nested", registry.Optimizer(build=build, check=check,
                                                               host_update=host_update))

__all__ = ["DmgdSettings", "DmgdState", "MODES", "SeedSettings", "SeedState", "build", "check",
           "dmgd_lib", "dmgd_settings", "host_update", "scale_by_dmgd", "scale_by_seed_nested",
           "seed_lib", "seed_settings", "state_bytes"]
