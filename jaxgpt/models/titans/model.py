"""Titans (Behrouz et al. 2025): a GPT whose attention sub-layer is paired with a neural long-term
memory (`memory.py`), as MAC (memory as context) or MAG (memory as gate). `model.name = titans`,
`model.titans.*` keys; equations, shapes and the differences from the nested grid's TitanMAC in
docs/titans.md.

Each block: x += Mixer(RMSNorm(x)); x += MLP(RMSNorm(x)) (layers.MLP). Every block has its own
memory: initial weights W_0 (learned by the outer optimizer), reset for every sequence.

    MAC, per segment of Ls tokens (a lax.scan carrying the memory state):
      h   = M_{W_prev}(q(x))                      one retrieved token per segment token
      y   = Attn over [persistent | h | x]        causal; persistent tokens always visible
      write the segment's u = RMS(y) into the memory (chunked), reading per chunk
      out = y * sigmoid(RMSNorm(R(M_chunk(q(u)))))   R: the memory read-out to d_model
    MAG, the whole sequence:
      a   = sliding-window Attn over [persistent | x] (window `segment_len`)
      write x into the memory (chunked), reading per chunk
      out = a * sigmoid(RMSNorm(R(M_chunk(q(x)))))

The memory's q, k, v are SiLU projections of the input with q, k L2-normalised (per memory
head); theta_t = theta_max * sigmoid(.) per token, eta and alpha = sigmoid(.) of the chunk's mean
input; a chunk's write is bounded by `max_update_norm` (memory.chunk_update), which keeps the
inner gradient descent from diverging. The memory branch runs in float32; projections and
attention in the compute dtype.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import checks, registry
from jaxgpt.errors import ConfigError
from jaxgpt.models import dims, gpt, layers
from jaxgpt.models.dims import GPTConfig
from jaxgpt.models.titans import attention, memory

VARIANTS = ("mac", "mag")
# sigmoid^-1 of the initial momentum eta (0.9) and forgetting alpha (0.01); theta starts at
# theta_max / 2. The gate kernels start at zero, so these are the values at step 0.
ETA_BIAS = float(np.log(0.9 / 0.1))
ALPHA_BIAS = float(np.log(0.01 / 0.99))


@dataclasses.dataclass(frozen=True)
class MemoryConfig:
  variant: str  # "mac" | "mag"
  heads: int  # Hm: memory heads (each its own MLP memory)
  dim: int  # Km: key / value width per memory head
  layers: int  # L_M: memory-MLP depth (1: linear memory)
  width: int  # hidden width of the memory MLP (layers >= 2)
  residual: bool  # M(x) = x + mlp(x)
  chunk_size: int  # b: tokens per inner mini-batch (gradients at the chunk-start weights)
  segment_len: int  # MAC: segment length; MAG: sliding-window width
  persistent_tokens: int  # Np: learned input-independent tokens per layer
  theta_max: float  # theta_t = theta_max * sigmoid(.)
  max_update_norm: float | None  # bound on a chunk's write (memory.chunk_update); None: off

  @property
  def shapes(self) -> tuple[tuple[int, int], ...]:
    return memory.layer_shapes(self.dim, self.width, self.layers)


@dataclasses.dataclass(frozen=True)
class TitansConfig(GPTConfig):
  memory: MemoryConfig | None = None

  @classmethod
  def from_config(cls, cfg_model: Any, vocab_size: int | None = None,
                  bos_id: int | None = None) -> TitansConfig:
    """Validated config from `config.model`. Document masking is refused: the memory would
    have to be reset at every boundary token, which the chunked memory update does not do."""
    if cfg_model.get("document_mask", False) is True:
      raise ConfigError("model.document_mask=True is not supported with model.name='titans': "
                        "its neural memory carries state along the whole window, across "
                        "document boundaries; set model.document_mask=False")
    g = GPTConfig.from_config(cfg_model, vocab_size, bos_id)
    return cls(**{f.name: getattr(g, f.name) for f in dataclasses.fields(GPTConfig)},
               memory=memory_config(cfg_model.titans, g))


def memory_config(t: Any, g: GPTConfig) -> MemoryConfig:
  """Validated `model.titans.*`; errors name the key, the value and what is allowed."""
  k = "model.titans."
  checks.one_of(k + "variant", t.variant, VARIANTS)
  heads = checks.integer(k + "memory_heads",
                         g.num_heads if t.memory_heads is None else t.memory_heads, 1)
  dim = checks.integer(k + "memory_dim", g.head_dim if t.memory_dim is None else t.memory_dim, 1)
  depth = checks.integer(k + "memory_layers", t.memory_layers, 1)
  width = checks.integer(k + "memory_width",
                         dim if t.memory_width is None else t.memory_width, 1)
  checks.boolean(k + "memory_residual", t.memory_residual)
  chunk = checks.integer(k + "chunk_size", t.chunk_size, 1)
  segment = checks.integer(k + "segment_len", t.segment_len, 1)
  if t.variant == "mac" and segment % chunk:
    raise ConfigError(f"model.titans.segment_len={segment} must be a multiple of "
                      f"model.titans.chunk_size={chunk} with variant 'mac' (each segment is "
                      "written in whole chunks)")
  persistent = checks.integer(k + "persistent_tokens", t.persistent_tokens, 0)
  checks.positive(k + "theta_max", t.theta_max)
  bound = checks.positive(k + "max_update_norm", t.max_update_norm, allow_none=True)
  return MemoryConfig(variant=t.variant, heads=heads, dim=dim, layers=depth, width=width,
                      residual=t.memory_residual, chunk_size=chunk, segment_len=segment,
                      persistent_tokens=persistent, theta_max=float(t.theta_max),
                      max_update_norm=None if bound is None else float(bound))


# ------------------------------------------------------------------------------------------
# Closed-form sizes (tests check them against the initialised tree).

def memory_weight_count(m: MemoryConfig) -> int:
  """P: the weights of one memory head's MLP."""
  return sum(i * o for i, o in m.shapes)


