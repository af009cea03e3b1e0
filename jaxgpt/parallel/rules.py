"""Logical axis rules: the one table that maps the model's logical axis names to mesh axes.

Layers annotate logical names ("embed", "heads", ...), never mesh axes (MaxText's habit).
Default: data parallel over `data`, parameters sharded over `fsdp` on their embed axis,
heads / MLP width / vocabulary over `tensor`. On a mesh whose fsdp and tensor axes are 1
this is plain data parallelism.

Modes are mesh shapes, not code paths: data parallel (data = N), FSDP (fsdp = N: parameters and
optimizer state split on their embed axis, gathered by GSPMD where a layer needs them), tensor
parallel (tensor = N: heads, MLP width and vocabulary split), and any product of the three.

Divisibility: a parameter dimension whose mesh axes do not divide it is never replicated
silently (GSPMD would otherwise pad it, or `jit` would refuse it with an opaque message).
`param_shardings` raises `ShardingError`, naming the leaf, its logical axis, the mesh axis and
the config keys to change, except for the logical names in `REPLICATE_IF_UNEVEN` (key/value
heads under GQA: fewer kv heads than `mesh.tensor` is a legitimate model), which fall back to
replication of that one axis with a warning that names the leaf.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgpt.errors import ConfigError
from jaxgpt.keypath import key_str, path_str

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
    ("expert", "expert"),  # an MoE's stacked experts
)


# Logical names that may fall back to replication (with a warning) when they do not divide.
REPLICATE_IF_UNEVEN = ("kv_heads",)

# What to change when a logical axis does not divide: the config keys behind each name.
CONFIG_KEYS = {
    "embed": "model.d_model",
    "heads": "model.num_heads",
    "kv_heads": "model.num_kv_heads",
    "mlp": "model.mlp_mult * model.d_model",
    "vocab": "model.vocab_size",
    "layers": "model.num_layers",
    "head_dim": "model.head_dim",
    "expert": "model.moe.num_experts",
}


class ShardingError(ConfigError):
  """A parameter dimension that the rules shard does not divide over its mesh axes."""


def _axes_tuple(axes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def leaf_spec(path: str, shape: tuple[int, ...], logical: tuple[str | None, ...], mesh: Mesh,
              rules=LOGICAL_RULES) -> tuple[P, list[str]]:
  """The mesh PartitionSpec of one parameter, and the fallbacks taken (as log lines).

  `logical` names each axis of the leaf (None: unnamed, replicated). Raises ShardingError when
  an axis does not divide, unless its name is in REPLICATE_IF_UNEVEN.
  """
  mesh_axes = tuple(nn.logical_to_mesh_axes(tuple(logical), rules))
  mesh_axes = mesh_axes + (None,) * (len(shape) - len(mesh_axes))
  out, notes = [], []
  for dim, (n, name, axes) in enumerate(zip(shape, tuple(logical) + (None,) * len(shape),
                                            mesh_axes)):
    ways = math.prod(mesh.shape[a] for a in _axes_tuple(axes))
    if ways > 1 and n % ways:
      where = " x ".join(f"mesh.{a}={mesh.shape[a]}" for a in _axes_tuple(axes))
      what = (f"parameter {path} axis {dim} ({name!r}, size {n}) does not divide over {where}")
      if name in REPLICATE_IF_UNEVEN:
        notes.append(f"{what}: replicating that axis")
        axes = None
      else:
        key = CONFIG_KEYS.get(name, "the model's shape")
        raise ShardingError(f"{what}; change {key} or the mesh so that {ways} divides {n}")
    out.append(axes)
  return P(*out), notes


def param_specs(boxed_params: Any, mesh: Mesh, rules=LOGICAL_RULES) -> Any:
  """Mesh PartitionSpecs for a tree of nn.Partitioned (boxed) parameters; fallbacks logged."""
  def spec(path, box):
    logical = tuple(box.names) if isinstance(box, nn.Partitioned) else ()
    value = box.value if isinstance(box, nn.Partitioned) else box
    out, notes = leaf_spec(path_str(path), tuple(value.shape), logical, mesh, rules)
    for note in notes:
      logging.warning("sharding fallback: %s", note)
    return out

  return jax.tree_util.tree_map_with_path(spec, boxed_params,
                                          is_leaf=lambda x: isinstance(x, nn.Partitioned))


def param_shardings(boxed_params: Any, mesh: Mesh, rules=LOGICAL_RULES) -> Any:
  """NamedShardings for a tree of nn.Partitioned (boxed) parameters (see `leaf_spec`)."""
  return jax.tree.map(lambda s: NamedSharding(mesh, s), param_specs(boxed_params, mesh, rules),
                      is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Batches are split over data x fsdp on their leading axis, replicated elsewhere."""
  return NamedSharding(mesh, P(("data", "fsdp"), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local: dict, mesh: Mesh) -> dict:
  """Joins each process's rows of a batch into global arrays sharded over data x fsdp."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, v.ndim), v)
          for k, v in local.items()}




def state_shardings_like_params(state: Any, params: Any, param_sh: Any, mesh: Mesh) -> Any:
  """Shardings for an optimizer state: a leaf whose key path ends with a parameter's path and
  has that parameter's shape (momentum, second moments, ...) is sharded like the parameter; one
  with the parameter's rank whose axes are the parameter's or 1 (per-row statistics such as
  NorMuon's) is sharded like it on the axes it keeps; every other leaf (counts, scalars) is
  replicated.

  Works through any optax wrapper (chains, multi_transform's masked trees, inject_hyperparams),
  which `optax.tree_utils.tree_map_params` does not for masked states.
  """
  flat_p = jax.tree_util.tree_flatten_with_path(params)[0]
  flat_s = jax.tree.leaves(param_sh)
  by_path = {tuple(key_str(k) for k in path): (leaf.shape, sh)
             for (path, leaf), sh in zip(flat_p, flat_s)}
  depth = max((len(p) for p in by_path), default=0)
  repl = replicated(mesh)

  def pick(path, leaf):
    keys = tuple(key_str(k) for k in path)
    for n in range(min(depth, len(keys)), 0, -1):
      hit = by_path.get(keys[-n:])
      if hit is None:
        continue
      shape, sh = tuple(hit[0]), hit[1]
      if shape == tuple(leaf.shape):
        return sh
      if len(shape) == len(leaf.shape) and all(a in (b, 1) for a, b in zip(leaf.shape, shape)):
        spec = tuple(sh.spec) + (None,) * (len(shape) - len(sh.spec))
        return NamedSharding(mesh, P(*(s if n_ == full else None
                                       for s, n_, full in zip(spec, leaf.shape, shape))))
    return repl

  return jax.tree_util.tree_map_with_path(pick, state)
