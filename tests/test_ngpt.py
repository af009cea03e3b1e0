"""nGPT and gated nGPT: unit-norm init and projection, the projection-axes table, unit-norm blocks,
a float64 numpy reference of one nGPT block, the residual updates, causality, scan equivalence,
logit bounds, counts and config validation."""

import functools
import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgpt import models
from jaxgpt.config import base_config
from jaxgpt.models import layers, ngpt

V, T, B, D = 67, 8, 2, 32  # a prime vocabulary, so no axis mix-up goes unnoticed by shape

# Compiling dominates on 2 CPU cores: models and jitted functions are cached per config, and most
# tests use random unit-norm parameters filled in numpy from the abstract (eval_shape) tree.


def model_cfg(**overrides):
  m = base_config().model
  m.update(name="ngpt", num_layers=2, d_model=D, num_heads=4, num_kv_heads=2, mlp_mult=2.0,
           mlp_act="swiglu", qk_norm=False, tie_embeddings=False, compute_dtype="float32",
           scan_layers=False, remat=False)
  m.update(**overrides)
  return m


@functools.cache
def build(**overrides):
  return models.build_model(model_cfg(**overrides), V)


@functools.cache
def logits_fn(**overrides):
  model = build(**overrides)
  return jax.jit(lambda params, tokens_bt: model.apply({"params": params}, tokens_bt))


def tokens(seed=0, batch=B, length=T):
  return np.random.default_rng(seed).integers(0, V, (batch, length)).astype(np.int32)


def abstract_params(**overrides):
  return jax.eval_shape(build(**overrides).init, jax.random.PRNGKey(0), tokens())["params"]


