"""Attention masks of the Titans variants and attention under an explicit mask.

Keys are laid out as [persistent tokens | ...]: the Np persistent tokens are visible to every
query. MAC (memory as context) attends, per segment of Ls tokens, over
[persistent | retrieved memory h_1..h_Ls | segment x_1..x_Ls]; query i sees h_j and x_j for
j <= i only (h_j is read with a query made from x_j, so a later h_j would leak x_j). MAG
(memory as gate) attends over [persistent | x_1..x_T] with a causal sliding window of w tokens.
"""

from __future__ import annotations

import jax
import numpy as np


def causal_ts(t: int) -> np.ndarray:
  """[t, t] boolean: query i sees key j iff j <= i."""
  return np.tril(np.ones((t, t), bool))


def mac_mask(persistent: int, segment: int) -> np.ndarray:
  """[Ls, Np + 2 Ls]: persistent all visible; memory tokens and segment tokens causal."""
  causal = causal_ts(segment)
  return np.concatenate([np.ones((segment, persistent), bool), causal, causal], axis=1)


def mag_mask(persistent: int, length: int, window: int) -> np.ndarray:
  """[T, Np + T]: persistent all visible; key j visible to query i iff i - window < j <= i."""
  i, j = np.arange(length)[:, None], np.arange(length)[None, :]
  local = (j <= i) & (j > i - window)
  return np.concatenate([np.ones((length, persistent), bool), local], axis=1)


def masked_attention(q_bthk: jax.Array, k_bsnk: jax.Array, v_bsnk: jax.Array,
                     mask_ts: np.ndarray) -> jax.Array:
  """softmax(q k^T / sqrt(k) where mask, else -inf) v; GQA when n divides h. Every query row
  of the masks above has a visible key (its own position), so no row is empty."""
  return jax.nn.dot_product_attention(q_bthk, k_bsnk, v_bsnk, mask=mask_ts[None, None])
