"""Transformer pieces shared by the model families: RMSNorm, RoPE, attention, MLP, init schemes.

Axis letters in names: b batch, t length (query), s length (key), d embed, h heads, n kv heads,
k head_dim, f mlp, v vocab. Every parameter carries logical axis names ("embed", "heads", ...);
`jaxgpt/parallel/rules.py` maps them to mesh axes. Parameters are float32; matmuls run in
`cfg.dtype` (the compute dtype). No biases anywhere.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt.models import dims, docmask, kvcache
from jaxgpt.models.dims import GPTConfig

Initializer = Callable[..., jax.Array]


# ------------------------------------------------------------------------------------------
# Init schemes: a scheme maps each kernel role to an initializer. Norm scales always start at 1.

ROLES = ("embed", "qkv", "attn_out", "mlp_in", "mlp_out", "head")


def gpt2_init(std: float, num_layers: int) -> dict[str, Initializer]:
  """GPT-2: N(0, std) everywhere; the two residual-output projections (attn o, mlp proj) use
  std / sqrt(2 L), so the residual stream's variance does not grow with depth (2 adds per block)."""
  base = nn.initializers.normal(std)
  out = nn.initializers.normal(std / math.sqrt(2 * num_layers))
  return dict(embed=base, qkv=base, attn_out=out, mlp_in=base, mlp_out=out, head=base)


def zero_out_init(std: float, num_layers: int) -> dict[str, Initializer]:
  """modded-nanogpt: like gpt2, but attn o, mlp proj and the untied LM head start at zero, so every
  block starts as the identity and the first logits are uniform (loss = ln V)."""
  roles = gpt2_init(std, num_layers)
  zeros = nn.initializers.zeros
  return roles | dict(attn_out=zeros, mlp_out=zeros, head=zeros)


def normal_init(std: float, num_layers: int) -> dict[str, Initializer]:
  """N(0, std) for every kernel, no depth scaling (PyTorch references that init every Linear
  and Embedding with normal_(0, 0.02), e.g. the blueberry MoE)."""
  del num_layers
  return dict.fromkeys(ROLES, nn.initializers.normal(std))


INIT_SCHEMES: dict[str, Callable[[float, int], dict[str, Initializer]]] = dims.INIT_SCHEMES
INIT_SCHEMES.update({
    "gpt2": gpt2_init,
    "zero_out": zero_out_init,
    "normal": normal_init,
})


def initializers(cfg: GPTConfig) -> dict[str, Initializer]:
  return INIT_SCHEMES[cfg.init](cfg.init_std, cfg.num_layers)


def check_tokens_bt(tokens_bt: jax.Array) -> None:
  """Models take integer token ids [B, T]; anything else is an error naming what came in."""
  if tokens_bt.ndim != 2 or not jnp.issubdtype(tokens_bt.dtype, jnp.integer):
    raise ValueError(f"tokens_bt must be integer [B, T]; got {tokens_bt.dtype} "
                     f"{tokens_bt.shape}")


def einsum_proj(name: str, einsum_str: str, shape: tuple[int, ...], axes: tuple[str, ...],
                init: Initializer, dtype: Any, **kw) -> nn.Einsum:
  """A bias-free projection whose kernel has named logical axes; float32 params, `dtype` math."""
  return nn.Einsum(shape=shape, einsum_str=einsum_str, use_bias=False, dtype=dtype,
                   param_dtype=jnp.float32, kernel_init=nn.with_logical_partitioning(init, axes),
                   name=name, **kw)


# ------------------------------------------------------------------------------------------
# Norm and activations.

class RMSNorm(nn.Module):
  """RMS norm over the last axis with a learnable scale (init 1); statistics in float32."""
  axis_name: str  # logical name of the normalised axis ("embed" or "head_dim")
  eps: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones,
                                                             (self.axis_name,)),
                       (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)  # a bf16 mean of squares loses digits that the scale amplifies
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    return (y * scale).astype(self.dtype)


