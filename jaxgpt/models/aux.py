"""What a model may report besides its logits: loss terms and metrics, sown into Flax collections.

A family that needs an auxiliary loss (an MoE load-balance term, a Titans memory loss) writes it
from inside its modules, and lists the collections in its `registry.ModelFamily(collections=...)`:

    aux.add_loss(self, "load_balance", coef * lb)   # added to the training loss
    aux.add_metric(self, "expert_load_max", m)      # logged, not differentiated

The train step applies the model with these collections mutable, adds the sum of every sown
loss value to the cross entropy, and logs each term and metric by its module path
(`loss/<path>`, `metric/<path>`); `train_loss` stays the cross entropy, comparable across
families. Under `nn.scan` give the collections a `variable_axes` entry: stacked values are summed
(losses) or averaged (metrics) like any other. Evaluation applies the model immutably, so sowing
is a no-op there and `val_loss` is the cross entropy alone.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgpt.keypath import path_str

LOSSES = "losses"
METRICS = "metrics"


def add_loss(module: nn.Module, name: str, value: jax.Array) -> None:
  """Sows a loss term (a scalar, or an array whose sum is the term) into `losses`."""
  module.sow(LOSSES, name, value)


def add_metric(module: nn.Module, name: str, value: jax.Array) -> None:
  """Sows a metric (a scalar, or an array whose mean is logged) into `metrics`."""
  module.sow(METRICS, name, value)


def _by_path(tree: Any) -> dict[str, list[jax.Array]]:
  """{module path/name: [sown values]} of one collection (sow stores tuples of values)."""
  out: dict[str, list[jax.Array]] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [k for k in path if not isinstance(k, jax.tree_util.SequenceKey)]
    out.setdefault(path_str(keys), []).append(leaf)
  return out


def loss_terms(mutated: dict) -> dict[str, jax.Array]:
  """Each sown loss term, summed over its values, float32."""
  return {name: sum(jnp.sum(v.astype(jnp.float32)) for v in vals)
          for name, vals in _by_path(mutated.get(LOSSES, {})).items()}


def metrics(mutated: dict) -> dict[str, jax.Array]:
  """Each sown metric, the mean of its values, float32."""
  return {name: jnp.mean(jnp.stack([jnp.mean(v.astype(jnp.float32)) for v in vals]))
          for name, vals in _by_path(mutated.get(METRICS, {})).items()}
