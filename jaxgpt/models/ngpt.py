"""nGPT, the normalized Transformer (Loshchilov et al. 2024, arXiv 2410.01131; NVIDIA/ngpt), and the
gated variant swept by the time-to-target study (dnhkng/nGPT-muon); docs/formulas.md "nGPT",
"Gated nGPT".

Every embedding row and every matrix is unit-norm along d_model, and so is the residual stream:
each block moves the hidden state h on the unit sphere instead of adding to it.

    ngpt:        h <- Norm(h + |alpha_A| * (Norm(Attn(h)) - h)), same for the MLP (alpha_M);
                 logits = s_z * (h W_lm^T)
    gated_ngpt:  x <- Norm(x + sigmoid(g_A) * alpha_A * Attn(x)), same for the MLP (g_M, alpha_M);
                 logits = logit_scale * cos(x, W_lm rows)

Attention (both): q and k L2-normalised per head after RoPE, times s_qk; softmax scale
sqrt(head_dim), not its inverse (unit q and k make q.k a cosine, too small for a sharp softmax).
MLP (both): proj(u * SiLU(v)) with u = s_u * fc(x), v = s_v * gate(x), both times sqrt(d)
(NVIDIA's code) or only v (the paper): `model.mlp_sqrt_d` = "uv" | "v". No biases, no norm
gains, no final norm.

Learnable scales follow NVIDIA's reparameterisation: stored theta starts at s_scale and the
effective value is theta * s_init / s_scale, so Adam's step on theta is a step of size
~ lr * s_init / s_scale on the effective value.

Choices beyond the references (each documented where it is made):
- the embedded tokens are L2-normalised before the first block (the time-to-target study does;
  NVIDIA relies on the table being projected). With lazy projection (every k steps) rows drift
  off the sphere between projections, and the residual update assumes a unit-norm h.
- gated_ngpt does NOT normalise attn/mlp outputs before gating, and has TWO scalars per block
  (alpha_attn, alpha_mlp, both initialised to `model.alpha`): the study's GatedBlock
  (modded-nanogpt/train_architectural.py) does exactly this.
- s_qk has shape (head_dim,), shared by all heads and by q and k (NVIDIA: one per (head, head_dim)
  channel, without GQA); this keeps GQA and the ("head_dim",) logical axis simple.
- the effective alpha of nGPT is |theta * s_init / s_scale|, as in NVIDIA's code (torch.abs).

Parameters are float32; the residual stream and every normalisation are float32; matmuls run in
the compute dtype; logits are float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgpt import checks, registry
from jaxgpt.errors import ConfigError
from jaxgpt.keypath import key_str
from jaxgpt.models import dims, docmask, gpt, layers

NAMES = ("ngpt", "gated_ngpt")
MLP_SQRT_D = ("uv", "v")  # where the sqrt(d) input scale goes: NVIDIA code ("uv"), paper ("v")
EPS = 1e-12  # added to sums of squares; only matters for an all-zero vector

# nGPT's learnable-scale constants (init value, stored-theta scale); theta_0 = scale.
ALPHA_INIT = 0.05  # alpha_A, alpha_M; scale 1/sqrt(d)
SQK_INIT = 1.0  # s_qk; scale 1/sqrt(d)
SUV_INIT = 1.0  # s_u, s_v; scale 1
SZ_INIT = 1.0  # s_z; scale 1/sqrt(d)


@dataclasses.dataclass(frozen=True)
class NGPTConfig:
  vocab_size: int  # V
  num_layers: int  # L
  d_model: int  # D
  num_heads: int  # H
  num_kv_heads: int  # N; H % N == 0
  head_dim: int  # K
  mlp_dim: int  # F: int(mlp_mult * D), width of u and v
  gated: bool  # False: nGPT; True: the time-to-target study's gated residuals
  rope_base: float = 10000.0
  scan_layers: bool = True
  remat: bool = False
  compute_dtype: str = "float32"
  attention_impl: str | None = None
  alpha: float = 0.15  # gated: initial alpha_attn, alpha_mlp
  logit_scale: float = 15.0  # gated: logits = logit_scale * cosine
  mlp_sqrt_d: str = "uv"  # sqrt(d) on u and v ("uv", NVIDIA code) or v only ("v", paper)
  document_mask: bool = False  # attention stays inside each document (dims.GPTConfig's)
  document_positions: bool = False  # RoPE positions restart at each document
  bos_id: int | None = None  # the boundary token starting each document (document_mask only)

  @property
  def dtype(self) -> jnp.dtype:
    return jnp.dtype(self.compute_dtype)

  @classmethod
  def from_config(cls, cfg_model: Any, vocab_size: int | None = None,
                  bos_id: int | None = None) -> NGPTConfig:
    """Validated config from `config.model` (name "ngpt" or "gated_ngpt"). GPT knobs that mean
    nothing here must be off: logit_softcap None, tie_embeddings False, qk_norm False,
    mlp_act "swiglu". init / init_std / norm_eps are ignored (init is N(0, 1/D) then normalised,
    so the std drops out). `bos_id` is `data.bos_id` (document masking)."""
    m = cfg_model
    name = m.get("name", "ngpt")
    checks.one_of("model.name", name, NAMES)
    # The shared shape keys go through the GPT validation on a copy with neutral GPT knobs.
    neutral = dict(mlp_act="relu2", qk_norm=False, tie_embeddings=False, logit_softcap=None,
                   init="gpt2", init_std=0.02)
    g = dims.GPTConfig.from_config(_Overlay(m, neutral), vocab_size, bos_id)
    if m.get("logit_softcap") is not None:
      raise ConfigError(f"model.logit_softcap={m.logit_softcap!r} must be None for {name}: its "
                       "logits are already bounded (s_z / logit_scale)")
    if m.get("tie_embeddings", False) is not False:
      raise ConfigError(f"model.tie_embeddings={m.tie_embeddings!r} must be False for {name}: "
                       "the output embedding lm_head/embedding is its own table")
    if m.get("qk_norm", False) is not False:
      raise ConfigError(f"model.qk_norm={m.qk_norm!r} must be False for {name}: q and k are "
                       "always L2-normalised and scaled by s_qk (no RMSNorm gains)")
    if m.get("mlp_act", "swiglu") != "swiglu":
      raise ConfigError(f"model.mlp_act={m.mlp_act!r} must be 'swiglu' for {name}: its MLP is "
                       "u * SiLU(v)")
    alpha = checks.positive("model.alpha", m.get("alpha", 0.15))
    logit_scale = checks.positive("model.logit_scale", m.get("logit_scale", 15.0))
    mlp_sqrt_d = checks.one_of("model.mlp_sqrt_d", m.get("mlp_sqrt_d", "uv"), MLP_SQRT_D)
    return cls(vocab_size=g.vocab_size, num_layers=g.num_layers, d_model=g.d_model,
               num_heads=g.num_heads, num_kv_heads=g.num_kv_heads, head_dim=g.head_dim,
               mlp_dim=g.mlp_dim, gated=name == "gated_ngpt", rope_base=g.rope_base,
               scan_layers=g.scan_layers, remat=g.remat, compute_dtype=g.compute_dtype,
               attention_impl=g.attention_impl, alpha=float(alpha),
               logit_scale=float(logit_scale), mlp_sqrt_d=mlp_sqrt_d,
               document_mask=g.document_mask, document_positions=g.document_positions,
               bos_id=g.bos_id)


class _Overlay:
  """Read-only view of a ConfigDict with some keys replaced (`.get`, `[key]` and attributes)."""

  def __init__(self, base: Any, over: dict[str, Any]):
    self._base, self._over = base, over

  def get(self, key: str, default: Any = None) -> Any:
    return self._over[key] if key in self._over else self._base.get(key, default)

  def __getitem__(self, key: str) -> Any:
    return self._over[key] if key in self._over else self._base[key]

  def __getattr__(self, key: str) -> Any:
    if key.startswith("_"):
      raise AttributeError(key)
    return self[key]


# ------------------------------------------------------------------------------------------
# Closed-form sizes.

def param_count(cfg: NGPTConfig) -> int:
  d, k, f, v = cfg.d_model, cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
  attn = d * cfg.num_heads * k + 2 * d * cfg.num_kv_heads * k + cfg.num_heads * k * d + k
  mlp = 3 * d * f + 2 * f
  scales = (2 * d + 2) if cfg.gated else 2 * d  # gates + alphas | per-dim alphas
  return 2 * v * d + cfg.num_layers * (attn + mlp + scales) + (0 if cfg.gated else v)


def flops_per_token(cfg: NGPTConfig, seq_len: int) -> float:
  """6 N + 12 L (H K) T with N all parameters but the input table (docs/formulas.md "MFU")."""
  n = param_count(cfg) - cfg.vocab_size * cfg.d_model
  return 6.0 * n + 12.0 * cfg.num_layers * cfg.num_heads * cfg.head_dim * seq_len


# ------------------------------------------------------------------------------------------
# Normalisation, init, projection.

def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """x / ||x|| along `axis`, in float32 (returns float32)."""
  x32 = x.astype(jnp.float32)
  return x32 * jax.lax.rsqrt(jnp.sum(jnp.square(x32), axis=axis, keepdims=True) + EPS)


def unit_init(axis: int) -> layers.Initializer:
  """N(0, 1/d) then unit-norm along `axis` (of the per-layer kernel; nn.scan adds the layers axis
  outside the initializer)."""
  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    d = shape[axis]
    w = jax.random.normal(key, shape, jnp.float32) / math.sqrt(d)
    return l2_normalize(w, axis).astype(dtype)
  return init


# Per-layer axis along which each matrix is unit-norm (its d_model axis), by (module, param) name.
_UNIT_AXIS = {("embed", "embedding"): -1, ("lm_head", "embedding"): -1,
              ("q", "kernel"): 0, ("k", "kernel"): 0, ("v", "kernel"): 0,
              ("fc", "kernel"): 0, ("gate", "kernel"): 0,
              ("o", "kernel"): -1, ("proj", "kernel"): -1}


def _path_names(path: tuple) -> tuple[str, ...]:
  return tuple(str(p.key) for p in path if isinstance(p, jax.tree_util.DictKey))


def _projection_axis(path: tuple, leaf: Any) -> int | None:
  names = _path_names(path)
  rel = _UNIT_AXIS.get(tuple(names[-2:]))
  if rel is None:
    return None
  ndim = len(leaf.shape)
  if rel < 0:
    return ndim + rel
  return rel + (1 if "blocks" in names else 0)  # scanned: a leading layers axis


def projection_axes(params: Any) -> Any:
  """For each leaf, the absolute axis (a leading layers axis included) along which it must be
  unit-norm: the d_model axis. None for vectors and scalars. Same tree structure as `params`
  (when mapping it together with params, pass `is_leaf=lambda x: x is None`)."""
  return jax.tree_util.tree_map_with_path(_projection_axis, params)


def project(params: Any) -> Any:
  """Every matrix L2-normalised along its projection axis; other leaves unchanged. Pure; works on
  stacked (scanned) layers, plain or boxed (nn.Partitioned) trees, any float dtype."""
  def one(path, leaf):
    axis = _projection_axis(path, leaf)
    return leaf if axis is None else l2_normalize(leaf, axis).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(one, params)


# ------------------------------------------------------------------------------------------
# Residual updates (pure functions, tested directly).

def ngpt_update(h: jax.Array, out: jax.Array, alpha: jax.Array) -> jax.Array:
  """nGPT: Norm(h + alpha * (Norm(out) - h)), float32."""
  h = h.astype(jnp.float32)
  return l2_normalize(h + alpha * (l2_normalize(out) - h))


def gated_update(x: jax.Array, out: jax.Array, gate: jax.Array, alpha: jax.Array) -> jax.Array:
  """Gated nGPT (time-to-target study): Norm(x + sigmoid(gate) * alpha * out), out not
  normalised; float32."""
  return l2_normalize(x.astype(jnp.float32)
                      + jax.nn.sigmoid(gate) * alpha * out.astype(jnp.float32))


def _scale_param(module: nn.Module, name: str, axes: tuple[str, ...], shape: tuple[int, ...],
                 init: float, scale: float) -> jax.Array:
  """NVIDIA's reparameterised scale: stored theta starts at `scale`; returns theta * init/scale."""
  theta = module.param(name, nn.with_logical_partitioning(nn.initializers.constant(scale), axes),
                       shape, jnp.float32)
  return theta * (init / scale)


