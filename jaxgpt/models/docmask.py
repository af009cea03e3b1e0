"""Document masking for packed windows: segment ids from boundary tokens, the same-document
attention mask and positions that restart at each document (`model.document_mask`,
`model.document_positions`, `data.bos_id`).

A training window packs several documents, each starting with the boundary token `bos_id`
(50256 in GPT-2 FineWeb shards, 1 in parameter-golf's). A new segment starts at each boundary
token; tokens before the first boundary (the tail of a document the window cut) form segment 0:

    tokens   x  x  B  a  a  B  b  b  b
    segment  0  0  1  1  1  2  2  2  2     cumsum(tokens == bos_id)   (Levanter, modded-nanogpt)
    position 0  1  0  1  2  0  1  2  3     t - (first index of its segment)

Attention is causal AND same-segment: `mask_b1ts[b, 0, t, s] = seg[b, t] == seg[b, s]`, passed
to `jax.nn.dot_product_attention` with `is_causal=True` (MaxText's `dot_product` kernel builds
the same mask). Every query sees at least itself, so no softmax row is empty.

Positions: RoPE makes q.k depend on the distance between two tokens only, and masked pairs lie
in one document, so restarting positions at each document (`document_positions`) computes the
same function in exact arithmetic; it changes rounding only (each document then gets the angle
values it would get at the start of a window, rather than those of larger angles).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Documents(NamedTuple):
  """What the attention layers need to keep documents apart, computed once per forward pass
  from the input tokens and broadcast to every layer (a pytree, so it passes through nn.scan)."""
  segment_ids_bt: jax.Array  # int32 [B, T]
  positions_bt: jax.Array | None  # int32 [B, T] RoPE positions; None: 0 .. T-1 (window order)


def segment_ids(tokens_bt: jax.Array, bos_id: int) -> jax.Array:
  """int32 [B, T]: the number of boundary tokens at or before each position."""
  return jnp.cumsum(tokens_bt == bos_id, axis=1, dtype=jnp.int32)


def positions(segment_ids_bt: jax.Array) -> jax.Array:
  """int32 [B, T]: each token's index inside its segment (0 at a boundary token)."""
  t = jnp.arange(segment_ids_bt.shape[1], dtype=jnp.int32)[None, :]
  first = jnp.concatenate([jnp.ones_like(segment_ids_bt[:, :1], bool),
                           segment_ids_bt[:, 1:] != segment_ids_bt[:, :-1]], axis=1)
  start_bt = jax.lax.cummax(jnp.where(first, t, 0), axis=1)
  return t - start_bt


def attention_mask(segment_ids_bt: jax.Array) -> jax.Array:
  """bool [B, 1, T, S]: query t may read key s iff both lie in the same segment (the causal part
  is `is_causal=True`'s). Dense: B T^2 booleans."""
  return segment_ids_bt[:, None, :, None] == segment_ids_bt[:, None, None, :]


def documents(tokens_bt: jax.Array, bos_id: int, restart_positions: bool) -> Documents:
  """The window's segment ids, and its per-document positions when `restart_positions`."""
  seg_bt = segment_ids(tokens_bt, bos_id)
  return Documents(seg_bt, positions(seg_bt) if restart_positions else None)
