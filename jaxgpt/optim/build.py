"""The optimizer a config asks for, as one optax chain whose learning rate follows `progress`.

The chain is `clip -> optimizer (base learning rates) -> scale by schedule(progress)`. The last
transform reads the traced `progress` passed as an extra argument to `update`, so the jitted step
never recompiles when the schedule moves and a time-capped run completes its decay. The weight
decay term sits inside the optimizer, so the schedule scales it as well (as PyTorch's
`p -= lr * wd * p` with a scheduled lr does).

`hparams` (a dict of scalars, possibly traced) overrides the numeric hyperparameters named in
`TRACED_OPTIMIZER_KEYS`: a vmapped cohort of trials builds the chain inside `jax.vmap` from
each trial's values. Every Python branch reads static config values only, so the state's
structure never depends on a traced value.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxgpt.keypath import path_str
from jaxgpt.optim import muon as muon_lib
from jaxgpt.optim import partition, schedules


def scale_by_progress_schedule(schedule: Callable[[jnp.ndarray], jnp.ndarray]
                               ) -> optax.GradientTransformationExtraArgs:
  """Multiplies updates by `schedule(progress)`; `progress` is an extra argument of update."""

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, progress, **extra_args):
    del params, extra_args
    mult = schedule(progress)
    return jax.tree.map(lambda u: u * mult.astype(u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def weight_decay_mask(params: Any) -> Any:
  """Decay dense kernels (matrices); never embeddings, norms, gains, biases or scalars."""
  def decays(path, leaf):
    name = path_str(path)
    return name.endswith("kernel") and jnp.ndim(leaf) >= 2
  return jax.tree_util.tree_map_with_path(decays, params)


# Numeric optimizer keys that `build_optimizer(..., hparams=...)` may take as traced scalars.
TRACED_OPTIMIZER_KEYS = ("lr", "embed_lr", "head_lr", "scalar_lr", "momentum", "weight_decay",
                         "b1", "b2", "beta2", "warmup_frac", "decay_frac", "final_lr_frac")


class _Overlay:
  """Attribute view of `config.optimizer` with some values replaced (e.g. by tracers)."""

  def __init__(self, cfg, values: dict):
    self._cfg, self._values = cfg, values

  def __getattr__(self, key):
    if key in self._values:
      return self._values[key]
    return getattr(self._cfg, key)


def _muon_with_adamw(o) -> optax.GradientTransformation:
  """Muon on hidden matrices, AdamW (no weight decay) on embeddings, the head and vectors.

  Which leaf goes where, and each Muon leaf's fan_in / fan_out / batch axes, comes from the
  rules in `jaxgpt.optim.partition`; `optimizer.embed_lr`, `head_lr`, `scalar_lr` default to
  `optimizer.lr` when unset.
  """
  adam = lambda lr: optax.adam(lr if lr is not None else o.lr, b1=o.b1, b2=o.b2, eps=o.eps)
  transforms = {
      partition.MUON: muon_lib.muon(
          o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov,
          momentum_style=o.momentum_style, momentum_warmup_steps=o.momentum_warmup_steps,
          orthogonalizer=o.orthogonalize, ns_steps=o.ns_steps, update_scale=o.update_scale,
          variance_reduction=o.variance_reduction, beta2=o.beta2, cautious_wd=o.cautious_wd,
          dimension_numbers=partition.muon_dims_fn(), matrix_sharding=o.matrix_sharding),
      partition.ADAMW_EMBED: adam(o.embed_lr),
      partition.ADAMW_HEAD: adam(o.head_lr),
      partition.ADAMW_SCALAR: adam(o.scalar_lr),
  }
  return partition.multi_transform(transforms)


def build_optimizer(opt_cfg, hparams: dict | None = None
                    ) -> optax.GradientTransformationExtraArgs:
  """optax chain for `config.optimizer`; call `update(..., progress=p)`.

  `hparams`: optional {key: scalar} for keys of `TRACED_OPTIMIZER_KEYS`, used instead of the
  config's values (they may be tracers; an unset embed/head/scalar lr falls back to `lr`).
  """
  if hparams:
    unknown = sorted(set(hparams) - set(TRACED_OPTIMIZER_KEYS))
    if unknown:
      raise ValueError(f"hparams {unknown} are not traceable optimizer keys; allowed: "
                       f"{TRACED_OPTIMIZER_KEYS}")
    opt_cfg = _Overlay(opt_cfg, hparams)
  parts = []
  if opt_cfg.grad_clip and opt_cfg.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip))
  if opt_cfg.name == "adamw":
    parts.append(optax.adamw(learning_rate=opt_cfg.lr, b1=opt_cfg.b1, b2=opt_cfg.b2,
                             eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay,
                             mask=weight_decay_mask))
  elif opt_cfg.name == "muon":
    parts.append(_muon_with_adamw(opt_cfg))
  else:
    raise ValueError(f"optimizer.name={opt_cfg.name!r} is not one of 'adamw', 'muon'")
  parts.append(scale_by_progress_schedule(schedules.from_config(opt_cfg)))
  return optax.chain(*parts)


def learning_rate(opt_cfg, progress: float) -> float:
  """The base learning rate times the schedule at `progress`, for logging."""
  return float(opt_cfg.lr * schedules.from_config(opt_cfg)(progress))
