"""Learning-rate schedules on the one training clock.

Every schedule is a pure function of a progress in [0, 1], returning a multiplier of the base
learning rate. By default that progress is the training clock's (docs/design.md "One training
clock": `progress = max(step / train.steps, train_time_s / train.max_time_s)`): it reaches 1 at
the step budget or at the time cap, whichever binds first, so a time-capped run always completes
its decay. A schedule driven by the time term is not bit-reproducible (wall time varies); one
driven by steps is.

  constant  linear warm-up, then 1
  cosine    linear warm-up, then cosine from 1 to final_lr_frac
  linear    linear warm-up, then linear from 1 to final_lr_frac
  wsd       linear warm-up, constant, then linear decay to final_lr_frac over the last
            `decay_frac` of training (warm-up / stable / decay, the "trapezoid"), or over the
            last `decay_steps` iterations (parameter-golf's WARMDOWN_ITERS, below)
  tidal     linear warm-up over the first 38.2% of training, then cosine to final_lr_frac over
            the remaining 61.8% (the Tidal LR of parameter-golf PR #1434; `warmup_frac` is not
            used). PR #1434's own multiplier goes 0.1 -> 1 -> 0.1: initial_lr_frac =
            final_lr_frac = 0.1

Every warm-up rises linearly from `initial_lr_frac` (default 0: from zero) to 1.

Two keys change the clock a schedule reads; both need the step, which the schedule transform
counts in its state (`optim.build`), and so does the logged learning rate (`learning_rate`):

- `optimizer.schedule_steps` S (default None): the schedule's horizon in steps, apart from the
  stop. The schedule reads q = min(1, step / S) and the time term is not used; the run still
  stops at `train.steps` or `train.max_time_s`, whichever comes first, possibly before q = 1.
  PR #1434's runs ("ITERATIONS=400", stopped by the 600 s cap at about step 276) are S = 400
  and the cap: their multiplier stopped at tidal(276 / 400). A step budget beyond S holds the
  schedule's end value. Bit-reproducible whatever the cap.
- `optimizer.decay_steps` D (default None; `wsd` only): the decay spans the last D iterations
  instead of the last `decay_frac` of the clock: decay_frac = D / N, where N = step / q is the
  run's length in steps at the current pace: `train.steps` when the step budget binds (or S
  with schedule_steps), `train.max_time_s` / (mean step time so far) when the time cap binds:
  the measured mean, or `train.step_time_s` when set. So under the cap the iterations become
  training time by the step time and the multiplier reaches final_lr_frac at the cap, as
  parameter-golf's wall-clock-aware warm-down does (final_lr_frac = 0, warmup_frac = 0 and
  D = 1,200, its default; `configs/param_golf.py:warmdown`). At step 0 (no pace yet) the
  multiplier is the warm-up's, i.e. 1 without one.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jaxgpt import registry
from jaxgpt.errors import ConfigError

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


# The fractions may be traced scalars (a vmapped cohort of trials that differ in them): no Python
# branch reads their values, and for Python floats the results are bit-identical to branching
# (and, with initial_lr_frac = 0, to the warm-up from zero: 0 + 1 * ramp is ramp exactly).
def _warmup(progress, warmup_frac, initial_lr_frac=0.0):
  """initial_lr_frac + (1 - initial_lr_frac) min(1, progress / warmup_frac); 1 if no warm-up."""
  ramp = jnp.minimum(1.0, progress / jnp.maximum(warmup_frac, 1e-12))
  ramp = initial_lr_frac + (1.0 - initial_lr_frac) * ramp
  return jnp.where(jnp.asarray(warmup_frac) > 0, ramp, jnp.ones_like(progress))


def _after_warmup(progress, warmup_frac):
  """Fraction of the post-warm-up span elapsed, in [0, 1]."""
  span = jnp.maximum(1.0 - warmup_frac, 1e-12)
  return jnp.clip((progress - warmup_frac) / span, 0.0, 1.0)


def constant(warmup_frac: float = 0.0, initial_lr_frac: float = 0.0) -> Schedule:
  return lambda p: _warmup(jnp.asarray(p, jnp.float32), warmup_frac, initial_lr_frac)


def cosine(warmup_frac: float = 0.0, final_lr_frac: float = 0.0,
           initial_lr_frac: float = 0.0) -> Schedule:
  def fn(p):
    p = jnp.asarray(p, jnp.float32)
    t = _after_warmup(p, warmup_frac)
    decay = final_lr_frac + (1.0 - final_lr_frac) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
    return jnp.where(p < warmup_frac, _warmup(p, warmup_frac, initial_lr_frac), decay)
  return fn


def linear(warmup_frac: float = 0.0, final_lr_frac: float = 0.0,
           initial_lr_frac: float = 0.0) -> Schedule:
  def fn(p):
    p = jnp.asarray(p, jnp.float32)
    t = _after_warmup(p, warmup_frac)
    decay = 1.0 + (final_lr_frac - 1.0) * t
    return jnp.where(p < warmup_frac, _warmup(p, warmup_frac, initial_lr_frac), decay)
  return fn


def wsd(warmup_frac: float = 0.0, decay_frac: float = 0.2, final_lr_frac: float = 0.0,
        initial_lr_frac: float = 0.0) -> Schedule:
  def fn(p):
    p = jnp.asarray(p, jnp.float32)
    start = 1.0 - decay_frac
    t = jnp.clip((p - start) / jnp.maximum(decay_frac, 1e-12), 0.0, 1.0)
    decay = 1.0 + (final_lr_frac - 1.0) * t
    return jnp.where(p < warmup_frac, _warmup(p, warmup_frac, initial_lr_frac), decay)
  return fn


TIDAL_PEAK = 0.382  # Tidal: the warm-up ends (and the cosine starts) at 38.2% of training


def tidal(final_lr_frac: float = 0.0, initial_lr_frac: float = 0.0) -> Schedule:
  """Linear warm-up from initial_lr_frac to 1 over 38.2% of training, then cosine decay to
  final_lr_frac. PR #1434's `lr_mul`: initial_lr_frac = final_lr_frac = 0.1."""
  return cosine(TIDAL_PEAK, final_lr_frac, initial_lr_frac)