def block_extra_params(cfg: TitansConfig) -> int:
  """Parameters a Titans block has beyond a GPT block: persistent tokens and the memory."""
  m, d = cfg.memory, cfg.d_model
  hk = m.heads * m.dim
  return (m.persistent_tokens * d + 3 * d * hk + hk * d + 3 * d * m.heads + 3 * m.heads
          + m.heads * memory_weight_count(m) + d)


def param_count(cfg: TitansConfig) -> int:
  return gpt.param_count(cfg) + cfg.num_layers * block_extra_params(cfg)


def flops_per_token(cfg: TitansConfig, seq_len: int) -> float:
  """Training FLOPs per token, an estimate (docs/titans.md "Cost"): 6 N over the per-token
  matmuls (GPT's, plus the memory projections), attention 12 L (H K) keys with keys per query
  Np + 2 Ls (MAC) or Np + T (MAG, masked but computed), and the memory branch counted as
  3 x its forward: reads 2 P each, per-token inner gradients 6 P, the two scans 8 P, per head."""
  m, d, L = cfg.memory, cfg.d_model, cfg.num_layers
  hk = m.heads * m.dim
  n = gpt.matmul_param_count(cfg) + L * (4 * d * hk + 3 * d * m.heads)
  mac = m.variant == "mac"
  keys = m.persistent_tokens + (2 * m.segment_len if mac else seq_len)
  attn = 12.0 * L * cfg.num_heads * cfg.head_dim * keys
  h_kv = 6.0 * L * 2 * d * cfg.num_kv_heads * cfg.head_dim if mac else 0.0  # k, v of h
  reads = 2 if mac else 1
  mem = 3.0 * L * m.heads * memory_weight_count(m) * (2 * reads + 6 + 8)
  return 6.0 * n + attn + h_kv + mem


# ------------------------------------------------------------------------------------------
# Parameters: small modules that only declare (so the pure functions below get arrays).

class Kernel(nn.Module):
  """One float32 parameter `kernel` with logical axes."""
  shape: tuple[int, ...]
  axes: tuple[str | None, ...]
  init: Callable
  param_name: str = "kernel"

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param(self.param_name, nn.with_logical_partitioning(self.init, self.axes),
                      self.shape, jnp.float32)


def _scale(name: str, size: int, axis: str) -> jax.Array:
  return Kernel((size,), (axis,), nn.initializers.ones, "scale", name=name)()


