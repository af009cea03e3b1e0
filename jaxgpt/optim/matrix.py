"""Leaves as stacks of matrices: the (batch..., fan_in, fan_out) view Muon-style optimizers use.

Each leaf names its fan_in (reduction) and fan_out (output) axes with
`MuonDimensionNumbers(reduction_axis, output_axis)` (optax's type; ints or tuples); every other
axis is a batch axis (layers, experts, cohort) and indexes independent matrices. `to_matrix`
moves a leaf to (batch..., fan_in, fan_out) and `from_matrix` moves it back; `dims_per_leaf`
resolves the ways a caller may give dimension numbers to one per array leaf.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from optax.contrib import MuonDimensionNumbers

DimensionNumbers = Any  # MuonDimensionNumbers | pytree of (MuonDimensionNumbers | None) | callable


class MatrixLayout(NamedTuple):
  """Static description of how one leaf maps to (batch..., fan_in, fan_out)."""
  fan_in_axes: tuple[int, ...]
  fan_out_axes: tuple[int, ...]
  batch_axes: tuple[int, ...]
  fan_in: int
  fan_out: int


def _axes(axes, ndim: int) -> tuple[int, ...]:
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return tuple(int(a) % ndim for a in axes)


def matrix_layout(shape: tuple[int, ...], dims: MuonDimensionNumbers) -> MatrixLayout:
  """fan_in / fan_out / batch axes (non-negative) and sizes of a leaf of `shape`."""
  ndim = len(shape)
  if ndim < 2:
    raise ValueError(f"Muon needs leaves of rank >= 2, got shape {shape}")
  fan_in_axes = _axes(dims.reduction_axis, ndim)
  fan_out_axes = _axes(dims.output_axis, ndim)
  if not fan_in_axes or not fan_out_axes or set(fan_in_axes) & set(fan_out_axes):
    raise ValueError(f"fan_in axes {fan_in_axes} and fan_out axes {fan_out_axes} must be "
                     f"non-empty and disjoint (shape {shape}, {dims})")
  batch_axes = tuple(a for a in range(ndim) if a not in fan_in_axes + fan_out_axes)
  return MatrixLayout(fan_in_axes, fan_out_axes, batch_axes,
                      math.prod(shape[a] for a in fan_in_axes),
                      math.prod(shape[a] for a in fan_out_axes))


def to_matrix(x: jax.Array, lay: MatrixLayout) -> jax.Array:
  """(any layout) -> (batch..., fan_in, fan_out)."""
  batch_shape = tuple(x.shape[a] for a in lay.batch_axes)
  perm = lay.batch_axes + lay.fan_in_axes + lay.fan_out_axes
  return jnp.transpose(x, perm).reshape(batch_shape + (lay.fan_in, lay.fan_out))


def from_matrix(x_bio: jax.Array, lay: MatrixLayout, shape: tuple[int, ...]) -> jax.Array:
  """(batch..., fan_in, fan_out) -> the leaf's own layout `shape`."""
  perm = lay.batch_axes + lay.fan_in_axes + lay.fan_out_axes
  x = x_bio.reshape(tuple(shape[a] for a in perm))
  return jnp.transpose(x, tuple(perm.index(a) for a in range(len(shape))))


def matrix_sum(x: jax.Array, lay: MatrixLayout) -> jax.Array:
  """Sum over each matrix (fan_in and fan_out axes), keeping dims: one value per matrix."""
  return jnp.sum(x, axis=lay.fan_in_axes + lay.fan_out_axes, keepdims=True)


def _is_dims_leaf(x) -> bool:
  return x is None or isinstance(x, MuonDimensionNumbers)


def dims_per_leaf(dimension_numbers: DimensionNumbers, tree: Any) -> list[MuonDimensionNumbers]:
  """One MuonDimensionNumbers per array leaf of `tree` (MaskedNode subtrees hold no leaves).

  `dimension_numbers` is None (every leaf's last two axes are (fan_in, fan_out), leading axes are
  batch), one MuonDimensionNumbers for every leaf, a pytree prefix of `tree` whose leaves are
  MuonDimensionNumbers or None (None only where `tree` has no arrays, e.g. leaves masked out by
  `optax.multi_transform`), or a callable tree -> such a pytree.
  """
  if callable(dimension_numbers):
    dimension_numbers = dimension_numbers(tree)
  if dimension_numbers is None:
    dimension_numbers = MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)
  if isinstance(dimension_numbers, MuonDimensionNumbers):
    return [dimension_numbers] * len(jax.tree.leaves(tree))
  spec_leaves, spec_def = jax.tree.flatten(dimension_numbers, is_leaf=_is_dims_leaf)
  out = []
  for dims, sub in zip(spec_leaves, spec_def.flatten_up_to(tree)):
    n = len(jax.tree.leaves(sub))
    if n and dims is None:
      raise ValueError("a parameter reached Muon with dimension numbers None; route it to "
                       "another optimizer (optax.multi_transform) or give it dimension numbers")
    out.extend([dims] * n)
  return out


def layouts(dimension_numbers: DimensionNumbers, tree: Any) -> list[MatrixLayout]:
  """The MatrixLayout of every array leaf of `tree`, in `jax.tree.leaves` order."""
  return [matrix_layout(x.shape, d)
          for x, d in zip(jax.tree.leaves(tree), dims_per_leaf(dimension_numbers, tree))]


def map_matrices(fn, n_out: int, dimension_numbers: DimensionNumbers, tree: Any, *rest: Any
                 ) -> tuple[Any, ...]:
  """fn(leaf, *rest_leaves, layout) -> a tuple of `n_out` arrays, on every array leaf of `tree`.

  `rest` are trees with the same array leaves (e.g. an optimizer state's momentum); a rest tree
  that is None gives None to fn. Returns `n_out` trees of `tree`'s structure.
  """
  leaves, treedef = jax.tree.flatten(tree)
  others = [[None] * len(leaves) if r is None else jax.tree.leaves(r) for r in rest]
  lays = layouts(dimension_numbers, tree)
  outs = [fn(x, *(o[i] for o in others), lays[i]) for i, x in enumerate(leaves)]
  cols = list(zip(*outs)) if outs else [()] * n_out
  return tuple(treedef.unflatten(list(col)) for col in cols)


__all__ = ["DimensionNumbers", "MatrixLayout", "MuonDimensionNumbers", "dims_per_leaf",
           "from_matrix", "layouts", "map_matrices", "matrix_layout", "matrix_sum", "to_matrix"]
