"""Architecture knobs of the speedrun / parameter-golf lineage (docs/formulas.md "Architecture
knobs"): parallel block and activations against float64 numpy, the encoder/decoder skips
against an independent sequential reference (scanned in groups and unrolled), nonsense
combinations refused naming the keys, and a fixed list of combinations that train."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt import models
from jaxgpt.config import base_config
from jaxgpt.models import gpt, layers
from jaxgpt.optim import partition
from tests.test_model import np_causal_attention, np_rms, np_rope

V, T, B = 67, 8, 2


def model_cfg(**overrides):
  m = base_config().model
  m.update(name="gpt", num_layers=2, d_model=32, num_heads=4, num_kv_heads=2,
           compute_dtype="float32", scan_layers=False, qk_norm=True, tie_embeddings=True)
  m.update(**overrides)
  return m


def tokens(seed=0, length=T):
  return np.random.default_rng(seed).integers(0, V, (B, length)).astype(np.int32)


def random_tree(tree, seed, std=0.3):
  """N(0, std) for kernels, tables and skip weights, 1 +- 0.1 for norm scales."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    base = 1.0 if name in ("scale", "skip_weight") else 0.0
    spread = 0.1 if name == "scale" else 0.5 if name == "skip_weight" else std
    return jnp.asarray(base + spread * rng.standard_normal(leaf.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, tree)


def abstract(module, *args):
  return nn.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), *args)["params"])


# ------------------------------------------------------------------------------------------
# Parallel block and activations against float64 numpy.

def np_attention(x, w, base=10000.0):
  q = np_rms(np.einsum("td,dhk->thk", x, w["q"]["kernel"]), w["q_norm"]["scale"])
  k = np_rms(np.einsum("td,dnk->tnk", x, w["k"]["kernel"]), w["k_norm"]["scale"])
  v = np.einsum("td,dnk->tnk", x, w["v"]["kernel"])
  q = np.stack([np_rope(q[:, i], base) for i in range(q.shape[1])], axis=1)
  k = np.stack([np_rope(k[:, i], base) for i in range(k.shape[1])], axis=1)
  return np.einsum("thk,hkd->td", np_causal_attention(q, k, v), w["o"]["kernel"])


NP_ACTS = {
    "relu2": lambda x: np.maximum(x, 0) ** 2,
    "silu2": lambda x: (x / (1 + np.exp(-x))) ** 2,
}