class AttnParams(nn.Module):
  """q, k, v, o kernels as in layers.Attention (same paths, shapes and logical axes), the
  optional QK-norm scales and the persistent tokens [Np, d]."""
  cfg: TitansConfig

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    c, init = self.cfg, layers.initializers(self.cfg)
    d, h, n, k = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim
    p = dict(q=Kernel((d, h, k), ("embed", "heads", "head_dim"), init["qkv"], name="q")(),
             k=Kernel((d, n, k), ("embed", "kv_heads", "head_dim"), init["qkv"], name="k")(),
             v=Kernel((d, n, k), ("embed", "kv_heads", "head_dim"), init["qkv"], name="v")(),
             o=Kernel((h, k, d), ("heads", "head_dim", "embed"), init["attn_out"], name="o")())
    if c.qk_norm:
      p["q_norm"] = _scale("q_norm", k, "head_dim")
      p["k_norm"] = _scale("k_norm", k, "head_dim")
    np_ = c.memory.persistent_tokens
    # "..._embedding": learned tokens, so the partition rules give them the embedding's Adam.
    p["persistent"] = self.param("persistent_embedding", nn.with_logical_partitioning(
        init["embed"], (None, "embed")), (np_, d), jnp.float32)
    return p


class MemoryParams(nn.Module):
  """The memory's q / k / v projections [d, Hm Km], read-out [Hm Km, d], gates [d, 3 Hm]
  (theta, eta, alpha per head) with their biases, the gate norm, and the initial memory-MLP
  weights init_i [Hm, in, out] (learned; every sequence starts from them)."""
  cfg: TitansConfig

  @nn.compact
  def __call__(self) -> dict[str, Any]:
    c, init = self.cfg, layers.initializers(self.cfg)
    m, d = c.memory, c.d_model
    hk = m.heads * m.dim
    p = {name: Kernel((d, hk), ("embed", None), init["qkv"], name=name)()
         for name in ("q", "k", "v")}
    p["out"] = Kernel((hk, d), (None, "embed"), init["attn_out"], name="out")()
    p["gates"] = self.param("gates", nn.with_logical_partitioning(
        nn.initializers.zeros, ("embed", None)), (d, 3 * m.heads), jnp.float32)
    bias = np.repeat(np.array([0.0, ETA_BIAS, ALPHA_BIAS], np.float32), m.heads)
    p["gate_bias"] = self.param("gate_bias", nn.with_logical_partitioning(
        lambda *_: jnp.asarray(bias), (None,)), (3 * m.heads,), jnp.float32)
    p["gate_norm"] = _scale("gate_norm", d, "embed")
    p["init"] = tuple(
        self.param(f"init_{i}", nn.with_logical_partitioning(
            nn.initializers.normal(fan_in ** -0.5), (None, None, None)),
            (m.heads, fan_in, fan_out), jnp.float32)
        for i, (fan_in, fan_out) in enumerate(m.shapes))
    return p


# ------------------------------------------------------------------------------------------
# Pure pieces.

def _mm(eq: str, x: jax.Array, w: jax.Array, dtype: Any) -> jax.Array:
  return jnp.einsum(eq, x.astype(dtype), w.astype(dtype))


def rms_norm(x: jax.Array, scale: jax.Array | None, eps: float) -> jax.Array:
  """RMS norm over the last axis (float32 statistics), times `scale` if given."""
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
  return (y if scale is None else y * scale).astype(x.dtype)


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True) + eps)


def pad_to(x: jax.Array, multiple: int, axis: int = 1) -> jax.Array:
  """Zeros appended along `axis` up to a multiple (a causal model's outputs before them do not
  change; callers slice them off)."""
  extra = -x.shape[axis] % multiple
  if not extra:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths)


def attn_keys(ap: dict, x_bsd: jax.Array, c: TitansConfig, sin_sk, cos_sk):
  """k (QK-normed, rotated unless sin is None) and v [B, S, N, K] of inputs x."""
  k = _mm("bsd,dnk->bsnk", x_bsd, ap["k"], c.dtype)
  if c.qk_norm:
    k = rms_norm(k, ap["k_norm"], c.norm_eps)
  if sin_sk is not None:
    k = layers.apply_rope(k, sin_sk, cos_sk)
  return k, _mm("bsd,dnk->bsnk", x_bsd, ap["v"], c.dtype)


def attn_queries(ap: dict, x_btd: jax.Array, c: TitansConfig, sin_tk, cos_tk) -> jax.Array:
  q = _mm("btd,dhk->bthk", x_btd, ap["q"], c.dtype)
  if c.qk_norm:
    q = rms_norm(q, ap["q_norm"], c.norm_eps)
  return layers.apply_rope(q, sin_tk, cos_tk)


