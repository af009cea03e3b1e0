"""Projection back onto a constraint set after the optimizer step, as an optax transform.

nGPT keeps its matrices on the unit hypersphere: after each update, every matrix is
re-normalized along its d_model axis. "Lazy projection" does it only every k-th step. As the
last transform of a chain this turns the proposed update u into `project(p + u) - p` on
projection steps (and leaves it alone otherwise), so `optax.apply_updates` lands exactly on the
projected parameters (up to one float rounding). Written as a transform rather than a train-step
hook so that it composes with any `optax.chain`, inside vmapped cohorts of trials and on sharded
parameters, with no change to the train step.

`every` may be a Python int or a traced integer (so cohorts may differ in it). On a single run
`lax.cond` evaluates only the taken branch; under `jax.vmap` the cond becomes a select and both
branches are computed every step (projection is a few norms per matrix: cheap).

The projection function comes from the model (e.g. `jaxgpt.models.ngpt.project`), so this
module knows nothing about models.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class ProjectionState(NamedTuple):
  count: jnp.ndarray  # optimizer steps taken (int32)


def project_every(project_fn: Callable[[Any], Any], every: int | jnp.ndarray = 1
                  ) -> optax.GradientTransformationExtraArgs:
  """Makes every `every`-th update land on `project_fn(params + update)`.

  u <- project(p + u) - p   when (count + 1) % every == 0, else u (count = steps before this one)
  """

  def init_fn(params):
    del params
    return ProjectionState(count=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError("project_every needs params: call update(updates, state, params)")
    count = state.count + 1

    def projected(u):
      new = jax.tree.map(lambda p, d: p + d.astype(p.dtype), params, u)
      return jax.tree.map(lambda n, p, d: (n - p).astype(d.dtype), project_fn(new), params, u)

    updates = jax.lax.cond(count % every == 0, projected, lambda u: u, updates)
    return updates, ProjectionState(count=count)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
