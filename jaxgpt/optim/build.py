"""The optimizer a config asks for, as one optax chain whose learning rate follows `progress`.

The chain is `clip -> optimizer (base learning rates) -> scale by schedule(progress[, step])
[-> projection every optimizer.lazy_proj_freq steps]`. The optimizer comes from
`registry.OPTIMIZERS` (`adamw.py`, `muon.py` register theirs), the schedule from
`registry.SCHEDULES` (`schedules.py`). The schedule transform reads the traced `progress` passed
as an extra argument to `update`, so the jitted step never recompiles when the schedule moves
and a time-capped run completes its decay. A schedule that also reads the step
(`optimizer.schedule_steps`, `optimizer.decay_steps`) gets it from a count in the transform's
state. The weight decay term sits inside the optimizer, so the schedule scales it as well (as
PyTorch's `p -= lr * wd * p` with a scheduled lr does).

`hparams` (a dict of scalars, possibly traced) overrides the numeric hyperparameters named in
`TRACED_OPTIMIZER_KEYS`: a vmapped cohort of trials builds the chain inside `jax.vmap` from
each trial's values. Every Python branch reads static config values only, so the state's
structure never depends on a traced value.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxgpt import registry
from jaxgpt.optim import adamw, muon, schedules  # noqa: F401 - importing registers them
from jaxgpt.optim.projection import project_every


class ScheduleStepState(NamedTuple):
  """The schedule transform's state when its schedule reads the step: steps taken so far."""
  count: jnp.ndarray  # int32 scalar


def scale_by_progress_schedule(schedule: Callable[..., jnp.ndarray], counts_steps: bool = False
                               ) -> optax.GradientTransformationExtraArgs:
  """Multiplies updates by `schedule(progress)`; `progress` is an extra argument of update.

  `counts_steps` (`schedules.uses_step`: `optimizer.schedule_steps` or `decay_steps` set): the
  state counts the updates applied and the multiplier is `schedule(progress, step)`, `step` the
  steps done before this one (the loop's `step`, restored with the state on resume). Otherwise
  the state is empty, as in checkpoints written before the count existed.
  """

  def init_fn(params):
    del params
    return ScheduleStepState(jnp.zeros((), jnp.int32)) if counts_steps else optax.EmptyState()

  def update_fn(updates, state, params=None, *, progress, **extra_args):
    del params, extra_args
    if counts_steps:
      mult = schedule(progress, state.count)
      state = ScheduleStepState(optax.safe_int32_increment(state.count))
    else:
      mult = schedule(progress)
    return jax.tree.map(lambda u: u * mult.astype(u.dtype), updates), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Numeric optimizer keys that `build_optimizer(..., hparams=...)` may take as traced scalars.
TRACED_OPTIMIZER_KEYS = ("lr", "embed_lr", "head_lr", "scalar_lr", "momentum", "weight_decay",
                         "b1", "b2", "beta2", "warmup_frac", "decay_frac", "final_lr_frac",
                         "initial_lr_frac", "lazy_proj_freq", "nested.meta_lr")


class _Overlay:
  """Attribute view of `config.optimizer` with some values replaced (e.g. by tracers)."""

  def __init__(self, cfg, values: dict):
    self._cfg, self._values = cfg, values

  def __getattr__(self, key):
    if key in self._values:
      return self._values[key]
    return getattr(self._cfg, key)

  def __getitem__(self, key):
    return getattr(self, key)


def traced_config(opt_cfg, hparams: dict):
  """`config.optimizer` as an attribute view whose `hparams` (keys of TRACED_OPTIMIZER_KEYS,
  values possibly tracers) replace the config's values: what a cohort trial's optimizer and
  schedule read."""
  unknown = sorted(set(hparams) - set(TRACED_OPTIMIZER_KEYS))
  if unknown:
    raise ValueError(f"hparams {unknown} are not traceable optimizer keys; allowed: "
                     f"{TRACED_OPTIMIZER_KEYS}")
  return _Overlay(opt_cfg, hparams)


def build_optimizer(opt_cfg, hparams: dict | None = None,
                    projection: Callable[[Any], Any] | None = None
                    ) -> optax.GradientTransformationExtraArgs:
  """optax chain for `config.optimizer`; call `update(..., progress=p)`.

  `hparams`: optional {key: scalar} for keys of `TRACED_OPTIMIZER_KEYS`, used instead of the
  config's values (they may be tracers; an unset embed/head/scalar lr falls back to `lr`).
  `projection`: the model family's params -> params constraint (nGPT's sphere), applied every
  `optimizer.lazy_proj_freq` steps as the chain's last transform; None for none.
  """
  if hparams:
    opt_cfg = traced_config(opt_cfg, hparams)
  parts = []
  if opt_cfg.grad_clip and opt_cfg.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip))
  parts.append(registry.OPTIMIZERS.get(opt_cfg.name).build(opt_cfg))
  parts.append(scale_by_progress_schedule(schedules.from_config(opt_cfg),
                                          schedules.uses_step(opt_cfg)))
  tx = optax.chain(*parts)
  if projection is not None:  # e.g. nGPT: back onto the sphere every lazy_proj_freq steps
    tx = optax.chain(tx, project_every(projection, opt_cfg.lazy_proj_freq))
  return tx


def learning_rate(opt_cfg, progress: float, step: int | None = None) -> float:
  """The base learning rate times the schedule at `progress`, for logging. `step` (steps done
  before the step that read `progress`) is needed when the schedule reads it
  (`schedules.uses_step`: `optimizer.schedule_steps` or `decay_steps` set)."""
  return float(opt_cfg.lr * schedules.from_config(opt_cfg)(progress, step))
