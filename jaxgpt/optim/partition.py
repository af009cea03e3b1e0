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

Use with `optax.multi_transform` via `multi_transform(transforms)` below; Muon gets its axes from
`muon_dimension_numbers` (pass `functools.partial(muon_dimension_numbers, rules=...)` as
`dimension_numbers`: it works on the masked tree Muon sees inside multi_transform).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Mapping

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

# Path regex -> number of leading batch axes; every matching pattern adds its count.
DEFAULT_STACKED: tuple[tuple[str, int], ...] = (
    # scanned layers: a `blocks` subtree with a leading `layers` axis (GPT with encoder_layers
    # > 0 scans its layer groups apart: `encoder_blocks`, `decoder_blocks`, `blocks`)
    (r"(^|/)(encoder_|decoder_)?blocks/", 1),
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


def describe(params: Any, partition: Partition = DEFAULT) -> str:
  """A human-readable table: path, shape, label, fan_in / fan_out / batch axes, count, totals."""
  infos = leaf_infos(params, partition)
  fmt = lambda axes: ",".join(map(str, axes)) if axes else "-"
  rows = [("path", "shape", "label", "fan_in", "fan_out", "batch", "count")]
  rows += [(i.path, "x".join(map(str, i.shape)) or "()", i.label, fmt(i.fan_in_axes),
            fmt(i.fan_out_axes), fmt(i.batch_axes), f"{i.count:,}") for i in infos]
  widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
  lines = ["  ".join(cell.rjust(w) if c == 6 else cell.ljust(w)
                     for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
  total = sum(i.count for i in infos)
  lines.append("")
  for label, count in sorted(label_counts(params, partition).items()):
    lines.append(f"{label:<14s} {count:>14,}  {100.0 * count / max(total, 1):5.1f}%")
  lines.append(f"{'total':<14s} {total:>14,}")
  return "\n".join(lines)


__all__ = [
    "ADAMW_EMBED", "ADAMW_HEAD", "ADAMW_SCALAR", "DEFAULT", "DEFAULT_RULES", "DEFAULT_STACKED",
    "LeafInfo", "MUON", "Partition", "ROUTER_OPTIMIZERS", "ROUTER_TO_MUON", "Rule", "classify",
    "describe", "for_router", "label_counts",
    "leaf_infos", "multi_transform", "muon_dimension_numbers", "muon_dims_fn", "param_labels",
]
