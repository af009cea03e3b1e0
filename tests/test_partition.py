"""Golden labels and dimension numbers for the GPT parameter tree (scanned and unscanned)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt.optim import partition as P
from jaxgpt.optim.muon import MuonDimensionNumbers, muon

L, V, D, H, KV, HD, F = 2, 96, 32, 4, 2, 8, 64


def gpt_tree(scan=False, qk_norm=True, untied=True, swiglu=False, layers=L):
  """Zeros with the GPT model's parameter shapes (Flax Linen, Dense kernels (in, out))."""
  def block(pre=()):
    z = lambda *s: np.zeros(pre + s, np.float32)
    b = {"attn_norm": {"scale": z(D)},
         "attn": {"q": {"kernel": z(D, H, HD)}, "k": {"kernel": z(D, KV, HD)},
                  "v": {"kernel": z(D, KV, HD)}, "o": {"kernel": z(H, HD, D)}},
         "mlp_norm": {"scale": z(D)},
         "mlp": {"fc": {"kernel": z(D, F)}, "proj": {"kernel": z(F, D)}}}
    if qk_norm:
      b["attn"]["q_norm"] = {"scale": z(HD)}
      b["attn"]["k_norm"] = {"scale": z(HD)}
    if swiglu:
      b["mlp"]["gate"] = {"kernel": z(D, F)}
    return b

  tree = {"embed": {"embedding": np.zeros((V, D), np.float32)},
          "final_norm": {"scale": np.zeros((D,), np.float32)}}
  if scan:
    tree["blocks"] = block((layers,))
  else:
    tree.update({f"blocks_{i}": block() for i in range(layers)})
  if untied:
    tree["lm_head"] = {"kernel": np.zeros((D, V), np.float32)}
  return tree


# path suffix -> (label, fan_in, fan_out, batch) for an unscanned block; scanned adds 1 to every
# axis and a leading batch axis 0.
BLOCK_GOLDEN = {
    "attn_norm/scale": ("adamw_scalar", (), (), ()),
    "attn/q/kernel": ("muon", (0,), (1, 2), ()),
    "attn/k/kernel": ("muon", (0,), (1, 2), ()),
    "attn/v/kernel": ("muon", (0,), (1, 2), ()),
    "attn/o/kernel": ("muon", (0, 1), (2,), ()),
    "attn/q_norm/scale": ("adamw_scalar", (), (), ()),
    "attn/k_norm/scale": ("adamw_scalar", (), (), ()),
    "mlp_norm/scale": ("adamw_scalar", (), (), ()),
    "mlp/fc/kernel": ("muon", (0,), (1,), ()),
    "mlp/gate/kernel": ("muon", (0,), (1,), ()),
    "mlp/proj/kernel": ("muon", (0,), (1,), ()),
}
TOP_GOLDEN = {
    "embed/embedding": ("adamw_embed", (), (), ()),
    "final_norm/scale": ("adamw_scalar", (), (), ()),
    "lm_head/kernel": ("adamw_head", (), (), ()),
}


def golden(scan):
  out = dict(TOP_GOLDEN)
  if scan:
    shift = lambda axes: tuple(a + 1 for a in axes)
    for k, (label, fi, fo, _) in BLOCK_GOLDEN.items():
      out[f"blocks/{k}"] = (label, shift(fi), shift(fo), (0,) if fi else ())
  else:
    for i in range(L):
      out.update({f"blocks_{i}/{k}": v for k, v in BLOCK_GOLDEN.items()})
  return out


@pytest.mark.parametrize("scan", [False, True], ids=["unscanned", "scanned"])
def test_golden_table(scan):
  tree = gpt_tree(scan=scan, swiglu=True)
  got = {i.path: (i.label, i.fan_in_axes, i.fan_out_axes, i.batch_axes)
         for i in P.leaf_infos(tree)}
  assert got == golden(scan)
  # The pytree views agree with the table.
  labels = P.param_labels(tree)
  dims = P.muon_dimension_numbers(tree)
  block = "blocks" if scan else "blocks_1"
  assert labels[block]["attn"]["o"]["kernel"] == "muon"
  assert labels["embed"]["embedding"] == "adamw_embed"
  o = dims[block]["attn"]["o"]["kernel"]
  assert o == MuonDimensionNumbers((1, 2), (3,)) if scan else MuonDimensionNumbers((0, 1), (2,))
  assert dims["final_norm"]["scale"] is None


def test_optional_parameters_and_flax_prefix():
  tree = {"params": gpt_tree(qk_norm=False, untied=False)}
  infos = {i.path: i for i in P.leaf_infos(tree)}
  assert "params/lm_head/kernel" not in infos
  assert infos["params/blocks_0/attn/q/kernel"].label == "muon"
  assert infos["params/embed/embedding"].label == "adamw_embed"


