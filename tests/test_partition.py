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


def gpt_tree(scan=False, qk_norm=True, untied=True, swiglu=False):
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
    tree["blocks"] = block((L,))
  else:
    tree.update({f"blocks_{i}": block() for i in range(L)})
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
