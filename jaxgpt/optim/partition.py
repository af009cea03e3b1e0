"""Which optimizer each parameter gets, and for Muon leaves which axes form the matrix.

Every leaf is named by its "/"-joined path (e.g. `blocks_3/attn/q/kernel`, `params/` prefixes
allowed) and classified by an ordered list of `Rule`s: the first rule whose regex matches the path
(`re.search`) and whose shape check passes gives the leaf its label and, for "muon", its fan_in
and fan_out axes. A leaf that no rule claims is an error that names it: new models add rules
(data), they do not edit this code.

Stacked axes: a path that matches a `stacked` pattern has leading batch axes that index separate
matrices, e.g. `blocks/` (scanned layers: every leaf of the scanned subtree has a leading `layers`
axis) or `experts/` (MoE). Rules see the "core" shape with those axes removed, so one rule covers
scanned and unscanned models; core axes a rule leaves out of fan_in and fan_out are batch axes
too. Dimension numbers returned are absolute axes of the full leaf.

Default labels: "muon" (hidden matrices), "adamw_embed" (embedding tables), "adamw_head" (the LM
head; also MoE routers, which are small read-outs of the residual stream), "adamw_scalar" (norm
scales, gains, biases, nGPT's per-dimension vectors and any scalar: every leaf whose core rank is
0 or 1, whatever its name). The trainer maps them to optimizer.lr / embed_lr / head_lr / scalar_lr.

`describe(params, partition)` is the table of every leaf; `describe(..., fold=True)` folds the
layers of an unscanned model (`blocks_0` ... `blocks_11`) into one row per kind of leaf.

Use with `optax.multi_transform` via `multi_transform(transforms)` below; Muon gets its axes from
`muon_dimension_numbers` (pass `functools.partial(muon_dimension_numbers, rules=...)` as
`dimension_numbers`: it works on the masked tree Muon sees inside multi_transform).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers

from jaxgpt.keypath import path_str

MUON = "muon"
ADAMW_EMBED = "adamw_embed"
ADAMW_HEAD = "adamw_head"
ADAMW_SCALAR = "adamw_scalar"


@dataclasses.dataclass(frozen=True)
class Rule:
  """Path regex -> label; for Muon labels, fan_in / fan_out axes of the core shape.

  pattern: `re.search`ed against the "/"-joined path.
  label: the optimizer label.
  fan_in, fan_out: core axes (negative counts from the end) forming the matrix; Muon only.
  ndim / max_ndim: shape checks on the core rank (exact / at most); a rule whose pattern matches
    but whose check fails is skipped, so e.g. a 2-D `attn/q/kernel` falls to the generic rule.
  """
  pattern: str
  label: str
  fan_in: tuple[int, ...] = ()
  fan_out: tuple[int, ...] = ()
  ndim: int | None = None
  max_ndim: int | None = None

  def matches(self, path: str, core_ndim: int) -> bool:
    if self.ndim is not None and core_ndim != self.ndim:
      return False
    if self.max_ndim is not None and core_ndim > self.max_ndim:
      return False
    return re.search(self.pattern, path) is not None


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(r"(^|/)lm_head/", ADAMW_HEAD),  # first: nGPT's output table is lm_head/embedding
    Rule(r"(^|/)embed(ding)?/|embedding$", ADAMW_EMBED),
    Rule(r"(^|/)router/", ADAMW_HEAD),
    # Vectors and scalars of any name: norms, gains, biases, nGPT alphas / s_qk / s_z, scalars.
    Rule(r"", ADAMW_SCALAR, max_ndim=1),
    # (embed, heads, head_dim): heads and head_dim together are fan_out.
    Rule(r"(^|/)attn/(q|k|v|qkv)/kernel$", MUON, fan_in=(0,), fan_out=(1, 2), ndim=3),
    # (heads, head_dim, embed): heads * head_dim is fan_in.
    Rule(r"(^|/)attn/o/kernel$", MUON, fan_in=(0, 1), fan_out=(2,), ndim=3),
    # Any other Dense kernel (in, out): mlp fc / gate / proj, MoE expert kernels (experts stacked).
    Rule(r"kernel$", MUON, fan_in=(0,), fan_out=(1,), ndim=2),
    # Titans memory (models/titans): initial memory-MLP weights (memory heads, in, out), one
    # matrix per head (heads are a batch axis); the theta / eta / alpha read-outs (embed, 3 Hm),
    # small read-outs of the residual stream like MoE routers.
    Rule(r"(^|/)memory/init_\d+$", MUON, fan_in=(1,), fan_out=(2,), ndim=3),
    Rule(r"(^|/)memory/gates$", ADAMW_HEAD, ndim=2),
)

# Scanned layers: a `blocks` subtree with a leading `layers` axis (GPT with encoder_layers > 0
# scans its layer groups apart: `encoder_blocks`, `decoder_blocks`, `blocks`).
SCANNED_LAYERS = r"(^|/)(encoder_|decoder_)?blocks/"
# Unscanned layers: one subtree per layer, a path segment NAME_INDEX (`blocks_3`; `layers_3`,
# `block_3` too). `describe(..., fold=True)` folds rows that differ only in these indices.
LAYER_SEGMENT = r"((?:encoder_|decoder_)?(?:blocks?|layers?))_(\d+)"

# Path regex -> number of leading batch axes; every matching pattern adds its count.
DEFAULT_STACKED: tuple[tuple[str, int], ...] = (
    (SCANNED_LAYERS, 1),
    (r"(^|/)experts/", 1),  # MoE: leading `experts` axis
)


@dataclasses.dataclass(frozen=True)
class Partition:
  """An ordered rule list plus stacked-axis patterns."""
  rules: tuple[Rule, ...] = DEFAULT_RULES
  stacked: tuple[tuple[str, int], ...] = DEFAULT_STACKED

  def with_rules(self, *rules: Rule, first: bool = True) -> "Partition":
    """A copy with extra rules, tried before (first=True) or after the existing ones."""
    new = tuple(rules) + self.rules if first else self.rules + tuple(rules)
    return dataclasses.replace(self, rules=new)


DEFAULT = Partition()

# `optimizer.router`: where an MoE router's (d, E) kernel goes. "adam" (the default rules:
# adamw_head) or "muon" (the blueberry MoE reference orthogonalizes it with the hidden matrices).
ROUTER_OPTIMIZERS = ("adam", "muon")
ROUTER_TO_MUON = Rule(r"(^|/)router/kernel$", MUON, fan_in=(0,), fan_out=(1,), ndim=2)


def for_router(router: str) -> Partition:
  """The default partition with the MoE router sent to Adam (as is) or to Muon."""
  if router not in ROUTER_OPTIMIZERS:
    raise ValueError(f"router optimizer {router!r}; choose one of {ROUTER_OPTIMIZERS}")
  return DEFAULT if router == "adam" else DEFAULT.with_rules(ROUTER_TO_MUON)


@dataclasses.dataclass(frozen=True)
class LeafInfo:
  """How one parameter leaf is optimized."""
  path: str
  shape: tuple[int, ...]
  label: str
  fan_in_axes: tuple[int, ...] = ()
  fan_out_axes: tuple[int, ...] = ()
  batch_axes: tuple[int, ...] = ()

  @property
  def count(self) -> int:
    return math.prod(self.shape)

  @property
  def dimension_numbers(self) -> MuonDimensionNumbers | None:
    if not self.fan_in_axes:
      return None
    return MuonDimensionNumbers(reduction_axis=self.fan_in_axes, output_axis=self.fan_out_axes)


def classify(path: str, shape: tuple[int, ...], partition: Partition = DEFAULT) -> LeafInfo:
  """The LeafInfo of one leaf; raises ValueError naming the path if no rule claims it."""
  shape = tuple(int(n) for n in shape)
  n_stacked = sum(n for pattern, n in partition.stacked if re.search(pattern, path))
  core_ndim = len(shape) - n_stacked
  if core_ndim < 0:
    raise ValueError(f"{path}: shape {shape} has fewer axes than its {n_stacked} stacked axes")
  for rule in partition.rules:
    if not rule.matches(path, core_ndim):
      continue
    if not (rule.fan_in or rule.fan_out):
      return LeafInfo(path, shape, rule.label)
    if not (rule.fan_in and rule.fan_out):
      raise ValueError(f"rule {rule} must give both fan_in and fan_out axes, or neither")
    fan_in = tuple(n_stacked + a % core_ndim for a in rule.fan_in)
    fan_out = tuple(n_stacked + a % core_ndim for a in rule.fan_out)
    batch = tuple(a for a in range(len(shape)) if a not in fan_in + fan_out)
    return LeafInfo(path, shape, rule.label, fan_in, fan_out, batch)
  raise ValueError(f"no partition rule matches parameter {path!r} with shape {shape}; "
                   "add a Rule (jaxgpt.optim.partition) for it")


def leaf_infos(params: Any, partition: Partition = DEFAULT) -> list[LeafInfo]:
  """LeafInfo for every array leaf of `params`, in tree-flatten order."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return [classify(path_str(path), np.shape(leaf), partition) for path, leaf in flat]


