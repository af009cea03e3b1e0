"""The key/value cache of cached generation: what one decode call tells the attention layers,
and the cached attention itself (the gpt and moe families; `gpt.decode_model`).

Each attention layer keeps its keys and values, after QK-norm and RoPE as the layer applies
them, in the Flax collection `cache` (`cached_key`, `cached_value`: [B, S, N, K] in the compute
dtype, S the cache length, zeros until written), as Flax's decode examples do. A scanned model
stacks them on a leading layers axis like its parameters. A forward pass with a `Decode` writes
its T tokens at cache slots index .. index + T - 1 and attends over the whole cache:

    prefill: the left-padded prompts [B, P] at index 0
    step:    one token per row [B, 1] at index P, P + 1, ...

The loop that calls it (`jaxgpt/train/generate.py`) owns the bookkeeping, so the cache holds
only keys and values: every row shares the slot index (prompts are left padded to one length P),
and each row's RoPE positions start at 0 at its first real token (slot - pad). A query at slot
q reads slot s iff s <= q and s holds a real token of its row; it always reads itself, so a
padding query's softmax is never empty (its output is never used).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

CACHE = "cache"  # the Flax collection of the keys and values


class Decode(NamedTuple):
  """One decode call's view of the cache, shared by every layer (a pytree: it passes through
  nn.scan as a broadcast argument, in the place of a window's `docmask.Documents`)."""
  index: jax.Array  # int32 []: the cache slot of the call's first token
  positions_bt: jax.Array  # int32 [B, T]: the RoPE position of each of the call's tokens
  valid_bs: jax.Array  # bool [B, S]: cache slots that hold (or will hold) a real token

  @property
  def cache_len(self) -> int:
    return self.valid_bs.shape[1]


def attention_mask(decode: Decode, num_queries: int) -> jax.Array:
  """bool [B, 1, T, S]: query t (at slot index + t) reads slot s iff s <= index + t and s is a
  real token of its row, or s is its own slot."""
  q_slot_t = decode.index + jnp.arange(num_queries, dtype=jnp.int32)
  s = jnp.arange(decode.cache_len, dtype=jnp.int32)
  causal_ts = s[None, :] <= q_slot_t[:, None]
  own_ts = s[None, :] == q_slot_t[:, None]
  return (decode.valid_bs[:, None, None, :] & causal_ts[None, None]) | own_ts[None, None]


def write(module: nn.Module, name: str, x_btnk: jax.Array, decode: Decode) -> jax.Array:
  """`module`'s cached `name` ([B, S, N, K], zeros at first) with `x_btnk` written at slots
  index .. index + T - 1; the new value is stored (the apply must make `cache` mutable)."""
  b, _, n, k = x_btnk.shape
  var = module.variable(CACHE, name, jnp.zeros, (b, decode.cache_len, n, k), x_btnk.dtype)
  zero = jnp.zeros((), jnp.int32)
  var.value = jax.lax.dynamic_update_slice(var.value, x_btnk.astype(var.value.dtype),
                                           (zero, decode.index.astype(jnp.int32), zero, zero))
  return var.value


def attend(module: nn.Module, q_bthk: jax.Array, k_btnk: jax.Array, v_btnk: jax.Array,
           decode: Decode, scale: float | None = None) -> jax.Array:
  """Writes this call's k and v into `module`'s cache, then softmax(q k^T * scale + mask) v over
  all S slots (`attention_mask`); GQA as in `layers.causal_attention`. XLA's implementation:
  the query length is 1 after the prefill, where a fused causal kernel gains nothing."""
  k_bsnk = write(module, "cached_key", k_btnk, decode)
  v_bsnk = write(module, "cached_value", v_btnk, decode)
  mask = attention_mask(decode, q_bthk.shape[1])
  return jax.nn.dot_product_attention(q_bthk, k_bsnk, v_bsnk, mask=mask, scale=scale,
                                      implementation="xla")