def test_moe_and_ngpt_trees():
  E = 4
  tree = {
      "embed": {"embedding": np.zeros((V, D))},
      "blocks": {  # scanned MoE + nGPT-style vectors
          "moe": {"router": {"kernel": np.zeros((L, D, E))},
                  "experts": {"fc": {"kernel": np.zeros((L, E, D, F))},
                              "proj": {"kernel": np.zeros((L, E, F, D))},
                              "fc_bias": np.zeros((L, E, F))}},
          "alpha_attn": np.zeros((L, D)),
          "attn": {"s_qk": np.zeros((L, HD))},
      },
      "blocks_0": {"moe": {"experts": {"fc": {"kernel": np.zeros((E, D, F))}}}},
      "alpha": np.zeros(()),
      "s_z": np.zeros((V,)),
  }
  got = {i.path: (i.label, i.fan_in_axes, i.fan_out_axes, i.batch_axes)
         for i in P.leaf_infos(tree)}
  assert got["blocks/moe/router/kernel"] == ("adamw_head", (), (), ())
  assert got["blocks/moe/experts/fc/kernel"] == ("muon", (2,), (3,), (0, 1))
  assert got["blocks/moe/experts/proj/kernel"] == ("muon", (2,), (3,), (0, 1))
  assert got["blocks/moe/experts/fc_bias"][0] == "adamw_scalar"
  assert got["blocks_0/moe/experts/fc/kernel"] == ("muon", (1,), (2,), (0,))
  for path in ("blocks/alpha_attn", "blocks/attn/s_qk", "alpha", "s_z"):
    assert got[path][0] == "adamw_scalar", path


def test_rules_are_data():
  tree = gpt_tree()
  # Per-head orthogonalization of q: heads becomes a batch axis. And a new label for s_qk-like
  # vectors. Both by adding rules, no code change.
  part = P.DEFAULT.with_rules(
      P.Rule(r"attn/q/kernel$", "muon", fan_in=(0,), fan_out=(2,), ndim=3),
      P.Rule(r"q_norm/scale$", "adamw_qk"))
  infos = {i.path: i for i in P.leaf_infos(tree, part)}
  q = infos["blocks_0/attn/q/kernel"]
  assert (q.fan_in_axes, q.fan_out_axes, q.batch_axes) == ((0,), (2,), (1,))
  assert infos["blocks_0/attn/q_norm/scale"].label == "adamw_qk"
  assert infos["blocks_0/attn/k_norm/scale"].label == "adamw_scalar"
  with pytest.raises(ValueError, match="no partition rule matches parameter 'mystery/w'"):
    P.leaf_infos({"mystery": {"w": np.zeros((3, 4, 5))}})


def test_describe_table():
  text = P.describe(gpt_tree(scan=True))
  lines = text.splitlines()
  assert lines[0].split() == ["path", "shape", "label", "fan_in", "fan_out", "batch", "count"]
  assert any(line.startswith("blocks/attn/o/kernel") and "1,2" in line and "muon" in line
             for line in lines)
  counts = P.label_counts(gpt_tree(scan=True))
  assert counts["adamw_embed"] == V * D and counts["adamw_head"] == D * V
  assert counts["muon"] == L * (D * H * HD + 2 * D * KV * HD + H * HD * D + 2 * D * F)
  assert f"{sum(counts.values()):,}" in lines[-1]
  assert any(line.startswith("muon") and f"{counts['muon']:,}" in line for line in lines)


# describe() of gpt_tree() before the folded table existed: fold=False must keep it byte for byte.
UNFOLDED_GOLDEN = """\
path                        shape   label         fan_in  fan_out  batch  count
blocks_0/attn/k/kernel      32x2x8  muon          0       1,2      -        512
blocks_0/attn/k_norm/scale  8       adamw_scalar  -       -        -          8
blocks_0/attn/o/kernel      4x8x32  muon          0,1     2        -      1,024
blocks_0/attn/q/kernel      32x4x8  muon          0       1,2      -      1,024
blocks_0/attn/q_norm/scale  8       adamw_scalar  -       -        -          8
blocks_0/attn/v/kernel      32x2x8  muon          0       1,2      -        512
blocks_0/attn_norm/scale    32      adamw_scalar  -       -        -         32
blocks_0/mlp/fc/kernel      32x64   muon          0       1        -      2,048
blocks_0/mlp/proj/kernel    64x32   muon          0       1        -      2,048
blocks_0/mlp_norm/scale     32      adamw_scalar  -       -        -         32
blocks_1/attn/k/kernel      32x2x8  muon          0       1,2      -        512
blocks_1/attn/k_norm/scale  8       adamw_scalar  -       -        -          8
blocks_1/attn/o/kernel      4x8x32  muon          0,1     2        -      1,024
blocks_1/attn/q/kernel      32x4x8  muon          0       1,2      -      1,024
blocks_1/attn/q_norm/scale  8       adamw_scalar  -       -        -          8
blocks_1/attn/v/kernel      32x2x8  muon          0       1,2      -        512
blocks_1/attn_norm/scale    32      adamw_scalar  -       -        -         32
blocks_1/mlp/fc/kernel      32x64   muon          0       1        -      2,048
blocks_1/mlp/proj/kernel    64x32   muon          0       1        -      2,048
blocks_1/mlp_norm/scale     32      adamw_scalar  -       -        -         32
embed/embedding             96x32   adamw_embed   -       -        -      3,072
final_norm/scale            32      adamw_scalar  -       -        -         32
lm_head/kernel              32x96   adamw_head    -       -        -      3,072

adamw_embed             3,072   14.9%
adamw_head              3,072   14.9%
adamw_scalar              192    0.9%
muon                   14,336   69.3%
total                  20,672"""