# ------------------------------------------------------------------------------------------
# Model.

def _proj(name: str, einsum_str: str, shape: tuple[int, ...], axes: tuple[str, ...],
          unit_axis: int, dtype: Any) -> nn.Einsum:
  return layers.einsum_proj(name, einsum_str, shape, axes, unit_init(unit_axis), dtype)


class Attention(nn.Module):
  """q, k, v (embed -> heads), RoPE, L2-normalised q and k times s_qk, softmax scale sqrt(K).
  With `docs`, attention stays inside each document (as `layers.Attention`)."""
  cfg: NGPTConfig

  @nn.compact
  def __call__(self, x_btd: jax.Array, docs: docmask.Documents | None = None) -> jax.Array:
    c = self.cfg
    d, h, n, k = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim
    proj = functools.partial(_proj, dtype=c.dtype)
    q_bthk = proj("q", "btd,dhk->bthk", (d, h, k), ("embed", "heads", "head_dim"), 0)(x_btd)
    k_btnk = proj("k", "btd,dnk->btnk", (d, n, k), ("embed", "kv_heads", "head_dim"), 0)(x_btd)
    v_btnk = proj("v", "btd,dnk->btnk", (d, n, k), ("embed", "kv_heads", "head_dim"), 0)(x_btd)
    sin, cos = layers.rope_tables(x_btd.shape[1], k, c.rope_base,
                                  None if docs is None else docs.positions_bt)
    s_qk_k = _scale_param(self, "s_qk", ("head_dim",), (k,), SQK_INIT, 1 / math.sqrt(d))
    # RoPE is a rotation, so normalising before or after it is the same; NVIDIA does it after.
    q_bthk = (s_qk_k * l2_normalize(layers.apply_rope(q_bthk, sin, cos))).astype(c.dtype)
    k_btnk = (s_qk_k * l2_normalize(layers.apply_rope(k_btnk, sin, cos))).astype(c.dtype)
    o_bthk = layers.causal_attention(q_bthk, k_btnk, v_btnk, c.attention_impl,
                                     None if docs is None else docs.segment_ids_bt,
                                     scale=math.sqrt(k))
    return proj("o", "bthk,hkd->btd", (h, k, d), ("heads", "head_dim", "embed"), -1)(o_bthk)