def _map_infos(fn, params, partition):
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  infos = [classify(path_str(path), np.shape(leaf), partition) for path, leaf in flat]
  return treedef.unflatten([fn(info) for info in infos])


def param_labels(params: Any, partition: Partition = DEFAULT) -> Any:
  """A pytree like `params` of label strings (the `param_labels` of optax.multi_transform)."""
  return _map_infos(lambda info: info.label, params, partition)


def muon_dimension_numbers(params: Any, partition: Partition = DEFAULT) -> Any:
  """A pytree like `params` of MuonDimensionNumbers (Muon leaves) or None (all others).

  Works on full trees and on the masked trees (optax MaskedNode) Muon sees inside
  `optax.multi_transform`, so pass it, or a functools.partial of it, as Muon's
  `dimension_numbers`.
  """
  return _map_infos(lambda info: info.dimension_numbers, params, partition)


def multi_transform(transforms: Mapping[str, optax.GradientTransformation],
                    partition: Partition = DEFAULT) -> optax.GradientTransformation:
  """`optax.multi_transform(transforms, labels)` with labels from `partition`.

  `transforms` maps every label the params use to a transform, e.g.
  {"muon": muon(lr, dimension_numbers=functools.partial(muon_dimension_numbers,
  partition=partition)), "adamw_embed": optax.adamw(embed_lr, ...), "adamw_head": ...,
  "adamw_scalar": ...}. A label without a transform raises ValueError naming its parameters.
  """

  def labels_fn(params):
    labels = param_labels(params, partition)
    missing = {}
    for info in leaf_infos(params, partition):
      if info.label not in transforms:
        missing.setdefault(info.label, []).append(info.path)
    if missing:
      raise ValueError("no transform for labels " + "; ".join(
          f"{label!r} (e.g. {paths[0]})" for label, paths in sorted(missing.items()))
          + f"; transforms given: {sorted(transforms)}")
    return labels

  return optax.multi_transform(dict(transforms), labels_fn)