def test_unfolded_table_is_unchanged():
  assert P.describe(gpt_tree()) == UNFOLDED_GOLDEN
  assert P.describe(gpt_tree(), fold=False) == UNFOLDED_GOLDEN


def _rows(tree, partition=P.DEFAULT):
  return {r.path: r for r in P.fold_layers(P.leaf_infos(tree, partition))}


BLOCK_KINDS = ("attn/k/kernel", "attn/k_norm/scale", "attn/o/kernel", "attn/q/kernel",
               "attn/q_norm/scale", "attn/v/kernel", "attn_norm/scale", "mlp/fc/kernel",
               "mlp/proj/kernel", "mlp_norm/scale")


def test_fold_12_layer_gpt_one_row_per_leaf_kind():
  tree = gpt_tree(layers=12)
  infos = P.leaf_infos(tree)
  rows = _rows(tree)
  assert len(infos) == 12 * len(BLOCK_KINDS) + 3
  assert set(rows) == {f"blocks_{{0..11}}/{kind}" for kind in BLOCK_KINDS} | {
      "embed/embedding", "final_norm/scale", "lm_head/kernel"}
  by_path = {i.path: i for i in infos}
  for kind in BLOCK_KINDS:
    row, one = rows[f"blocks_{{0..11}}/{kind}"], by_path[f"blocks_0/{kind}"]
    assert row.layers == 12 and row.count == 12 * one.count
    assert row.info == one  # shape, label and axes: the layer's own
  assert rows["embed/embedding"].layers is None and rows["embed/embedding"].count == V * D
  assert sum(r.count for r in rows.values()) == sum(i.count for i in infos)
  # The table: a row per kind plus the three outside the layers, a `layers` column, same totals.
  text = P.describe(tree, fold=True)
  lines = text.splitlines()
  assert lines[0].split() == ["path", "shape", "label", "fan_in", "fan_out", "batch", "layers",
                              "count"]
  assert len(lines[1:lines.index("")]) == len(BLOCK_KINDS) + 3
  assert lines[1].split() == ["blocks_{0..11}/attn/k/kernel", f"{D}x{KV}x{HD}", "muon", "0",
                              "1,2", "-", "12", f"{12 * D * KV * HD:,}"]
  assert text.split("\n\n")[1] == P.describe(tree).split("\n\n")[1]  # the label totals


def test_fold_keeps_a_differing_layer_apart():
  tree = gpt_tree(layers=4)
  tree["blocks_2"]["mlp"]["fc"]["kernel"] = np.zeros((D, 2 * F), np.float32)  # another shape
  # another label (layer 3's q_norm) and other axes (layer 1's q: per-head, heads a batch axis)
  part = P.DEFAULT.with_rules(
      P.Rule(r"blocks_1/attn/q/kernel$", "muon", fan_in=(0,), fan_out=(2,), ndim=3),
      P.Rule(r"blocks_3/attn/q_norm/scale$", "adamw_qk"))
  rows = P.fold_layers(P.leaf_infos(tree, part))
  paths = [r.path for r in rows]
  got = {r.path: (r.layers, r.info.shape, r.info.label, r.info.batch_axes) for r in rows}
  assert got["blocks_{0,1,3}/mlp/fc/kernel"] == (3, (D, F), "muon", ())
  assert got["blocks_2/mlp/fc/kernel"] == (1, (D, 2 * F), "muon", ())
  assert got["blocks_{0,2,3}/attn/q/kernel"] == (3, (D, H, HD), "muon", ())
  assert got["blocks_1/attn/q/kernel"] == (1, (D, H, HD), "muon", (1,))
  assert got["blocks_{0..2}/attn/q_norm/scale"][:3] == (3, (HD,), "adamw_scalar")
  assert got["blocks_3/attn/q_norm/scale"][2] == "adamw_qk"
  assert got["blocks_{0..3}/mlp/proj/kernel"][0] == 4
  # a differing layer's row comes right after its siblings'
  i = paths.index("blocks_{0,1,3}/mlp/fc/kernel")
  assert paths[i + 1] == "blocks_2/mlp/fc/kernel"
  assert sum(r.count for r in rows) == sum(i.count for i in P.leaf_infos(tree, part))