class MLP(nn.Module):
  """u = s_u * fc(x), v = s_v * gate(x) (times sqrt(d) per mlp_sqrt_d); proj(u * SiLU(v))."""
  cfg: NGPTConfig

  @nn.compact
  def __call__(self, x_btd: jax.Array) -> jax.Array:
    c = self.cfg
    d, f = c.d_model, c.mlp_dim
    u_btf = _proj("fc", "btd,df->btf", (d, f), ("embed", "mlp"), 0, c.dtype)(x_btd)
    v_btf = _proj("gate", "btd,df->btf", (d, f), ("embed", "mlp"), 0, c.dtype)(x_btd)
    s_u_f = _scale_param(self, "s_u", ("mlp",), (f,), SUV_INIT, 1.0)
    s_v_f = _scale_param(self, "s_v", ("mlp",), (f,), SUV_INIT, 1.0)
    # Unit-norm x and rows give fc outputs of size ~1/sqrt(d); sqrt(d) brings v into SiLU's
    # non-linear range. NVIDIA's code scales u too ("uv"), the paper v only ("v").
    sqrt_d = math.sqrt(d)
    u_btf = u_btf * s_u_f * (sqrt_d if c.mlp_sqrt_d == "uv" else 1.0)
    v_btf = v_btf * s_v_f * sqrt_d
    h_btf = (u_btf * jax.nn.silu(v_btf)).astype(c.dtype)
    return _proj("proj", "btf,fd->btd", (f, d), ("mlp", "embed"), -1, c.dtype)(h_btf)


