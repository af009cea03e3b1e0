"""GPT model: shapes and dtypes, causality, scan/remat/GQA equivalences, RoPE and attention
against float64 numpy references, the parameter tree contract, closed-form counts, validation."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxgpt import models
from jaxgpt.config import base_config
from jaxgpt.models import gpt, layers

V, T, B = 67, 16, 16  # a prime vocabulary, so no axis mix-up goes unnoticed by shape
BASE = dict(num_kv_heads=2)  # GQA by default: 4 query heads share 2 kv heads

# Compiling is most of this file's time on 2 CPU cores (a jitted init alone takes ~6 s because
# of threefry), so models and their jitted functions are cached per config, the equivalence
# tests use random parameters filled in numpy from the abstract tree, and all calls share the
# token shape [B, T].


def model_cfg(**overrides):
  m = base_config().model
  m.update(name="gpt", num_layers=2, d_model=64, num_heads=4, compute_dtype="float32",
           scan_layers=False, remat=False, qk_norm=True, tie_embeddings=True)
  m.update(**overrides)
  return m


@functools.cache
def build(**overrides):
  return models.build_model(model_cfg(**overrides), V)


@functools.cache
def logits_fn(**overrides):
  model = build(**overrides)
  return jax.jit(lambda params, tokens_bt: model.apply({"params": params}, tokens_bt))


@functools.cache
def grad_fn(**overrides):
  model = build(**overrides)

  def loss(params, tokens_bt):
    logp_btv = jax.nn.log_softmax(model.apply({"params": params}, tokens_bt[:, :-1]))
    return -jnp.mean(jnp.take_along_axis(logp_btv, tokens_bt[:, 1:, None], axis=-1))
  return jax.jit(jax.value_and_grad(loss))


def tokens(seed=0, batch=B, length=T):
  return np.random.default_rng(seed).integers(0, V, (batch, length)).astype(np.int32)


def abstract_params(model):
  """Boxed ShapeDtypeStructs of the parameter tree, without compiling anything."""
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens())["params"]


def random_params(seed=0, std=0.02, **overrides):
  """Parameters for the model `overrides` describes: N(0, std) kernels, norm scales 1 +- 0.1."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if path[-1].key == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.standard_normal(leaf.shape), jnp.float32)
    return jnp.asarray(std * rng.standard_normal(leaf.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, nn.unbox(abstract_params(build(**overrides))))


def restack(params):
  """Unscanned params (blocks_0 .. blocks_{L-1}) -> scanned layout (blocks with a layers axis)."""
  names = sorted((k for k in params if k.startswith("blocks_")), key=lambda k: int(k[7:]))
  out = {k: v for k, v in params.items() if not k.startswith("blocks_")}
  out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *[params[k] for k in names])
  return out


# ------------------------------------------------------------------------------------------
# Shapes, dtypes, causality.

def test_logits_float32_in_both_compute_dtypes():
  params = restack(random_params(**BASE))
  out32 = logits_fn(**BASE, scan_layers=True)(params, tokens())
  out16 = logits_fn(**BASE, scan_layers=True, compute_dtype="bfloat16")(params, tokens())
  for out in (out32, out16):
    chex.assert_shape(out, (B, T, V))
    chex.assert_type(out, jnp.float32)
    chex.assert_tree_all_finite(out)
  scale = float(jnp.max(jnp.abs(out32)))
  np.testing.assert_allclose(out16, out32, atol=0.05 * scale)  # bf16 has ~3 significant digits


