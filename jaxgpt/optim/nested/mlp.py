"""Small MLPs as pure functions of a parameter pytree (the learned parts of `deep_nested`).

An MLP is a tuple of layers `{"w": [in, out], "b": [out]}`; `apply` runs them with an
activation between layers (none after the last). Xavier-uniform weights and zero biases, as
PyTorch's `nn.init.xavier_uniform_` / `zeros_` give. The layer keys are drawn one after the
other from one key chain (`init_chain`), so building a network consumes randomness in a fixed
order: a network built before another one shifts the other's initialisation when its depth
changes, as PyTorch's global generator does.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

MLP = tuple  # of {"w": [in, out], "b": [out]}


def xavier_uniform(key: jax.Array, fan_in: int, fan_out: int) -> jax.Array:
  """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), shape [fan_in, fan_out]."""
  a = (6.0 / (fan_in + fan_out)) ** 0.5
  return jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -a, a)


def widths(n_in: int, hidden: int, n_hidden: int, n_out: int) -> list[int]:
  """Layer widths of `n_in -> hidden (x n_hidden) -> n_out` (n_hidden 0: one linear layer)."""
  return [n_in] + [hidden] * n_hidden + [n_out]


def init_chain(key: jax.Array, sizes: Sequence[int]) -> tuple[MLP, jax.Array]:
  """(Xavier-uniform MLP of `sizes`, the key left after drawing one subkey per layer)."""
  layers = []
  for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
    key, sub = jax.random.split(key)
    layers.append({"w": xavier_uniform(sub, fan_in, fan_out),
                   "b": jnp.zeros((fan_out,), jnp.float32)})
  return tuple(layers), key


def with_output(mlp: MLP, w: jax.Array | None = None, b: jax.Array | None = None) -> MLP:
  """`mlp` with its last layer's weight and / or bias replaced."""
  last = dict(mlp[-1])
  if w is not None:
    last["w"] = jnp.asarray(w, jnp.float32).reshape(last["w"].shape)
  if b is not None:
    last["b"] = jnp.asarray(b, jnp.float32).reshape(last["b"].shape)
  return (*mlp[:-1], last)


def apply(mlp: MLP, x: jax.Array, act: Callable = jax.nn.relu) -> jax.Array:
  """x [..., in] -> [..., out]; `act` between layers."""
  for i, layer in enumerate(mlp):
    x = x @ layer["w"] + layer["b"]
    if i < len(mlp) - 1:
      x = act(x)
  return x
