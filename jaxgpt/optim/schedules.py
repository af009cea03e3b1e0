"""Learning-rate schedules on the one training clock.

Every schedule is a pure function of `progress` in [0, 1] (docs/design.md "One training clock":
`progress = max(step / train.steps, train_time_s / train.max_time_s)`), returning a multiplier
of the base learning rate. Because progress reaches 1 at the step budget or at the time cap,
whichever binds first, a time-capped run always completes its decay. A schedule driven by the
time term is not bit-reproducible (wall time varies); one driven by steps is.

  constant  linear warm-up, then 1
  cosine    linear warm-up, then cosine from 1 to final_lr_frac
  linear    linear warm-up, then linear from 1 to final_lr_frac
  wsd       linear warm-up, constant, then linear decay to final_lr_frac over the last
            `decay_frac` of training (warm-up / stable / decay, the "trapezoid")
  tidal     linear warm-up over the first 38.2% of training, then cosine to final_lr_frac over
            the remaining 61.8% (the Tidal LR of parameter-golf PR #1434; `warmup_frac` is not used)
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxgpt import registry

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


# The fractions may be traced scalars (a vmapped cohort of trials that differ in them): no Python
# branch reads their values, and for Python floats the results are bit-identical to branching.
def _warmup(progress, warmup_frac):
  ramp = jnp.minimum(1.0, progress / jnp.maximum(warmup_frac, 1e-12))
  return jnp.where(jnp.asarray(warmup_frac) > 0, ramp, jnp.ones_like(progress))


def _after_warmup(progress, warmup_frac):
  """Fraction of the post-warm-up span elapsed, in [0, 1]."""
  span = jnp.maximum(1.0 - warmup_frac, 1e-12)
  return jnp.clip((progress - warmup_frac) / span, 0.0, 1.0)


def constant(warmup_frac: float = 0.0) -> Schedule:
  return lambda p: _warmup(jnp.asarray(p, jnp.float32), warmup_frac)


def cosine(warmup_frac: float = 0.0, final_lr_frac: float = 0.0) -> Schedule:
  def fn(p):
    p = jnp.asarray(p, jnp.float32)
    t = _after_warmup(p, warmup_frac)
    decay = final_lr_frac + (1.0 - final_lr_frac) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
    return jnp.where(p < warmup_frac, _warmup(p, warmup_frac), decay)
  return fn


def linear(warmup_frac: float = 0.0, final_lr_frac: float = 0.0) -> Schedule:
  def fn(p):
    p = jnp.asarray(p, jnp.float32)
    t = _after_warmup(p, warmup_frac)
    decay = 1.0 + (final_lr_frac - 1.0) * t
    return jnp.where(p < warmup_frac, _warmup(p, warmup_frac), decay)
  return fn


def wsd(warmup_frac: float = 0.0, decay_frac: float = 0.2, final_lr_frac: float = 0.0) -> Schedule:
  def fn(p):
    p = jnp.asarray(p, jnp.float32)
    start = 1.0 - decay_frac
    t = jnp.clip((p - start) / jnp.maximum(decay_frac, 1e-12), 0.0, 1.0)
    decay = 1.0 + (final_lr_frac - 1.0) * t
    return jnp.where(p < warmup_frac, _warmup(p, warmup_frac), decay)
  return fn


TIDAL_PEAK = 0.382  # Tidal: the warm-up ends (and the cosine starts) at 38.2% of training


def tidal(final_lr_frac: float = 0.0) -> Schedule:
  """Linear warm-up for 38.2% of training, then cosine decay to final_lr_frac."""
  return cosine(TIDAL_PEAK, final_lr_frac)


# Each schedule, built from `config.optimizer` (or a view of it with traced fractions).
for _name, _build in (
    ("constant", lambda o: constant(o.warmup_frac)),
    ("cosine", lambda o: cosine(o.warmup_frac, o.final_lr_frac)),
    ("linear", lambda o: linear(o.warmup_frac, o.final_lr_frac)),
    ("wsd", lambda o: wsd(o.warmup_frac, o.decay_frac, o.final_lr_frac)),
    ("tidal", lambda o: tidal(o.final_lr_frac)),
):
  registry.SCHEDULES.register(_name, registry.Schedule(build=_build))
SCHEDULES = registry.SCHEDULES.names()


def from_config(opt_cfg) -> Schedule:
  """The schedule named by `optimizer.schedule`, with its fractions from the same config."""
  return registry.SCHEDULES.get(opt_cfg.schedule).build(opt_cfg)


def progress(step, steps: int, train_time_s=None, max_time_s: float | None = None):
  """The one training clock: max(step / steps, train_time_s / max_time_s), clipped to [0, 1]."""
  p = step / steps
  if max_time_s is not None and train_time_s is not None:
    p = max(p, train_time_s / max_time_s)
  return min(max(p, 0.0), 1.0)