def test_causal():
  """Changing tokens after position t never changes logits at positions <= t, for every t."""
  base_1t = tokens(1, batch=1)
  after_tt = np.arange(T)[None, :] > np.arange(T)[:, None]  # row t: positions > t
  shifted_tt = (base_1t + 1 + tokens(2) % (V - 1)) % V  # differs from base everywhere
  variants_tt = np.where(after_tt, shifted_tt, base_1t)
  f = logits_fn(**BASE, scan_layers=True)
  params = restack(random_params(**BASE))
  base = np.asarray(f(params, np.repeat(base_1t, T, axis=0)))[0]
  out = np.asarray(f(params, variants_tt))
  for t in range(T):
    np.testing.assert_allclose(out[t, : t + 1], base[: t + 1], atol=1e-6, err_msg=f"t={t}")
    if t < T - 1:  # and the future does matter, so the check above is not vacuous
      assert np.abs(out[t, t + 1:] - base[t + 1:]).max() > 1e-4


# ------------------------------------------------------------------------------------------
# Equivalences: scan, remat, GQA.

def test_scanned_equals_unscanned():
  params = random_params(**BASE)
  np.testing.assert_allclose(logits_fn(**BASE, scan_layers=True)(restack(params), tokens()),
                             logits_fn(**BASE)(params, tokens()), atol=1e-5, rtol=1e-5)


def test_remat_in_scan_same_loss_and_grads():
  """Remat inside the scan (the layout that saves memory at depth) against the plain unscanned
  model. A backward compile costs seconds on 2 cores, so the unscanned remat (the same nn.remat,
  with prevent_cse=True) gets no compile of its own here."""
  params = random_params(**BASE)
  toks = tokens(3, length=T + 1)
  loss, grads = grad_fn(**BASE)(params, toks)
  loss_s, grads_s = grad_fn(**BASE, remat=True, scan_layers=True)(restack(params), toks)
  np.testing.assert_allclose(loss_s, loss, rtol=1e-6)
  chex.assert_trees_all_close(grads_s, restack(grads), atol=1e-7, rtol=1e-5)


def test_gqa_equals_mha_with_repeated_kv_heads():
  """GQA with 2 kv heads == MHA whose kv heads repeat each GQA head for its 2 query heads."""
  params = random_params(**BASE)
  mha_params = dict(params)
  for i in range(2):
    attn = dict(params[f"blocks_{i}"]["attn"])
    for name in ("k", "v"):
      attn[name] = {"kernel": jnp.repeat(attn[name]["kernel"], 2, axis=1)}  # (d,n,k) -> (d,h,k)
    mha_params[f"blocks_{i}"] = dict(params[f"blocks_{i}"], attn=attn)
  np.testing.assert_allclose(logits_fn(num_kv_heads=None)(mha_params, tokens()),
                             logits_fn(**BASE)(params, tokens()), atol=1e-5, rtol=1e-5)
  same = gpt.GPTConfig.from_config(model_cfg(num_kv_heads=4), V)
  assert same == gpt.GPTConfig.from_config(model_cfg(num_kv_heads=None), V)


def test_mqa_shapes():
  model = build(num_kv_heads=1, scan_layers=True)
  params = nn.unbox(abstract_params(model))
  chex.assert_shape(params["blocks"]["attn"]["q"]["kernel"], (2, 64, 4, 16))
  chex.assert_shape(params["blocks"]["attn"]["k"]["kernel"], (2, 64, 1, 16))
  chex.assert_shape(params["blocks"]["attn"]["v"]["kernel"], (2, 64, 1, 16))
  out = jax.eval_shape(model.apply, {"params": params}, tokens())
  assert out.shape == (B, T, V) and out.dtype == jnp.float32


# ------------------------------------------------------------------------------------------
# RoPE and attention against float64 numpy.