def muon_dims_fn(partition: Partition = DEFAULT):
  """`muon_dimension_numbers` bound to `partition`: the `dimension_numbers` argument of muon."""
  return functools.partial(muon_dimension_numbers, partition=partition)


def label_counts(params: Any, partition: Partition = DEFAULT) -> dict[str, int]:
  """Parameter count per label."""
  counts: dict[str, int] = {}
  for info in leaf_infos(params, partition):
    counts[info.label] = counts.get(info.label, 0) + info.count
  return counts


@dataclasses.dataclass(frozen=True)
class FoldedRow:
  """Rows of the partition table that differ only in a layer index, as one.

  path: the first leaf's path with each layer segment written as its index set,
    `blocks_{0..11}/attn/q/kernel` (or the path as is when nothing folds).
  info: the first leaf's LeafInfo (shape, label and axes are those of every leaf folded in).
  layers: how many layers the row covers: the leaves folded together (unscanned layers), the
    leading `layers` axis (a scanned `blocks/` leaf), None outside the layers.
  count: the parameters of all of them.
  """
  path: str
  info: LeafInfo
  layers: int | None
  count: int


def _index_set(indices: Sequence[int]) -> str:
  """Indices sorted, runs of 3 or more as ranges: [0, 1, 2, 5, 6] -> "{0..2,5,6}"; a single
  index as itself."""
  idx = sorted(set(indices))
  if len(idx) == 1:
    return str(idx[0])
  runs = [[idx[0], idx[0]]]
  for i in idx[1:]:
    if i == runs[-1][1] + 1:
      runs[-1][1] = i
    else:
      runs.append([i, i])
  return "{" + ",".join(f"{a}..{b}" if b - a >= 2 else ",".join(map(str, range(a, b + 1)))
                       for a, b in runs) + "}"