@pytest.mark.parametrize("act", ["silu2", "swiglu"])
def test_parallel_block_matches_formula(act):
  """x + Attn(n) + MLP(n), n = RMSNorm(x): one norm, both branches read the same n."""
  cfg = gpt.GPTConfig.from_config(model_cfg(parallel_block=True, mlp_act=act), V)
  block = gpt.Block(cfg)
  x_btd = np.random.default_rng(1).normal(size=(1, T, 32)).astype(np.float32)
  w = jax.tree.map(np.asarray, random_tree(abstract(block, x_btd), 2))
  assert set(w) == {"norm", "attn", "mlp"}  # one norm, no attn_norm / mlp_norm
  out, _ = jax.jit(block.apply)({"params": w}, x_btd)

  x = x_btd[0].astype(np.float64)
  n = np_rms(x, w["norm"]["scale"])
  u = n @ w["mlp"]["fc"]["kernel"]
  if act == "swiglu":
    g = n @ w["mlp"]["gate"]["kernel"]
    h = g / (1 + np.exp(-g)) * u
  else:
    h = NP_ACTS[act](u)
  ref = x + np_attention(n, w["attn"]) + h @ w["mlp"]["proj"]["kernel"]
  np.testing.assert_allclose(out[0], ref, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("act", ["relu2", "silu2"])
def test_activations(act):
  x = np.linspace(-4, 4, 41)
  np.testing.assert_allclose(layers.ACTIVATIONS[act](jnp.asarray(x, jnp.float32)),
                             NP_ACTS[act](x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Encoder / decoder skips.

def test_pairing_nine_layers():
  pairs = gpt.skip_pairs(9, 4)
  assert pairs == [(3, 4), (2, 5), (1, 6), (0, 7)]
  assert sorted(e for e, _ in pairs) == [0, 1, 2, 3]  # every encoder output used once
  assert sorted(d for _, d in pairs) == [4, 5, 6, 7]  # layer 8 unpaired
  cfg = gpt.GPTConfig.from_config(model_cfg(num_layers=9, encoder_layers=4), V)
  assert [gpt.layer_role(cfg, i) for i in range(9)] == ["encoder"] * 4 + ["decoder"] * 4 + [
      "plain"]
  assert [(n, r, k) for n, r, k in gpt.layer_groups(cfg)] == [
      ("encoder_blocks", "encoder", 4), ("decoder_blocks", "decoder", 4), ("blocks", "plain", 1)]
  assert gpt.skip_pairs(9, 0) == []


# 5 layers, 2 encoder layers: pairs (1, 2), (0, 3), layer 4 unpaired (the 9-layer structure,
# smaller: every layer is a compile of its own when unrolled).
L, E = 5, 2
SKIP = dict(num_layers=L, encoder_layers=E, d_model=16, num_heads=2, num_kv_heads=1)


@functools.cache
def skip_model(scan):
  return models.build_model(model_cfg(**SKIP, scan_layers=scan), V)


def reference_forward(params, toks, pairs):
  """Layer by layer with plain blocks, adding skip_weight_i * output of layer pairs[i] before
  layer i: written from docs/formulas.md's pairing ("U-net skips"), not from the model's stack."""
  cfg = gpt.GPTConfig.from_config(model_cfg(**SKIP), V)
  plain = jax.jit(gpt.Block(cfg).apply)
  x = params["embed"]["embedding"][toks]
  outs = {}
  for i in range(L):
    p = dict(params[f"blocks_{i}"])
    if i in pairs:
      x = x + p.pop("skip_weight") * outs[pairs[i]]
    x, _ = plain({"params": p}, x)
    outs[i] = x
  x = np_rms(np.asarray(x, np.float64), np.asarray(params["final_norm"]["scale"]))
  return x @ np.asarray(params["embed"]["embedding"], np.float64).T


def regroup(params, cfg):
  """Unrolled params (blocks_0..L-1) -> the scanned groups' layout."""
  out = {k: v for k, v in params.items() if not k.startswith("blocks_")}
  start = 0
  for name, _, n in gpt.layer_groups(cfg):
    out[name] = jax.tree.map(lambda *xs: jnp.stack(xs),
                             *[params[f"blocks_{i}"] for i in range(start, start + n)])
    start += n
  return out


def test_encoder_decoder_skips_match_reference_scanned_and_unrolled():
  model = skip_model(False)
  params = random_tree(abstract(model, tokens()), 3, std=0.2)
  assert {k for k in params if "skip_weight" in params.get(k, {})} == {"blocks_2", "blocks_3"}
  assert gpt.skip_pairs(L, E) == [(1, 2), (0, 3)]
  toks = tokens(4)
  ref = reference_forward(params, toks, {2: 1, 3: 0})
  out = np.asarray(jax.jit(model.apply)({"params": params}, toks))
  np.testing.assert_allclose(out, ref, atol=2e-4 * np.abs(ref).max())
  # Pairing matters: a wrong pairing (first pushed, first popped) gives other logits.
  wrong = reference_forward(params, toks, {2: 0, 3: 1})
  assert np.abs(wrong - ref).max() > 1e-3
  scanned = skip_model(True)
  cfg = gpt.GPTConfig.from_config(model_cfg(**SKIP), V)
  grouped = regroup(params, cfg)
  chex.assert_trees_all_equal_shapes(grouped, abstract(scanned, tokens()))
  out_s = np.asarray(jax.jit(scanned.apply)({"params": grouped}, toks))
  np.testing.assert_allclose(out_s, out, atol=1e-5 * np.abs(out).max())


def test_skip_weights_are_adam_vectors():
  params = abstract(skip_model(True), tokens())
  infos = {i.path: i for i in partition.leaf_infos(params)}
  assert infos["decoder_blocks/skip_weight"].shape == (E, 16)
  assert infos["decoder_blocks/skip_weight"].label == partition.ADAMW_SCALAR
  assert infos["encoder_blocks/attn/q/kernel"].label == partition.MUON
  assert infos["encoder_blocks/attn/q/kernel"].batch_axes == (0,)  # per-layer matrices


# ------------------------------------------------------------------------------------------
# Validation: nonsense combinations fail at start, naming the keys.

@pytest.mark.parametrize("overrides,pattern", [
    (dict(encoder_layers=2, num_layers=3), r"model.encoder_layers=2 .*num_layers // 2 = 1"),
    (dict(encoder_layers=-1), r"model.encoder_layers=-1"),
    (dict(encoder_layers=1, num_layers=1), r"model.encoder_layers=1 .*num_layers // 2 = 0"),
    (dict(num_kv_heads=3), r"model.num_kv_heads=3 must divide model.num_heads=4"),
    (dict(mlp_act="swish"), r"model.mlp_act='swish'.*silu2.*swiglu"),
    (dict(name="ngpt", mlp_act="swiglu", qk_norm=False, tie_embeddings=False,
          parallel_block=True), r"model.parallel_block=True .*model.name='ngpt'"),
    (dict(name="gated_ngpt", mlp_act="swiglu", qk_norm=False, tie_embeddings=False,
          encoder_layers=1), r"model.encoder_layers=1 .*model.name='gated_ngpt'"),
])
def test_nonsense_combinations_fail_naming_keys(overrides, pattern):
  with pytest.raises(ValueError, match=pattern):
    models.build_model(model_cfg(**overrides), V)


def test_param_count_closed_form_with_knobs():
  for kw in (dict(mlp_act="swiglu", parallel_block=True, tie_embeddings=False),
             dict(num_layers=5, encoder_layers=2, scan_layers=True, num_kv_heads=1)):
    m = model_cfg(**kw)
    params = abstract(models.build_model(m, V), tokens())
    assert models.count_params(params) == gpt.param_count(gpt.GPTConfig.from_config(m, V)), kw


# ------------------------------------------------------------------------------------------
# A fixed list of knob combinations compiles and trains a few steps. Adam, not Muon, keeps
# the compile short (Muon on these trees: test_skip_weights_are_adam_vectors, test_train).

COMBOS = {
    "parallel_swiglu_gqa_untied_scan_skips_softcap": dict(
        parallel_block=True, mlp_act="swiglu", num_kv_heads=2, tie_embeddings=False,
        scan_layers=True, num_layers=3, encoder_layers=1, logit_softcap=15.0),
    "silu2_mqa_unrolled_skips_remat_zero_out": dict(
        mlp_act="silu2", num_kv_heads=1, scan_layers=False, num_layers=4, encoder_layers=2,
        remat=True, init="zero_out", rope_base=5000.0),
    "gelu_no_qknorm_parallel_scan_remat": dict(
        mlp_act="gelu", qk_norm=False, parallel_block=True, scan_layers=True, remat=True,
        mlp_mult=2.0),
}


@pytest.mark.parametrize("name", sorted(COMBOS))
def test_knob_combinations_train(name):
  model = models.build_model(model_cfg(**COMBOS[name]), V)
  toks = jnp.asarray(tokens(5, length=T + 1))
  params = random_tree(abstract(model, toks[:, :-1]), 6, std=0.05)
  tx = optax.adam(1e-2)

  def loss_fn(p):
    logits = model.apply({"params": p}, toks[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, toks[:, 1:]).mean()

  @jax.jit
  def step(p, s):
    loss, g = jax.value_and_grad(loss_fn)(p)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, loss

  state = tx.init(params)
  losses = []
  for _ in range(4):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
