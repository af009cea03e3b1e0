"""Top-k token routing for a mixture of experts: router logits -> chosen experts and weights, and
the router's auxiliary losses. Pure functions of arrays; `moe.py` wires them into the layer.

Axis letters: b batch, t length, d embed, e experts, j the k routing slots of a token.

    logits_bte = x_btd @ w_de                        (float32)
    idx_btj, vals_btj = top_k(logits_bte, k)         (chosen experts, best first)
    w_btj = softmax(vals_btj)                        (softmax over the chosen logits only)
    combine_bte = sum_j one_hot(idx_btj, E) * w_btj  (zero off the top k)

Load balance (Switch Transformer's term, docs/formulas.md "Mixture of experts"):
    f_e = (# slots routed to e) / norm,  P_e = mean_bt softmax(logits_bte)_e
    aux = aux_weight * E * sum_e f_e P_e
norm "blueberry" = B T k (f sums to 1: uniform routing gives exactly aux_weight),
norm "switch"    = B T   (f sums to k, MaxText's / Flaxformer's convention: uniform gives
                          k * aux_weight).
f is a count (no gradient); the router learns through P and through the combine weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUX_NORMALIZATIONS = ("blueberry", "switch")


def top_k_route(logits_bte: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
  """(idx_btj int32, w_btj float32): the k best experts of each token and their weights, a
  softmax over the k chosen logits (Mixtral's "softmax after top-k"; weights sum to 1)."""
  vals_btj, idx_btj = jax.lax.top_k(logits_bte.astype(jnp.float32), k)
  return idx_btj.astype(jnp.int32), jax.nn.softmax(vals_btj, axis=-1)


def combine_weights(idx_btj: jax.Array, w_btj: jax.Array, num_experts: int) -> jax.Array:
  """combine_bte: each token's weight on each expert, zero off its top k."""
  onehot_btje = jax.nn.one_hot(idx_btj, num_experts, dtype=w_btj.dtype)
  return jnp.einsum("btje,btj->bte", onehot_btje, w_btj)


def slot_fractions(idx_btj: jax.Array, num_experts: int, normalization: str) -> jax.Array:
  """f_e: the fraction of routing slots (blueberry, sums to 1) or of tokens (switch, sums to
  k) that chose expert e. A count: no gradient flows through it."""
  if normalization not in AUX_NORMALIZATIONS:
    raise ValueError(f"aux normalization {normalization!r}; choose one of "
                     f"{AUX_NORMALIZATIONS}")
  b, t, k = idx_btj.shape
  counts_e = jnp.sum(jax.nn.one_hot(idx_btj, num_experts, dtype=jnp.float32), axis=(0, 1, 2))
  norm = b * t * (k if normalization == "blueberry" else 1)
  return jax.lax.stop_gradient(counts_e / norm)


def load_balance_loss(logits_bte: jax.Array, idx_btj: jax.Array, normalization: str
                      ) -> jax.Array:
  """E * sum_e f_e P_e (unweighted: multiply by aux_weight). P from the logits the router
  chose with (noisy in training, as the reference implementation does)."""
  num_experts = logits_bte.shape[-1]
  p_e = jnp.mean(jax.nn.softmax(logits_bte.astype(jnp.float32), axis=-1), axis=(0, 1))
  f_e = slot_fractions(idx_btj, num_experts, normalization)
  return num_experts * jnp.sum(f_e * p_e)


def z_loss(logits_bte: jax.Array) -> jax.Array:
  """ST-MoE's router z-loss: mean over tokens of logsumexp(logits)^2 (unweighted)."""
  return jnp.mean(jnp.square(jax.nn.logsumexp(logits_bte.astype(jnp.float32), axis=-1)))


def expert_load(idx_btj: jax.Array, num_experts: int) -> jax.Array:
  """load_e = E * f_e (blueberry f): 1 everywhere when balanced, E when all slots pick e."""
  return num_experts * slot_fractions(idx_btj, num_experts, "blueberry")