def test_fold_moe_and_ngpt_trees():
  E, layers = 4, 3
  def block(pre=()):
    z = lambda *s: np.zeros(pre + s, np.float32)
    return {"mlp": {"router": {"kernel": z(D, E)},
                    "experts": {"fc": {"kernel": z(E, D, F)}, "proj": {"kernel": z(E, F, D)}}},
            "alpha_attn": z(), "attn": {"s_qk": z(HD), "q": {"kernel": z(D, H, HD)}}}
  unscanned = {f"blocks_{i}": block() for i in range(layers)}
  unscanned["lm_head"] = {"embedding": np.zeros((V, D), np.float32)}
  rows = _rows(unscanned, P.for_router("muon"))
  assert set(rows) == {"blocks_{0..2}/mlp/router/kernel", "blocks_{0..2}/mlp/experts/fc/kernel",
                       "blocks_{0..2}/mlp/experts/proj/kernel", "blocks_{0..2}/alpha_attn",
                       "blocks_{0..2}/attn/s_qk", "blocks_{0..2}/attn/q/kernel",
                       "lm_head/embedding"}
  experts = rows["blocks_{0..2}/mlp/experts/fc/kernel"]
  assert (experts.layers, experts.count, experts.info.batch_axes) == (layers, layers * E * D * F,
                                                                      (0,))
  alpha = rows["blocks_{0..2}/alpha_attn"]
  assert (alpha.info.shape, alpha.info.label, alpha.count) == ((), "adamw_scalar", layers)
  assert rows["blocks_{0..2}/mlp/router/kernel"].info.label == "muon"
  # scanned: one row per leaf already; `layers` is the leading layers axis
  scanned = _rows({"blocks": block((layers,)), "experts": {"kernel": np.zeros((E, D, F))}})
  assert {r.layers for p, r in scanned.items() if p.startswith("blocks/")} == {layers}
  assert scanned["experts/kernel"].layers is None  # a stacked axis that is not the layers'
  assert scanned["blocks/mlp/experts/fc/kernel"].count == layers * E * D * F


@pytest.mark.parametrize("names,folds", [
    (("blocks_0", "blocks_7"), True), (("layers_3", "layers_4"), True),
    (("block_0", "block_1"), True), (("encoder_blocks_0", "encoder_blocks_1"), True),
    (("init_0", "init_1"), False),  # Titans' memory-MLP weights are not layers
    (("head_0", "head_1"), False), (("blocks_0", "layers_1"), False),
    (("blocks_0a", "blocks_1a"), False)])
def test_layer_segments(names, folds):
  rows = P.fold_layers(P.leaf_infos({name: {"kernel": np.zeros((D, D))} for name in names}))
  assert len(rows) == (1 if folds else 2)


@pytest.mark.parametrize("indices,text", [
    ([3], "3"), ([0, 1], "{0,1}"), ([0, 1, 2, 5], "{0..2,5}"), ([5, 0, 2, 2], "{0,2,5}"),
    ([0, 2, 3, 4, 7, 8], "{0,2..4,7,8}"), (range(12), "{0..11}")])
def test_index_set(indices, text):
  assert P._index_set(indices) == text


def test_multi_transform_runs_and_reports_missing_labels():
  params = jax.tree.map(jnp.asarray, gpt_tree(scan=True))
  params = jax.tree.map(lambda p: p + 0.01, params)
  tx = P.multi_transform({
      "muon": muon(0.02, dimension_numbers=P.muon_dims_fn()),
      "adamw_embed": optax.adamw(0.1), "adamw_head": optax.adamw(0.2),
      "adamw_scalar": optax.adamw(0.3)})
  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.ones_like(p), params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  chex.assert_trees_all_equal_shapes(updates, params)
  chex.assert_tree_all_finite(updates)
  # Adam's first step is -lr * sign(g): each label got its own transform.
  np.testing.assert_allclose(updates["embed"]["embedding"], -0.1, rtol=1e-4)
  np.testing.assert_allclose(updates["lm_head"]["kernel"], -0.2, rtol=1e-4)
  np.testing.assert_allclose(updates["final_norm"]["scale"], -0.3, rtol=1e-4)
  with pytest.raises(ValueError, match="no transform for labels 'adamw_head'"):
    P.multi_transform({"muon": muon(0.02), "adamw_embed": optax.adamw(0.1),
                       "adamw_scalar": optax.adamw(0.1)}).init(params)