def np_rope(x_tk, base):
  """Rotate-half RoPE as complex multiplication: pair (x_i, x_{i+K/2}) is x_i + i x_{i+K/2}."""
  n, k = x_tk.shape
  theta = base ** (-2.0 * np.arange(k // 2) / k)
  z = (x_tk[:, : k // 2] + 1j * x_tk[:, k // 2:]) * np.exp(1j * np.arange(n)[:, None] * theta)
  return np.concatenate([z.real, z.imag], axis=-1)


def np_rms(x, scale, eps=1e-6):
  return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * scale


def np_causal_attention(q_thk, k_tnk, v_tnk):
  t, h, kd = q_thk.shape
  group = h // k_tnk.shape[1]
  out = np.zeros_like(q_thk)
  for i in range(h):
    s = q_thk[:, i] @ k_tnk[:, i // group].T / np.sqrt(kd)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    out[:, i] = (p / p.sum(-1, keepdims=True)) @ v_tnk[:, i // group]
  return out


@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_rope_matches_reference_and_is_relative(base):
  rng = np.random.default_rng(0)
  k = 16
  q_k, k_k = rng.normal(size=(2, k))
  # The same q (and k) vector at every position, so dot products differ only by position.
  q_tk, k_tk = np.tile(q_k, (T, 1)), np.tile(k_k, (T, 1))
  sin, cos = layers.rope_angles(T, k, base)
  rq_tk = np.asarray(layers.apply_rope(jnp.asarray(q_tk, jnp.float32)[None, :, None], sin, cos))
  rk_tk = np.asarray(layers.apply_rope(jnp.asarray(k_tk, jnp.float32)[None, :, None], sin, cos))
  ref_q, ref_k = np_rope(q_tk, base), np_rope(k_tk, base)
  np.testing.assert_allclose(rq_tk[0, :, 0], ref_q, atol=1e-5)
  np.testing.assert_allclose(rk_tk[0, :, 0], ref_k, atol=1e-5)
  dots_tt = rq_tk[0, :, 0] @ rk_tk[0, :, 0].T  # [m, n] = <rope(q, m), rope(k, n)>
  ref_tt = ref_q @ ref_k.T
  for offset in range(-T + 1, T):
    np.testing.assert_allclose(np.diagonal(ref_tt, offset), ref_tt[max(0, -offset), max(0, offset)],
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.diagonal(dots_tt, offset), np.diagonal(ref_tt, offset), atol=1e-4)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # MHA, GQA, MQA
def test_causal_attention_matches_numpy(kv_heads):
  rng = np.random.default_rng(1)
  q = rng.normal(size=(1, 8, 4, 16))
  k, v = rng.normal(size=(2, 1, 8, kv_heads, 16))
  out = jax.jit(layers.causal_attention)(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)))
  np.testing.assert_allclose(out[0], np_causal_attention(q[0], k[0], v[0]), atol=1e-5)


def test_attention_module_matches_numpy():
  """Projections, QK-norm (non-trivial scales), RoPE, GQA and o, end to end against float64."""
  cfg = gpt.GPTConfig.from_config(model_cfg(num_kv_heads=2, rope_base=1000.0), V)
  attn = layers.Attention(cfg)
  x_btd = np.random.default_rng(4).normal(size=(1, 8, 64)).astype(np.float32)
  shapes = nn.unbox(jax.eval_shape(attn.init, jax.random.PRNGKey(0), x_btd))["params"]
  rng = np.random.default_rng(5)
  w = {name: {leaf: (rng.uniform(0.5, 1.5, s.shape) if leaf == "scale"
                     else rng.normal(size=s.shape) / 8.0)
              for leaf, s in sub.items()} for name, sub in shapes.items()}
  out = jax.jit(attn.apply)({"params": jax.tree.map(lambda a: a.astype(np.float32), w)}, x_btd)

  x = x_btd[0].astype(np.float64)
  q_thk = np_rms(np.einsum("td,dhk->thk", x, w["q"]["kernel"]), w["q_norm"]["scale"])
  k_tnk = np_rms(np.einsum("td,dnk->tnk", x, w["k"]["kernel"]), w["k_norm"]["scale"])
  v_tnk = np.einsum("td,dnk->tnk", x, w["v"]["kernel"])
  q_thk = np.stack([np_rope(q_thk[:, i], 1000.0) for i in range(4)], axis=1)
  k_tnk = np.stack([np_rope(k_tnk[:, i], 1000.0) for i in range(2)], axis=1)
  ref = np.einsum("thk,hkd->td", np_causal_attention(q_thk, k_tnk, v_tnk), w["o"]["kernel"])
  np.testing.assert_allclose(out[0], ref, atol=1e-5 * np.abs(ref).max())


# ------------------------------------------------------------------------------------------
# Head, parameter tree, counts.

def test_logit_softcap_bounds():
  cap = 5.0
  params = random_params(std=1.0, **BASE)  # large weights, so raw logits exceed the cap
  raw = np.asarray(logits_fn(**BASE)(params, tokens()))
  out = np.asarray(logits_fn(**BASE, logit_softcap=cap)(params, tokens()))
  assert np.abs(raw).max() > 2 * cap
  assert np.abs(out).max() <= cap
  np.testing.assert_allclose(out, cap * np.tanh(raw / cap), atol=1e-5)


def golden_tree(scan, tied, d=64, h=4, n=2, k=16, f=256, L=2):
  """The parameter-tree contract: path -> (shape, logical axis names)."""
  block = {
      "attn_norm/scale": ((d,), ("embed",)),
      "attn/q/kernel": ((d, h, k), ("embed", "heads", "head_dim")),
      "attn/k/kernel": ((d, n, k), ("embed", "kv_heads", "head_dim")),
      "attn/v/kernel": ((d, n, k), ("embed", "kv_heads", "head_dim")),
      "attn/o/kernel": ((h, k, d), ("heads", "head_dim", "embed")),
      "attn/q_norm/scale": ((k,), ("head_dim",)),
      "attn/k_norm/scale": ((k,), ("head_dim",)),
      "mlp_norm/scale": ((d,), ("embed",)),
      "mlp/fc/kernel": ((d, f), ("embed", "mlp")),
      "mlp/proj/kernel": ((f, d), ("mlp", "embed")),
  }
  tree = {"embed/embedding": ((V, d), ("vocab", "embed")), "final_norm/scale": ((d,), ("embed",))}
  if not tied:
    tree["lm_head/kernel"] = ((d, V), ("embed", "vocab"))
  for path, (shape, names) in block.items():
    if scan:
      tree[f"blocks/{path}"] = ((L, *shape), ("layers", *names))
    else:
      tree.update({f"blocks_{i}/{path}": (shape, names) for i in range(L)})
  return tree


@pytest.mark.parametrize("scan,tied", [(False, True), (True, True), (False, False), (True, False)])
def test_param_tree_paths_shapes_and_logical_names(scan, tied):
  flat = traverse_util.flatten_dict(
      abstract_params(build(**BASE, scan_layers=scan, tie_embeddings=tied)), sep="/")
  got = {path: (tuple(leaf.value.shape), tuple(leaf.names)) for path, leaf in flat.items()}
  assert got == golden_tree(scan, tied)
  assert all(leaf.value.dtype == jnp.float32 for leaf in flat.values())


def test_count_params_closed_form_tiny():
  m = model_cfg(**BASE, tie_embeddings=False)
  params = abstract_params(build(**BASE, tie_embeddings=False))
  d, k, f = 64, 16, 256
  block = d * 4 * k + 2 * d * 2 * k + 4 * k * d + 2 * d * f + 2 * d + 2 * k
  expected = V * d + 2 * block + d + d * V
  assert expected == 99072
  assert models.count_params(params) == expected
  assert models.count_params(nn.unbox(params)) == expected
  assert gpt.param_count(gpt.GPTConfig.from_config(m, V)) == expected
  # untied: N drops the input table and keeps the head
  assert models.non_embedding_params(params, m) == expected - V * d


def test_gpt2_small_params_and_flops():
  """12 x 768, 12 heads, tied, vocab 50304 (with QK-norm scales): 123,588,864 parameters."""
  m = base_config().model
  m.update(num_layers=12, d_model=768, num_heads=12, tie_embeddings=True, qk_norm=True)
  model = models.build_model(m, 50304)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
  n = 50304 * 768 + 12 * (4 * 768**2 + 2 * 768 * 3072 + 2 * 768 + 2 * 64) + 768
  assert n == 123_588_864
  assert models.count_params(params["params"]) == n
  assert models.non_embedding_params(params["params"], m) == n  # tied: the table is the head
  # 6 N + 12 L d T with T = 1024
  assert models.flops_per_token(m, 50304, 1024) == 6 * n + 12 * 12 * 768 * 1024 == 854_779_392


def test_init_roles_are_wired(monkeypatch):
  """Each kernel draws from its role's initializer: a scheme of per-role constants shows which
  role every leaf got (and compiles in a fraction of the time of random draws)."""
  value = {role: float(i + 1) for i, role in enumerate(layers.ROLES)}
  monkeypatch.setitem(layers.INIT_SCHEMES, "roles", lambda std, num_layers: {
      role: nn.initializers.constant(v) for role, v in value.items()})
  model = build(init="roles", tie_embeddings=False, scan_layers=True)
  p = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tokens())["params"])
  expected = {"embed/embedding": "embed", "lm_head/kernel": "head",
              **{f"blocks/attn/{n}/kernel": "qkv" for n in "qkv"},
              "blocks/attn/o/kernel": "attn_out", "blocks/mlp/fc/kernel": "mlp_in",
              "blocks/mlp/proj/kernel": "mlp_out"}
  for path, leaf in traverse_util.flatten_dict(p, sep="/").items():
    want = 1.0 if path.endswith("scale") else value[expected[path]]  # norm scales start at 1
    np.testing.assert_array_equal(leaf, want, err_msg=path)


@pytest.mark.parametrize("scheme", ["gpt2", "zero_out"])
def test_init_schemes(scheme):
  num_layers, std = 8, 0.02
  roles = layers.INIT_SCHEMES[scheme](std, num_layers)
  assert set(roles) == set(layers.ROLES)
  out_std = 0.0 if scheme == "zero_out" else std / np.sqrt(2 * num_layers)
  want = {"embed": std, "qkv": std, "mlp_in": std, "attn_out": out_std, "mlp_out": out_std,
          "head": 0.0 if scheme == "zero_out" else std}
  for role, init_fn in roles.items():
    draw = np.asarray(init_fn(jax.random.PRNGKey(0), (256, 256), jnp.float32))
    if want[role] == 0.0:
      np.testing.assert_array_equal(draw, 0.0, err_msg=role)
    else:
      np.testing.assert_allclose(draw.std(), want[role], rtol=0.02, err_msg=role)
      assert abs(draw.mean()) < 0.01 * want[role]


# ------------------------------------------------------------------------------------------
# Validation.

@pytest.mark.parametrize("key,value", [
    ("num_layers", 0),
    ("d_model", 66),  # not divisible by num_heads=4
    ("num_heads", -1),
    ("num_kv_heads", 3),  # does not divide num_heads=4
    ("head_dim", 15),  # odd: RoPE rotates pairs
    ("mlp_mult", 0.0),
    ("mlp_act", "swish"),
    ("rope_base", -1.0),
    ("logit_softcap", -5.0),
    ("compute_dtype", "float16"),
    ("init", "xavier"),
    ("init_std", 0.0),
])
def test_bad_config_names_the_key(key, value):
  with pytest.raises(ValueError, match=f"model.{key}"):
    models.build_model(model_cfg(**{key: value}), V)


def test_bad_name_and_vocab():
  with pytest.raises(ValueError, match=r"model.name='nope'.*'gpt'"):
    models.build_model(model_cfg(name="nope"), V)
  with pytest.raises(ValueError, match="model.vocab_size"):
    models.build_model(model_cfg(), None)