def random_params(seed=0, **overrides):
  """Unit-norm random matrices; every scale at its init theta times 1 +- 0.3; gates N(0, 1)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name in ("kernel", "embedding"):
      return jnp.asarray(rng.standard_normal(leaf.shape), jnp.float32)
    if name.startswith("gate_"):
      return jnp.asarray(rng.standard_normal(leaf.shape), jnp.float32)
    theta0 = {"s_u": 1.0, "s_v": 1.0}.get(name, 1 / math.sqrt(D))
    if overrides.get("name") == "gated_ngpt" and name.startswith("alpha_"):
      theta0 = 0.15
    return jnp.asarray(theta0 * (1 + 0.3 * rng.uniform(-1, 1, leaf.shape)), jnp.float32)
  params = jax.tree_util.tree_map_with_path(fill, nn.unbox(abstract_params(**overrides)))
  return ngpt.project(params)


def restack(params):
  """Unscanned params (blocks_0 .. blocks_{L-1}) -> scanned layout (blocks with a layers axis)."""
  names = sorted((k for k in params if k.startswith("blocks_")), key=lambda k: int(k[7:]))
  out = {k: v for k, v in params.items() if not k.startswith("blocks_")}
  out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *[params[k] for k in names])
  return out


def flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def assert_unit_norm(params):
  axes = flat(ngpt.projection_axes(params))
  checked = 0
  for path, leaf in flat(params).items():
    if axes[path] is not None:
      norm = jnp.linalg.norm(leaf, axis=axes[path])
      chex.assert_trees_all_close(norm, jnp.ones_like(norm), atol=1e-5, custom_message=path)
      checked += 1
  assert checked >= 9  # embed, lm_head and 7 kernels per (stack of) block(s)


def unit_rows(rng, *shape):
  x = rng.standard_normal(shape)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------
# Init, projection, projection axes.

@functools.cache
def init_boxed(**overrides):
  # Jitted, with an rbg key: threefry init compiles ~2.5x slower on 2 CPU cores (10 s vs 4 s).
  key = jax.random.key(0, impl="rbg")
  return jax.jit(build(**overrides).init)(key, tokens())["params"]


def init_params(**overrides):
  return nn.unbox(init_boxed(**overrides))


@pytest.mark.parametrize("overrides", [dict(), dict(scan_layers=True),
                                       dict(name="gated_ngpt")], ids=str)
def test_init_is_unit_norm_and_scales_start_at_theta0(overrides):
  params = init_params(**overrides)
  assert_unit_norm(params)
  gated = overrides.get("name") == "gated_ngpt"
  expected = {"s_qk": 1 / math.sqrt(D), "s_u": 1.0, "s_v": 1.0, "s_z": 1 / math.sqrt(D),
              "alpha_attn": 0.15 if gated else 1 / math.sqrt(D),
              "alpha_mlp": 0.15 if gated else 1 / math.sqrt(D), "gate_attn": 0.0, "gate_mlp": 0.0}
  for path, leaf in flat(params).items():
    name = path.split("/")[-1]
    if name in expected:
      np.testing.assert_allclose(leaf, expected[name], rtol=1e-6, err_msg=path)
  assert ("s_z" in params) != gated


def test_project_restores_unit_norm_and_leaves_vectors():
  params = restack(init_params())
  rng = np.random.default_rng(3)
  noisy = jax.tree.map(lambda x: x * (1 + rng.uniform(0, 2, x.shape)).astype(np.float32)
                       + 0.1 * rng.standard_normal(x.shape).astype(np.float32), params)
  projected = ngpt.project(noisy)
  assert_unit_norm(projected)
  axes = flat(ngpt.projection_axes(params))
  for path, leaf in flat(projected).items():
    if axes[path] is None:
      np.testing.assert_array_equal(leaf, flat(noisy)[path], err_msg=path)
  chex.assert_trees_all_close(ngpt.project(projected), projected, atol=1e-6)  # idempotent
  # Boxed (nn.Partitioned) trees keep their boxes and metadata.
  boxed_proj = ngpt.project(init_boxed(scan_layers=True))
  assert boxed_proj["blocks"]["attn"]["q"]["kernel"].names == ("layers", "embed", "heads",
                                                                  "head_dim")
  assert_unit_norm(nn.unbox(boxed_proj))


GOLDEN_AXES = {
    "embed/embedding": 1, "lm_head/embedding": 1, "s_z": None,
    "attn/q/kernel": 0, "attn/k/kernel": 0, "attn/v/kernel": 0, "attn/o/kernel": 2,
    "attn/s_qk": None, "mlp/fc/kernel": 0, "mlp/gate/kernel": 0, "mlp/proj/kernel": 1,
    "mlp/s_u": None, "mlp/s_v": None, "alpha_attn": None, "alpha_mlp": None,
    "gate_attn": None, "gate_mlp": None,
}


@pytest.mark.parametrize("name", ["ngpt", "gated_ngpt"])
@pytest.mark.parametrize("scan", [False, True])
def test_projection_axes_golden(name, scan):
  abstract = nn.unbox(abstract_params(name=name, scan_layers=scan))
  got = flat(ngpt.projection_axes(abstract))
  expected = {}
  for key, axis in GOLDEN_AXES.items():
    if key.startswith(("embed", "lm_head", "s_z")):
      if key != "s_z" or name == "ngpt":
        expected[key] = axis
      continue
    if key.startswith("gate_") and name == "ngpt":
      continue
    shift = 1 if (scan and axis is not None) else 0
    blocks = ["blocks"] if scan else ["blocks_0", "blocks_1"]
    for b in blocks:
      expected[f"{b}/{key}"] = None if axis is None else axis + shift
  assert got == expected
  # The axis is the one named "embed" in every matrix's logical axes.
  names = flat(jax.tree.map(lambda x: x.names, abstract_params(name=name, scan_layers=scan),
                            is_leaf=lambda x: isinstance(x, nn.Partitioned)))
  for path, axis in got.items():
    if axis is not None:
      assert names[path][axis] == "embed", path


# ------------------------------------------------------------------------------------------
# Residual updates.

def test_ngpt_update_matches_numpy():
  rng = np.random.default_rng(0)
  h, a = unit_rows(rng, 3, 5, D), 3.0 * rng.standard_normal((3, 5, D))
  alpha = rng.uniform(0.01, 0.5, D)
  a_unit = a / np.linalg.norm(a, axis=-1, keepdims=True)
  ref = h + alpha * (a_unit - h)
  ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
  got = ngpt.ngpt_update(jnp.float32(h), jnp.float32(a), jnp.float32(alpha))
  chex.assert_type(got, jnp.float32)
  np.testing.assert_allclose(got, ref, atol=1e-6)


def test_gated_update_saturated_gates():
  rng = np.random.default_rng(1)
  x, out = unit_rows(rng, 3, 5, D), 2.0 * rng.standard_normal((3, 5, D))
  alpha = 0.15
  ref = x + alpha * out
  ref /= np.linalg.norm(ref, axis=-1, keepdims=True)
  f = functools.partial(ngpt.gated_update, jnp.float32(x), jnp.float32(out), alpha=alpha)
  np.testing.assert_allclose(f(gate=jnp.full((D,), 40.0)), ref, atol=1e-6)  # sigmoid = 1
  np.testing.assert_allclose(f(gate=jnp.full((D,), -40.0)), x, atol=1e-6)  # sigmoid = 0
  # gate 0: half the step, and the output is not normalised first (the time-to-target study's
  # GatedBlock).
  half = x + 0.5 * alpha * out
  np.testing.assert_allclose(f(gate=jnp.zeros((D,))),
                             half / np.linalg.norm(half, axis=-1, keepdims=True), atol=1e-6)


# ------------------------------------------------------------------------------------------
# One nGPT block against float64 numpy.

def np_rope(x_btnk):
  sin, cos = (a.astype(np.float64)[None, :, None, :] for a in
              layers.rope_angles(x_btnk.shape[1], x_btnk.shape[-1], 10000.0))
  x1, x2 = np.split(x_btnk, 2, axis=-1)
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def np_ngpt_block(p, h, mlp_sqrt_d="uv"):
  p = jax.tree.map(lambda x: np.asarray(x, np.float64), p)
  norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  a, m = p["attn"], p["mlp"]
  num_heads, num_kv, head_dim = a["q"]["kernel"].shape[1], a["k"]["kernel"].shape[1], \
      a["q"]["kernel"].shape[2]
  s_qk = a["s_qk"] * math.sqrt(D)  # init 1, scale 1/sqrt(d)
  q = norm(np_rope(np.einsum("btd,dhk->bthk", h, a["q"]["kernel"]))) * s_qk
  k = norm(np_rope(np.einsum("btd,dnk->btnk", h, a["k"]["kernel"]))) * s_qk
  v = np.einsum("btd,dnk->btnk", h, a["v"]["kernel"])
  k, v = (np.repeat(x, num_heads // num_kv, axis=2) for x in (k, v))
  s = np.einsum("bthk,bshk->bhts", q, k) * math.sqrt(head_dim)
  s = np.where(np.tril(np.ones((h.shape[1], h.shape[1]), bool)), s, -np.inf)
  w = np.exp(s - s.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  attn = np.einsum("bthk,hkd->btd", np.einsum("bhts,bshk->bthk", w, v), a["o"]["kernel"])
  alpha_a = np.abs(p["alpha_attn"] * 0.05 * math.sqrt(D))
  h = norm(h + alpha_a * (norm(attn) - h))
  u = h @ m["fc"]["kernel"] * m["s_u"] * (math.sqrt(D) if mlp_sqrt_d == "uv" else 1.0)
  g = h @ m["gate"]["kernel"] * m["s_v"] * math.sqrt(D)
  mlp = (u * g / (1 + np.exp(-g))) @ m["proj"]["kernel"]
  alpha_m = np.abs(p["alpha_mlp"] * 0.05 * math.sqrt(D))
  return norm(h + alpha_m * (norm(mlp) - h))


@pytest.mark.parametrize("mlp_sqrt_d", ["uv", "v"])
def test_ngpt_block_matches_numpy_float64(mlp_sqrt_d):
  params = random_params(seed=5)["blocks_0"]
  cfg = ngpt.NGPTConfig.from_config(model_cfg(mlp_sqrt_d=mlp_sqrt_d), V)
  h = unit_rows(np.random.default_rng(6), B, T, D)
  got, _ = ngpt.Block(cfg).apply({"params": params}, jnp.float32(h))
  np.testing.assert_allclose(got, np_ngpt_block(params, h, mlp_sqrt_d), atol=2e-5)


# ------------------------------------------------------------------------------------------
# Whole model: unit-norm blocks, causality, scan equivalence, logits.

@pytest.mark.parametrize("name", ["ngpt", "gated_ngpt"])
def test_every_block_output_is_unit_norm(name):
  model, params = build(name=name), random_params(name=name)
  _, state = model.apply({"params": params}, tokens(), capture_intermediates=lambda mdl, _: (
      isinstance(mdl, ngpt.Block)))
  outs = {k: v["__call__"][0][0] for k, v in state["intermediates"].items()}
  assert sorted(outs) == ["blocks_0", "blocks_1"]
  for k, h_btd in outs.items():
    norm = jnp.linalg.norm(h_btd, axis=-1)
    chex.assert_trees_all_close(norm, jnp.ones_like(norm), atol=1e-5, custom_message=k)


@pytest.mark.parametrize("name", ["ngpt", "gated_ngpt"])
def test_causal_scan_equivalent_float32_and_bounded(name):
  """Scanned (with remat) equals unscanned; changing tokens after t never changes logits <= t."""
  params = random_params(seed=1, name=name)
  toks = tokens(2)
  ref = logits_fn(name=name)(params, toks)
  f = logits_fn(name=name, scan_layers=True, remat=True)
  out = f(restack(params), toks)
  chex.assert_shape(out, (B, T, V))
  chex.assert_type(out, jnp.float32)
  np.testing.assert_allclose(out, ref, atol=1e-5)
  if name == "gated_ngpt":
    assert float(jnp.max(jnp.abs(out))) <= 15.0 * (1 + 1e-5)

  base_1t = tokens(1, batch=1)
  after_tt = np.arange(T)[None, :] > np.arange(T)[:, None]  # row t: positions > t
  shifted_tt = (base_1t + 1 + tokens(2, batch=T) % (V - 1)) % V  # differs from base everywhere
  variants_tt = np.where(after_tt, shifted_tt, base_1t)
  stacked = restack(params)
  base = np.asarray(f(stacked, np.repeat(base_1t, T, axis=0)))[0]
  varied = np.asarray(f(stacked, variants_tt))
  for t in range(T):
    np.testing.assert_allclose(varied[t, : t + 1], base[: t + 1], atol=1e-6, err_msg=f"t={t}")
    assert not np.allclose(varied[t, T - 1], base[T - 1]) or t == T - 1


def test_gated_logits_are_scaled_cosines():
  """An embedding row equal to the lm_head row of token j gives logit logit_scale at j when the
  blocks do nothing (gates at -large)."""
  params = random_params(seed=2, name="gated_ngpt")
  for b in ("blocks_0", "blocks_1"):
    params[b]["gate_attn"] = params[b]["gate_mlp"] = jnp.full((D,), -60.0)
  params["lm_head"]["embedding"] = params["embed"]["embedding"]
  toks = tokens(4)
  out = logits_fn(name="gated_ngpt")(params, toks)
  picked = np.take_along_axis(np.asarray(out), toks[..., None], axis=-1)
  np.testing.assert_allclose(picked, 15.0, atol=1e-4)


def test_bfloat16_compute_gives_float32_logits():
  params = restack(random_params())
  out = logits_fn(scan_layers=True, compute_dtype="bfloat16")(params, tokens())
  ref = logits_fn(scan_layers=True, remat=True)(params, tokens())
  chex.assert_type(out, jnp.float32)
  np.testing.assert_allclose(out, ref, atol=0.05 * float(jnp.max(jnp.abs(ref))))


# ------------------------------------------------------------------------------------------
# Counts and config validation.

@pytest.mark.parametrize("name", ["ngpt", "gated_ngpt"])
def test_param_count_and_flops_dispatch(name):
  cfg = ngpt.NGPTConfig.from_config(model_cfg(name=name), V)
  assert models.count_params(abstract_params(name=name)) == ngpt.param_count(cfg)
  n = ngpt.param_count(cfg) - V * D
  assert models.flops_per_token(model_cfg(name=name), V, 128) == 6.0 * n + 12.0 * 2 * D * 128


@pytest.mark.parametrize("key,value", [
    ("logit_softcap", 30.0), ("tie_embeddings", True), ("qk_norm", True), ("mlp_act", "relu2"),
    ("alpha", 0.0), ("logit_scale", -1.0), ("mlp_sqrt_d", "u"),
    ("num_kv_heads", 3), ("remat", None),
])
@pytest.mark.parametrize("name", ["ngpt", "gated_ngpt"])
def test_bad_config_raises_naming_the_key(name, key, value):
  cfg = model_cfg(name=name)
  with cfg.unlocked():
    cfg[key] = value
  with pytest.raises(ValueError, match=f"model.{key}="):
    models.build_model(cfg, V)
