"""Train state: a pytree of step, parameters and optimizer state (nothing else is traced)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any


def create(model, tx, rng: jax.Array, tokens_bt: jnp.ndarray) -> tuple[TrainState, Any]:
  """Initial state and the boxed (logically annotated) parameter tree, for shardings."""
  boxed = model.init(rng, tokens_bt)["params"]
  params = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, boxed,
                        is_leaf=lambda x: hasattr(x, "unbox"))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params)), boxed