def persistent_keys(ap: dict, c: TitansConfig, batch: int):
  """k, v of the persistent tokens [B, Np, N, K] (no rotation: they have no position)."""
  k, v = attn_keys(ap, ap["persistent"][None], c, None, None)
  return (jnp.broadcast_to(k, (batch,) + k.shape[1:]),
          jnp.broadcast_to(v, (batch,) + v.shape[1:]))


def memory_inputs(mp: dict, u_btd: jax.Array, c: TitansConfig):
  """k, v, q [B, Hm, T, Km] (float32), theta [B, Hm, T], eta and alpha [B, Hm, T / chunk]."""
  m = c.memory
  b, t, _ = u_btd.shape

  def proj(name):
    z = _mm("btd,de->bte", u_btd, mp[name], c.dtype).astype(jnp.float32)
    return jax.nn.silu(z).reshape(b, t, m.heads, m.dim).transpose(0, 2, 1, 3)

  k, v, q = l2_normalize(proj("k")), proj("v"), l2_normalize(proj("q"))
  logits = (u_btd.astype(jnp.float32) @ mp["gates"] + mp["gate_bias"]).reshape(b, t, 3, m.heads)
  logits = logits.transpose(2, 0, 3, 1)  # [3, B, Hm, T]
  theta = m.theta_max * jax.nn.sigmoid(logits[0])
  pooled = jax.vmap(jax.vmap(lambda x: memory.chunk_mean(x, m.chunk_size)))
  eta, alpha = jax.nn.sigmoid(pooled(logits[1])), jax.nn.sigmoid(pooled(logits[2]))
  return k, v, q, theta, eta, alpha


def initial_state(mp: dict, batch: int) -> memory.State:
  w = tuple(jnp.broadcast_to(x, (batch,) + x.shape) for x in mp["init"])
  return memory.State(w, memory.zeros_like(w))


def write_and_read(mp: dict, state: memory.State, u_btd: jax.Array, c: TitansConfig):
  """Writes u [B, T, d] (T a multiple of the chunk) into the memory and reads it per chunk
  with q(u); returns the new state and the read-out R(y) [B, T, d] (float32)."""
  m = c.memory
  k, v, q, theta, eta, alpha = memory_inputs(mp, u_btd, c)
  scan = lambda st, *xs: memory.memory_scan(st, *xs, chunk=m.chunk_size,  # noqa: E731
                                            residual=m.residual, max_norm=m.max_update_norm)
  state, y = jax.vmap(jax.vmap(scan))(state, k, v, q, theta, eta, alpha)  # y [B, Hm, T, Km]
  return state, read_out(mp, y)


def read_out(mp: dict, y_bhtk: jax.Array) -> jax.Array:
  b, h, t, k = y_bhtk.shape
  return y_bhtk.transpose(0, 2, 1, 3).reshape(b, t, h * k) @ mp["out"]


def memory_gate(mp: dict, r_btd: jax.Array, c: TitansConfig) -> jax.Array:
  return jax.nn.sigmoid(rms_norm(r_btd, mp["gate_norm"], c.norm_eps))


def mac(ap: dict, mp: dict, n_btd: jax.Array, c: TitansConfig) -> jax.Array:
  """Memory as context (see the module docstring); any T (padded to whole segments)."""
  m = c.memory
  b, t, _ = n_btd.shape
  ls = m.segment_len
  x = pad_to(n_btd, ls)
  nseg = x.shape[1] // ls
  sin_l, cos_l = layers.rope_angles(ls, c.head_dim, c.rope_base)  # positions within a segment
  sin_t, cos_t = np.tile(sin_l, (nseg, 1)), np.tile(cos_l, (nseg, 1))
  q = attn_queries(ap, x, c, sin_t, cos_t)
  k, v = attn_keys(ap, x, c, sin_t, cos_t)
  k_p, v_p = persistent_keys(ap, c, b)
  qm = memory_inputs(mp, x, c)[2]  # [B, Hm, T, Km]: the queries that read h
  mask = attention.mac_mask(m.persistent_tokens, ls)
  retrieve = jax.vmap(jax.vmap(lambda w, q_tk: memory.mlp(w, q_tk, m.residual)))

  def segments(a, axis):  # [B, T, ...] -> [nseg, B, Ls, ...] (along the time `axis`)
    a = jnp.moveaxis(a, axis, 1)
    a = a.reshape((b, nseg, ls) + a.shape[2:])
    return jnp.moveaxis(jnp.moveaxis(a, 1, 0), 2, axis + 1)

  def body(state: memory.State, xs):
    q_s, k_s, v_s, qm_s = xs
    h_bld = rms_norm(read_out(mp, retrieve(state.w, qm_s)), None, c.norm_eps)
    k_h, v_h = attn_keys(ap, h_bld, c, sin_l, cos_l)
    keys = jnp.concatenate([k_p, k_h.astype(k_s.dtype), k_s], axis=1)
    values = jnp.concatenate([v_p, v_h.astype(v_s.dtype), v_s], axis=1)
    o = attention.masked_attention(q_s, keys, values, mask)
    y = _mm("bthk,hkd->btd", o, ap["o"], c.dtype)
    state, r = write_and_read(mp, state, rms_norm(y, None, c.norm_eps), c)
    return state, (y * memory_gate(mp, r, c).astype(y.dtype))

  xs = (segments(q, 1), segments(k, 1), segments(v, 1), segments(qm, 2))
  _, out = jax.lax.scan(body, initial_state(mp, b), xs)  # [nseg, B, Ls, d]
  return jnp.moveaxis(out, 0, 1).reshape(b, nseg * ls, -1)[:, :t]