# The MLP activations (`dims` owns them with their names, `model.mlp_act`): plain ones, and gated
# ones whose MLP has a second input kernel `gate` and computes act(gate(x)) * fc(x).
ACTIVATIONS = dims.ACTIVATIONS
GATED_ACTIVATIONS = dims.GATED_ACTIVATIONS


# ------------------------------------------------------------------------------------------
# Rotary position embedding, rotate-half layout (GPT-NeoX / Llama): pairs (i, i + k/2) rotate
# together, which needs two contiguous slices instead of a strided gather. The interleaved
# layout (pairs (2i, 2i+1)) is the same function up to a fixed permutation of head_dim, which
# the learned q/k kernels absorb, so the choice costs nothing in quality.

def rope_angles(seq_len: int, head_dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
  """sin_tk, cos_tk of shape [T, head_dim // 2]; numpy float64 -> float32 compile-time constants."""
  inv_freq_k = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  angle_tk = np.arange(seq_len, dtype=np.float64)[:, None] * inv_freq_k[None, :]
  return np.sin(angle_tk).astype(np.float32), np.cos(angle_tk).astype(np.float32)


def rope_tables(seq_len: int, head_dim: int, base: float, positions_bt: jax.Array | None = None
                ) -> tuple[Any, Any]:
  """sin, cos for a window of `seq_len`: the [T, K/2] constants of `rope_angles` when
  `positions_bt` is None, else those rows gathered at each token's position ([B, T, K/2]; every
  position is < T, so a position p gets exactly the angles of window index p)."""
  sin_tk, cos_tk = rope_angles(seq_len, head_dim, base)
  if positions_bt is None:
    return sin_tk, cos_tk
  return jnp.asarray(sin_tk)[positions_bt], jnp.asarray(cos_tk)[positions_bt]


def apply_rope(x_btnk: jax.Array, sin: Any, cos: Any) -> jax.Array:
  """Rotates each (x1_i, x2_i) pair by angle position * base^(-2i/k); rotation in float32.
  `sin`, `cos`: [T, K/2] (one position per window index) or [B, T, K/2] (per-token positions)."""
  x1, x2 = jnp.split(x_btnk.astype(jnp.float32), 2, axis=-1)
  sin, cos = (a[None] if a.ndim == 2 else a for a in (sin, cos))
  sin, cos = sin[:, :, None, :], cos[:, :, None, :]
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_btnk.dtype)


# ------------------------------------------------------------------------------------------
# Attention.

def causal_attention(q_bthk: jax.Array, k_bsnk: jax.Array, v_bsnk: jax.Array,
                     implementation: str | None = None,
                     segment_ids_bt: jax.Array | None = None,
                     scale: float | None = None) -> jax.Array:
  """softmax(q k^T * scale + causal mask) v (scale None: 1 / sqrt(k)); GQA when n divides h
  (query head i reads kv head i // (h / n)). The softmax runs in float32 inside jax.
  implementation=None is XLA in jax 0.10; "cudnn" (GPU, bf16) is the fused flash kernel, which
  skips the masked half.

  `segment_ids_bt` (int32 [B, T], `docmask.segment_ids`): attention also stays inside each
  segment, through a dense boolean mask [B, 1, T, S] (`docmask.attention_mask`) ANDed with
  `is_causal`. On the XLA path the mask is applied to the logits like the causal one. The cuDNN
  path has no segment-id argument in `jax.nn.dot_product_attention` (jax <= 0.10.2): jax turns
  the boolean mask into a dense additive bias [B, 1, T, S] (0 or a large negative number) next
  to its CAUSAL mask type, so the kernel reads B T^2 bias values, and jax 0.10.2 also has it
  compute the (unused) bias gradient. Correct, but not the packed varlen (THD) kernel."""
  if implementation is None and jax.default_backend() == "gpu" and q_bthk.dtype in (
      jnp.bfloat16, jnp.float16):
    implementation = "cudnn"  # jax's default is XLA even on GPU; cuDNN flash is much faster
  mask = None if segment_ids_bt is None else docmask.attention_mask(segment_ids_bt)
  return jax.nn.dot_product_attention(q_bthk, k_bsnk, v_bsnk, mask=mask, scale=scale,
                                      is_causal=True, implementation=implementation)