def _branch(sub: type[nn.Module], c: NGPTConfig, name: str, h_btd: jax.Array,
            docs: docmask.Documents | None) -> jax.Array:
  """The block's attention (which reads the window's documents) or MLP (per token) on h."""
  module = sub(c, name=name)
  return module(h_btd, docs) if sub is Attention else module(h_btd)


class Block(nn.Module):
  """One normalized block on a unit-norm float32 stream; returns (h, None) for nn.scan.
  `docs`: the window's documents (or None), given to the attention."""
  cfg: NGPTConfig

  @nn.compact
  def __call__(self, h_btd: jax.Array, _: Any = None,
               docs: docmask.Documents | None = None) -> tuple[jax.Array, None]:
    c = self.cfg
    d = c.d_model
    if c.gated:
      for name, sub in (("attn", Attention), ("mlp", MLP)):
        gate_d = self.param(f"gate_{name}", nn.with_logical_partitioning(
            nn.initializers.zeros, ("embed",)), (d,), jnp.float32)
        alpha = self.param(f"alpha_{name}", nn.with_logical_partitioning(
            nn.initializers.constant(c.alpha), ()), (), jnp.float32)
        h_btd = gated_update(h_btd, _branch(sub, c, name, h_btd, docs), gate_d, alpha)
    else:
      for name, sub in (("attn", Attention), ("mlp", MLP)):
        alpha_d = jnp.abs(_scale_param(self, f"alpha_{name}", ("embed",), (d,), ALPHA_INIT,
                                       1 / math.sqrt(d)))
        h_btd = ngpt_update(h_btd, _branch(sub, c, name, h_btd, docs), alpha_d)
    return nn.with_logical_constraint(h_btd, gpt.ACT_AXES), None


