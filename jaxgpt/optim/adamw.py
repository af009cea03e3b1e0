"""`optimizer.name="adamw"`: AdamW on every parameter, weight decay on dense kernels only."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgpt import registry
from jaxgpt.errors import ConfigError
from jaxgpt.keypath import path_str


def weight_decay_mask(params: Any) -> Any:
  """Decay dense kernels (matrices); never embeddings, norms, gains, biases or scalars."""
  def decays(path, leaf):
    return path_str(path).endswith("kernel") and jnp.ndim(leaf) >= 2
  return jax.tree_util.tree_map_with_path(decays, params)


def adamw(o) -> optax.GradientTransformation:
  """AdamW from `config.optimizer` (or a view of it with traced values)."""
  return optax.adamw(learning_rate=o.lr, b1=o.b1, b2=o.b2, eps=o.eps,
                     weight_decay=o.weight_decay, mask=weight_decay_mask)


def _check_config(config) -> None:
  if config.optimizer.router != "adam":
    raise ConfigError(f"optimizer.router={config.optimizer.router!r} only applies to "
                      "optimizer.name='muon' (AdamW runs every parameter with Adam); "
                      "set optimizer.router='adam'")


registry.OPTIMIZERS.register("adamw", registry.Optimizer(build=adamw, check=_check_config))