class Attention(nn.Module):
  """Causal self-attention: q/k/v projections, optional QK-norm, RoPE, GQA, output projection.
  With `docs` (a packed window's `docmask.Documents`) attention stays inside each document and
  RoPE reads the per-document positions when it has them. With a `kvcache.Decode` instead, the
  tokens are the next ones of a cached generation: RoPE reads its positions, and k and v go
  into the `cache` collection, over which the queries attend (`kvcache.attend`)."""
  cfg: GPTConfig

  @nn.compact
  def __call__(self, x_btd: jax.Array,
               docs: docmask.Documents | kvcache.Decode | None = None) -> jax.Array:
    c, init = self.cfg, initializers(self.cfg)
    d, h, n, k = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim
    proj = functools.partial(einsum_proj, dtype=c.dtype)
    q_bthk = proj("q", "btd,dhk->bthk", (d, h, k), ("embed", "heads", "head_dim"),
                  init["qkv"])(x_btd)
    k_btnk = proj("k", "btd,dnk->btnk", (d, n, k), ("embed", "kv_heads", "head_dim"),
                  init["qkv"])(x_btd)
    v_btnk = proj("v", "btd,dnk->btnk", (d, n, k), ("embed", "kv_heads", "head_dim"),
                  init["qkv"])(x_btd)
    if c.qk_norm:
      # Unit-RMS q and k bound the attention logits, which keeps high learning rates stable.
      q_bthk = RMSNorm("head_dim", c.norm_eps, c.dtype, name="q_norm")(q_bthk)
      k_btnk = RMSNorm("head_dim", c.norm_eps, c.dtype, name="k_norm")(k_btnk)
    cached = isinstance(docs, kvcache.Decode)
    # A cache of S slots holds positions < S: its RoPE table has S rows.
    sin, cos = rope_tables(docs.cache_len if cached else x_btd.shape[1], k, c.rope_base,
                           None if docs is None else docs.positions_bt)
    q_bthk = apply_rope(q_bthk, sin, cos)
    k_btnk = apply_rope(k_btnk, sin, cos)
    if cached:
      o_bthk = kvcache.attend(self, q_bthk, k_btnk, v_btnk, docs)
    else:
      o_bthk = causal_attention(q_bthk, k_btnk, v_btnk, c.attention_impl,
                                None if docs is None else docs.segment_ids_bt)
    return proj("o", "bthk,hkd->btd", (h, k, d), ("heads", "head_dim", "embed"),
                init["attn_out"])(o_bthk)


# ------------------------------------------------------------------------------------------
# MLP.

class MLP(nn.Module):
  """fc (embed -> mlp), activation, proj (mlp -> embed). A gated activation (swiglu) adds a
  `gate` kernel of the same shape as fc: h = act(gate(x)) * fc(x)."""
  cfg: GPTConfig

  @nn.compact
  def __call__(self, x_btd: jax.Array) -> jax.Array:
    c, init = self.cfg, initializers(self.cfg)
    d, f = c.d_model, c.mlp_dim
    h_btf = einsum_proj("fc", "btd,df->btf", (d, f), ("embed", "mlp"), init["mlp_in"],
                        c.dtype)(x_btd)
    if c.mlp_act in GATED_ACTIVATIONS:
      g_btf = einsum_proj("gate", "btd,df->btf", (d, f), ("embed", "mlp"), init["mlp_in"],
                          c.dtype)(x_btd)
      h_btf = GATED_ACTIVATIONS[c.mlp_act](g_btf) * h_btf
    else:
      h_btf = ACTIVATIONS[c.mlp_act](h_btf)
    return einsum_proj("proj", "btf,fd->btd", (f, d), ("mlp", "embed"), init["mlp_out"],
                       c.dtype)(h_btf)