def block_class(cfg: NGPTConfig) -> type[nn.Module]:
  """The nGPT Block, wrapped in remat and/or scan exactly as the GPT's."""
  return gpt.block_class(cfg, Block)


class _Table(nn.Module):
  """A bare (rows, d_model) table named `embedding`, unit-norm along d_model."""
  rows: int
  features: int

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param("embedding", nn.with_logical_partitioning(unit_init(-1), ("vocab", "embed")),
                      (self.rows, self.features), jnp.float32)


class NGPT(nn.Module):
  """Tokens [B, T] -> float32 logits [B, T, V]; nGPT or gated nGPT as cfg.gated says."""
  cfg: NGPTConfig

  @nn.compact
  def __call__(self, tokens_bt: jax.Array) -> jax.Array:
    c = self.cfg
    layers.check_tokens_bt(tokens_bt)
    embed = nn.Embed(c.vocab_size, c.d_model, dtype=jnp.float32, param_dtype=jnp.float32,
                     embedding_init=nn.with_logical_partitioning(unit_init(-1),
                                                                 ("vocab", "embed")),
                     name="embed")
    # Normalised even though the table is projected: lazy projection lets rows drift (see top).
    h_btd = nn.with_logical_constraint(l2_normalize(embed(tokens_bt)), gpt.ACT_AXES)

    docs = gpt.window_documents(c, tokens_bt)
    block = block_class(c)
    if c.scan_layers:
      h_btd, _ = block(c, name="blocks")(h_btd, None, docs)
    else:
      for i in range(c.num_layers):
        h_btd, _ = block(c, name=f"blocks_{i}")(h_btd, None, docs)

    w_vd = _Table(c.vocab_size, c.d_model, name="lm_head")()
    if c.gated:  # cosine: both sides normalised (the study normalises the table on every call)
      h_btd, w_vd = l2_normalize(h_btd), l2_normalize(w_vd)
    logits_btv = jnp.einsum("btd,vd->btv", h_btd.astype(c.dtype), w_vd.astype(c.dtype),
                            preferred_element_type=jnp.float32).astype(jnp.float32)
    if c.gated:
      logits_btv = c.logit_scale * logits_btv
    else:
      s_z_v = _scale_param(self, "s_z", ("vocab",), (c.vocab_size,), SZ_INIT,
                           1 / math.sqrt(c.d_model))
      logits_btv = s_z_v * logits_btv
    return nn.with_logical_constraint(logits_btv, gpt.LOGIT_AXES)


def build(cfg_model: Any, vocab_size: int | None = None, bos_id: int | None = None) -> NGPT:
  cfg = NGPTConfig.from_config(cfg_model, vocab_size, bos_id)
  dims.check_bos_id(cfg.document_mask, bos_id, cfg.vocab_size)
  return NGPT(cfg)


def model_flops_per_token(cfg_model: Any, vocab_size: int | None, seq_len: int) -> float:
  return flops_per_token(NGPTConfig.from_config(cfg_model, vocab_size), seq_len)


def set_traced(params: Any, values: dict) -> Any:
  """Gated nGPT's `model.alpha` is the initial value of every `alpha_*` leaf: writes one
  trial's value into freshly initialised parameters (vmapped cohorts differ in it)."""
  alpha = values["model.alpha"]

  def fix(path, leaf):
    return jnp.full_like(leaf, alpha) if key_str(path[-1]).startswith("alpha_") else leaf

  return jax.tree_util.tree_map_with_path(fix, params)


def check(config: Any) -> None:
  bos_id = config.data.get("bos_id")
  cfg = NGPTConfig.from_config(config.model, config.model.get("vocab_size") or 64, bos_id)
  dims.check_bos_id(cfg.document_mask and not dims.data_provides_bos(config.data), bos_id)


registry.MODELS.register("ngpt", registry.ModelFamily(
    build=build, check=check, flops_per_token=model_flops_per_token, projection=project))
registry.MODELS.register("gated_ngpt", registry.ModelFamily(
    build=build, check=check, flops_per_token=model_flops_per_token, projection=project,
    traced_keys=("model.alpha",), set_traced=set_traced))