def fold_layers(infos: Sequence[LeafInfo], layer_segment: str = LAYER_SEGMENT,
                scanned: str = SCANNED_LAYERS) -> list[FoldedRow]:
  """Folds leaves that differ only in their layer indices (path segments matching
  `layer_segment` in full, its groups the name and the index) into one FoldedRow: same path
  otherwise, same shape, label and fan_in / fan_out / batch axes. A layer whose leaf differs in
  any of these keeps a row of its own. Rows keep the order of their first leaf, grouped by path
  pattern (a differing layer's row right after its siblings')."""
  segment = re.compile(layer_segment)

  def pattern(path: str) -> tuple[str, tuple[int, ...]]:
    """The path with each layer index as `*`, and the indices."""
    parts, indices = [], []
    for part in path.split("/"):
      m = segment.fullmatch(part)
      parts.append(f"{m.group(1)}_*" if m else part)
      indices += [int(m.group(2))] if m else []
    return "/".join(parts), tuple(indices)

  groups: dict[tuple, list[tuple[LeafInfo, tuple[int, ...]]]] = {}
  for info in infos:
    path, indices = pattern(info.path)
    key = (path, info.shape, info.label, info.fan_in_axes, info.fan_out_axes, info.batch_axes)
    groups.setdefault(key, []).append((info, indices))
  first_of_path: dict[str, int] = {}
  for n, key in enumerate(groups):
    first_of_path.setdefault(key[0], n)
  rows = []
  for key in sorted(groups, key=lambda k: first_of_path[k[0]]):  # stable: first-leaf order
    members = groups[key]
    first = members[0][0]
    if members[0][1]:  # unscanned layers: each layer segment shows the indices folded in
      sets = iter([_index_set(column) for column in zip(*(ix for _, ix in members))])
      path = "/".join(f"{m.group(1)}_{next(sets)}" if (m := segment.fullmatch(part)) else part
                      for part in first.path.split("/"))
      layers = len(members)
    else:  # a scanned leaf's leading axis is its layers
      path = first.path
      layers = first.shape[0] if first.shape and re.search(scanned, path) else None
    rows.append(FoldedRow(path, first, layers, sum(info.count for info, _ in members)))
  return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int]) -> list[str]:
  """Left-aligned columns two spaces apart; `right` columns right-aligned."""
  rows = [tuple(header)] + [tuple(r) for r in rows]
  widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
  return ["  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                    for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _axes(axes: tuple[int, ...]) -> str:
  return ",".join(map(str, axes)) if axes else "-"


def _shape(shape: tuple[int, ...]) -> str:
  return "x".join(map(str, shape)) or "()"


def describe(params: Any, partition: Partition = DEFAULT, fold: bool = False) -> str:
  """A human-readable table: path, shape, label, fan_in / fan_out / batch axes, count, totals.

  fold=False: one row per leaf. fold=True: leaves that differ only in a layer index are one row
  (`fold_layers`), with a `layers` column (the layers a row covers; a scanned `blocks/` leaf's
  leading axis); count is then the parameters of all its layers. The totals are the same.
  """
  infos = leaf_infos(params, partition)
  if fold:
    header = ("path", "shape", "label", "fan_in", "fan_out", "batch", "layers", "count")
    rows = [(r.path, _shape(r.info.shape), r.info.label, _axes(r.info.fan_in_axes),
             _axes(r.info.fan_out_axes), _axes(r.info.batch_axes),
             "-" if r.layers is None else str(r.layers), f"{r.count:,}")
            for r in fold_layers(infos)]
    lines = _table(header, rows, right=(6, 7))
  else:
    header = ("path", "shape", "label", "fan_in", "fan_out", "batch", "count")
    rows = [(i.path, _shape(i.shape), i.label, _axes(i.fan_in_axes), _axes(i.fan_out_axes),
             _axes(i.batch_axes), f"{i.count:,}") for i in infos]
    lines = _table(header, rows, right=(6,))
  total = sum(i.count for i in infos)
  lines.append("")
  for label, count in sorted(label_counts(params, partition).items()):
    lines.append(f"{label:<14s} {count:>14,}  {100.0 * count / max(total, 1):5.1f}%")
  lines.append(f"{'total':<14s} {total:>14,}")
  return "\n".join(lines)


__all__ = [
    "ADAMW_EMBED", "ADAMW_HEAD", "ADAMW_SCALAR", "DEFAULT", "DEFAULT_RULES", "DEFAULT_STACKED",
    "FoldedRow", "LAYER_SEGMENT", "LeafInfo", "MUON", "Partition", "ROUTER_OPTIMIZERS",
    "ROUTER_TO_MUON", "Rule", "SCANNED_LAYERS", "classify", "describe", "fold_layers",
    "for_router", "label_counts",
    "leaf_infos", "multi_transform", "muon_dimension_numbers", "muon_dims_fn", "param_labels",
]