def _key(opt_cfg, key: str, default=None):
  """`opt_cfg[key]`, or `default` where the view has no such key (a hand-built dict, a config
  saved before the key existed)."""
  try:
    return opt_cfg[key]
  except (KeyError, AttributeError):
    return default


class _With:
  """Attribute view of `config.optimizer` with some values replaced (e.g. by tracers)."""

  def __init__(self, cfg, values: dict):
    self._cfg, self._values = cfg, values

  def __getattr__(self, key):
    return self._values[key] if key in self._values else getattr(self._cfg, key)

  def __getitem__(self, key):
    return self._values[key] if key in self._values else self._cfg[key]


DECAY_STEPS_SCHEDULES = ("wsd",)  # the schedules `optimizer.decay_steps` applies to


def check_no_decay_steps(config) -> None:
  """`optimizer.decay_steps` is a length of the wsd decay; with another schedule it would be
  silently ignored, so it is refused naming the key."""
  o = config.optimizer
  if _key(o, "decay_steps") is not None and o.schedule not in DECAY_STEPS_SCHEDULES:
    raise ConfigError(f"optimizer.decay_steps={o.decay_steps!r} is the length of the wsd "
                      f"warm-down and means nothing with optimizer.schedule={o.schedule!r}; "
                      f"set optimizer.schedule='wsd' or optimizer.decay_steps=None")


# Each schedule, built from `config.optimizer` (or a view of it with traced fractions).
for _name, _build in (
    ("constant", lambda o: constant(o.warmup_frac, _key(o, "initial_lr_frac", 0.0))),
    ("cosine", lambda o: cosine(o.warmup_frac, o.final_lr_frac, _key(o, "initial_lr_frac", 0.0))),
    ("linear", lambda o: linear(o.warmup_frac, o.final_lr_frac, _key(o, "initial_lr_frac", 0.0))),
    ("wsd", lambda o: wsd(o.warmup_frac, o.decay_frac, o.final_lr_frac,
                          _key(o, "initial_lr_frac", 0.0))),
    ("tidal", lambda o: tidal(o.final_lr_frac, _key(o, "initial_lr_frac", 0.0))),
):
  _checks = {} if _name in DECAY_STEPS_SCHEDULES else {"check": check_no_decay_steps}
  registry.SCHEDULES.register(_name, registry.Schedule(build=_build, **_checks))
SCHEDULES = registry.SCHEDULES.names()


def uses_step(opt_cfg) -> bool:
  """Whether the schedule reads the step (`schedule_steps` or `decay_steps` set): the schedule
  transform then counts steps in its state."""
  return (_key(opt_cfg, "schedule_steps") is not None
          or _key(opt_cfg, "decay_steps") is not None)


def step_progress(step, schedule_steps: int):
  """The schedule's progress over a horizon of `schedule_steps`: min(1, step / schedule_steps)."""
  return jnp.minimum(jnp.asarray(step, jnp.float32) / schedule_steps, 1.0)


def decay_frac_of_steps(progress, step, decay_steps: int):
  """decay_frac spanning the last `decay_steps` iterations of N = step / progress (the run's
  length in steps at the current pace): decay_steps * progress / step; 0 at step 0 (no pace)."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.where(step > 0, decay_steps * jnp.asarray(progress, jnp.float32)
                   / jnp.maximum(step, 1.0), 0.0)


def from_config(opt_cfg) -> Callable:
  """The schedule named by `optimizer.schedule`, with its fractions from the same config, as
  `fn(progress, step=None) -> multiplier`. `step` (steps done before this one) is needed when
  `uses_step(opt_cfg)`: with `schedule_steps` the schedule reads step / schedule_steps instead
  of `progress`; with `decay_steps` the wsd decay spans the last decay_steps iterations."""
  build = registry.SCHEDULES.get(opt_cfg.schedule).build
  if not uses_step(opt_cfg):
    shape = build(opt_cfg)
    return lambda progress, step=None: shape(progress)
  schedule_steps, decay_steps = _key(opt_cfg, "schedule_steps"), _key(opt_cfg, "decay_steps")

  def fn(progress, step=None):
    if step is None:
      raise ValueError("optimizer.schedule_steps / optimizer.decay_steps: this schedule reads "
                       "the step; pass step=")
    q = progress if schedule_steps is None else step_progress(step, schedule_steps)
    cfg = opt_cfg
    if decay_steps is not None:
      cfg = _With(opt_cfg, {"decay_frac": decay_frac_of_steps(q, step, decay_steps)})
    return build(cfg)(q)
  return fn


def progress(step, steps: int, train_time_s=None, max_time_s: float | None = None):
  """The one training clock: max(step / steps, train_time_s / max_time_s), clipped to [0, 1]."""
  p = step / steps
  if max_time_s is not None and train_time_s is not None:
    p = max(p, train_time_s / max_time_s)
  return min(max(p, 0.0), 1.0)
