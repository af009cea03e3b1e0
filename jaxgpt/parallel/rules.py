"""Logical axis rules: the one table that maps the model's logical axis names to mesh axes.

Layers annotate logical names ("embed", "heads", ...), never mesh axes (MaxText's habit).
Default: data parallel over `data`, parameters sharded over `fsdp` on their embed axis,
heads / MLP width / vocabulary over `tensor`. On a mesh whose fsdp and tensor axes are 1
this is plain data parallelism.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),  # activations' d_model axis: replicated (batch already uses fsdp)
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("layers", None),
)


def param_shardings(boxed_params: Any, mesh: Mesh, rules=LOGICAL_RULES) -> Any:
  """NamedShardings for a tree of nn.Partitioned (boxed) parameters."""
  specs = nn.get_partition_spec(boxed_params)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Batches are split over data x fsdp on their leading axis, replicated elsewhere."""
  return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local: dict, mesh: Mesh) -> dict:
  """Joins each process's rows of a batch into global arrays sharded over data x fsdp."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
          for k, v in local.items()}


def _key(k) -> str:
  return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))


def state_shardings_like_params(state: Any, params: Any, param_sh: Any, mesh: Mesh) -> Any:
  """Shardings for an optimizer state: a leaf whose key path ends with a parameter's path and
  has that parameter's shape (momentum, second moments, ...) is sharded like the parameter;
  every other leaf (counts, scalars, per-row statistics) is replicated.

  Works through any optax wrapper (chains, multi_transform's masked trees, inject_hyperparams),
  which `optax.tree_utils.tree_map_params` does not for masked states.
  """
  flat_p = jax.tree_util.tree_flatten_with_path(params)[0]
  flat_s = jax.tree.leaves(param_sh)
  by_path = {tuple(_key(k) for k in path): (leaf.shape, sh)
             for (path, leaf), sh in zip(flat_p, flat_s)}
  depth = max((len(p) for p in by_path), default=0)
  repl = replicated(mesh)

  def pick(path, leaf):
    keys = tuple(_key(k) for k in path)
    for n in range(min(depth, len(keys)), 0, -1):
      hit = by_path.get(keys[-n:])
      if hit is not None and tuple(hit[0]) == tuple(leaf.shape):
        return hit[1]
    return repl

  return jax.tree_util.tree_map_with_path(pick, state)
