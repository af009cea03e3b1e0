"""The nested grid's two parameter groups (core / embed) and their depths, on jaxgpt parameter
paths (docs/design.md "Sources": bigwolfeman/TitanMAC-Standalone's DeepNestedOptimizer).

Its `group_moe_params` puts a PyTorch parameter in **embed** when its name contains
`token_embedding`, `norm`, `router` or `gate`, or when it is not 2-D; everything else (the
attention and expert matrices) is **core**. Here a leaf is core when the partition rules
(`jaxgpt.optim.partition`) call it a matrix (label `muon`, or `adamw_head`: an untied LM head is
a 2-D `nn.Linear` in PyTorch) and its path matches none of `embed(ding)`, `norm`, `router`,
`gate`. Attention kernels stored as (embed, heads, head_dim) and scanned layers count as
matrices, as their PyTorch counterparts are.

Depth (its `infer_param_depth`, per PyTorch tensor): 0 for paths containing `embed`,
1 for the LM head and the final norm, (i + 1) / n_layers inside layer i (`blocks_<i>/`, or
a scanned `blocks/` leaf, which holds n_layers tensors), 0.5 otherwise. A group's depth is the
mean over its PyTorch tensors (a leaf with stacked axes, layers or experts, counts as that
many tensors).
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt.keypath import path_str
from jaxgpt.optim import partition

CORE, EMBED = 0, 1
GROUP_NAMES = ("core", "embed")
_EMBED_NAME = re.compile(r"(^|/)embed(ding)?/|embedding$|norm|router|gate")
_MATRIX_LABELS = (partition.MUON, partition.ADAMW_HEAD)
_SCANNED = re.compile(r"(^|/)(encoder_|decoder_)?blocks/")
_LAYER = re.compile(r"(^|/)(?:encoder_|decoder_)?blocks_(\d+)/")
_HEAD = re.compile(r"(^|/)lm_head/|(^|/)(final_norm|ln_f|norm)/")


class Groups(NamedTuple):
  """Static facts about a parameter tree: one group index per leaf, and each group's depth."""
  index: tuple[int, ...]  # per leaf (tree-flatten order): CORE or EMBED
  depth: tuple[float, float]  # mean depth of each group (0.5 for an empty group)
  labels: tuple[str, ...]  # per leaf: the partition label


def group_of(info: partition.LeafInfo) -> int:
  core = info.label in _MATRIX_LABELS and not _EMBED_NAME.search(info.path)
  return CORE if core else EMBED


def _stacked_count(path: str, shape: tuple[int, ...]) -> int:
  n = sum(k for pattern, k in partition.DEFAULT_STACKED if re.search(pattern, path))
  return math.prod(shape[:n])


def num_layers(infos) -> int:
  """The model's layer count: a scanned `blocks/` leaf's leading axis, or 1 + the largest
  `blocks_<i>` index (1 when there are no layers)."""
  n = 1
  for info in infos:
    if _SCANNED.search(info.path) and info.shape:
      n = max(n, info.shape[0])
    m = _LAYER.search(info.path)
    if m:
      n = max(n, int(m.group(2)) + 1)
  return n


def depths(info: partition.LeafInfo, n_layers: int) -> list[float]:
  """The nested grid's depth of each PyTorch tensor this leaf stands for."""
  count = _stacked_count(info.path, info.shape)
  lower = info.path.lower()
  if "embed" in lower:
    return [0.0] * count
  if _HEAD.search(info.path) and not (_SCANNED.search(info.path) or _LAYER.search(info.path)):
    return [1.0] * count
  m = _LAYER.search(info.path)
  if m:
    return [(int(m.group(2)) + 1) / n_layers] * count
  if _SCANNED.search(info.path):
    per_layer = count // max(info.shape[0], 1)
    return [(i + 1) / n_layers for i in range(info.shape[0]) for _ in range(per_layer)]
  return [0.5] * count


def groups(params: Any) -> Groups:
  """The Groups of a parameter tree (static: from paths and shapes only)."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  infos = [partition.classify(path_str(p), np.shape(x)) for p, x in flat]
  n_layers = num_layers(infos)
  index = tuple(group_of(i) for i in infos)
  per_group: list[list[float]] = [[], []]
  for info, g in zip(infos, index):
    per_group[g].extend(depths(info, n_layers))
  depth = tuple(float(np.mean(d)) if d else 0.5 for d in per_group)
  return Groups(index, depth, tuple(i.label for i in infos))


def group_norms(tree: Any, index: tuple[int, ...]) -> jax.Array:
  """float32 [2]: the L2 norm of each group's leaves taken together."""
  sq = [jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)]
  for x, g in zip(jax.tree.leaves(tree), index):
    sq[g] = sq[g] + jnp.sum(jnp.square(x.astype(jnp.float32)))
  return jnp.sqrt(jnp.stack(sq))


def group_stats(grads: Any, params: Any, g: Groups) -> jax.Array:
  """float32 [2, 3]: the nested grid's controller inputs [grad norm, param norm, depth] per
  group; `grads` None gives grad norm 0 (its meta-update, after the gradients are cleared)."""
  pn = group_norms(params, g.index)
  gn = jnp.zeros((2,), jnp.float32) if grads is None else group_norms(grads, g.index)
  return jnp.stack([gn, pn, jnp.asarray(g.depth, jnp.float32)], axis=1)


def per_leaf(values: jax.Array, index: tuple[int, ...]) -> list[jax.Array]:
  """values[group of each leaf], in tree-flatten order."""
  return [values[i] for i in index]