def mag(ap: dict, mp: dict, n_btd: jax.Array, c: TitansConfig) -> jax.Array:
  """Memory as gate (see the module docstring); any T (the memory pads to whole chunks)."""
  m = c.memory
  b, t, _ = n_btd.shape
  sin, cos = layers.rope_angles(t, c.head_dim, c.rope_base)
  q = attn_queries(ap, n_btd, c, sin, cos)
  k, v = attn_keys(ap, n_btd, c, sin, cos)
  k_p, v_p = persistent_keys(ap, c, b)
  mask = attention.mag_mask(m.persistent_tokens, t, m.segment_len)
  o = attention.masked_attention(q, jnp.concatenate([k_p, k], 1), jnp.concatenate([v_p, v], 1),
                                 mask)
  a = _mm("bthk,hkd->btd", o, ap["o"], c.dtype)
  _, r = write_and_read(mp, initial_state(mp, b), pad_to(n_btd, m.chunk_size), c)
  return a * memory_gate(mp, r[:, :t], c).astype(a.dtype)


MIXERS = {"mac": mac, "mag": mag}


# ------------------------------------------------------------------------------------------
# Model.

class TitansBlock(nn.Module):
  """x += Mixer(RMSNorm(x)); x += MLP(RMSNorm(x)). A scan body: (x, None) -> (x, None)."""
  cfg: TitansConfig

  @nn.compact
  def __call__(self, x_btd: jax.Array, skip: Any = None,
               docs: Any = None) -> tuple[jax.Array, None]:
    del skip, docs  # no document masking (refused by TitansConfig.from_config)
    c = self.cfg
    norm = lambda name: layers.RMSNorm("embed", c.norm_eps, c.dtype, name=name)  # noqa: E731
    ap, mp = AttnParams(c, name="attn")(), MemoryParams(c, name="memory")()
    mix = MIXERS[c.memory.variant](ap, mp, norm("attn_norm")(x_btd), c)
    x_btd = x_btd + mix.astype(x_btd.dtype)
    x_btd = x_btd + layers.MLP(c, name="mlp")(norm("mlp_norm")(x_btd))
    return nn.with_logical_constraint(x_btd, gpt.ACT_AXES), None


class Titans(gpt.GPT):
  """GPT's embedding, final norm and head around L Titans blocks."""

  def _layers(self, x_btd: jax.Array, docs: Any = None) -> jax.Array:
    c = self.cfg
    block = gpt.block_class(c, TitansBlock)
    if c.scan_layers:
      return block(c, name="blocks")(x_btd, None, docs)[0]
    for i in range(c.num_layers):
      x_btd = block(c, name=f"blocks_{i}")(x_btd, None, docs)[0]
    return x_btd


def build(cfg_model: Any, vocab_size: int | None = None, bos_id: int | None = None) -> Titans:
  return Titans(TitansConfig.from_config(cfg_model, vocab_size, bos_id))


def model_flops_per_token(cfg_model: Any, vocab_size: int | None, seq_len: int) -> float:
  return flops_per_token(TitansConfig.from_config(cfg_model, vocab_size), seq_len)


def check(config: Any) -> None:
  TitansConfig.from_config(config.model, config.model.get("vocab_size") or 64)


assert "titans" not in dims.BLOCK_FAMILIES  # its block is its own: GPT block knobs are refused
registry.MODELS.register("titans", registry.ModelFamily(
    build=build, check=check, flops_per_token=model_flops_per_token))
