"""Three ways to run routed tokens through stacked experts; all compute

    y_td = sum_j w_tj * FFN_{idx_tj}(x_td),   FFN_e(x) = act(x W_fc[e]) W_proj[e]

(gated activations: act(x W_gate[e]) * (x W_fc[e])) and differ in cost and in what they drop.

  dense:    every expert on every token, weighted by combine_bte (zero off the top k). Exact,
            dropless, static shapes, E / k times the active FLOPs. The reference, the CPU default.
  capacity: GShard / Switch buffers of C slots per expert per sequence, filled in token order
            (token t's k slots before token t+1's); slots past C are dropped (their share of y
            is 0, the residual carries the token). C = ceil(T k cf / E) clipped to [1, T], so
            cf >= E / k drops nothing and equals `dense`. Cost ~ cf x active + the dispatch and
            combine einsums. The buffers span the whole window, so under a document mask a
            token's drop depends on earlier documents: capacity dispatch leaks across them.
  ragged:   sort the B T k slots by expert and run `jax.lax.ragged_dot` on contiguous groups
            (MaxText's sparse path). Dropless, active FLOPs on GPU / TPU; on CPU XLA expands
            ragged_dot to a dense masked matmul (E x active), so never the CPU default.

Axis letters: b batch, t length, d embed, f mlp, e experts, j routing slots, c capacity,
s flattened slots (B T k). Weights arrive float32 and are cast to the compute dtype.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

DISPATCHES = ("dense", "capacity", "ragged")


@dataclasses.dataclass(frozen=True)
class Experts:
  """Stacked expert kernels and the activation: fc_edf, proj_efd, gate_edf (gated acts only)."""
  fc_edf: jax.Array
  proj_efd: jax.Array
  gate_edf: jax.Array | None
  act: Callable[[jax.Array], jax.Array]

  def hidden(self, x: jax.Array, spec: str) -> jax.Array:
    """act(x W_fc) or act(x W_gate) * x W_fc, with `spec` the einsum for one kernel."""
    fc = jnp.einsum(spec, x, self.fc_edf.astype(x.dtype))
    if self.gate_edf is None:
      return self.act(fc)
    return self.act(jnp.einsum(spec, x, self.gate_edf.astype(x.dtype))) * fc


def dense(x_btd: jax.Array, combine_bte: jax.Array, experts: Experts) -> jax.Array:
  """All experts on all tokens; the combine weights fold into the output contraction."""
  h_btef = experts.hidden(x_btd, "btd,edf->btef")
  h_btef = h_btef * combine_bte.astype(h_btef.dtype)[..., None]
  return jnp.einsum("btef,efd->btd", h_btef, experts.proj_efd.astype(x_btd.dtype))


def capacity(num_tokens: int, top_k: int, num_experts: int, capacity_factor: float) -> int:
  """C: slots per expert per sequence, ceil(T k cf / E) clipped to [1, T] (an expert can get
  at most one slot per token, so T slots never drop)."""
  return int(min(num_tokens, max(1, math.ceil(num_tokens * top_k * capacity_factor
                                              / num_experts))))


def capacity_masks(idx_btj: jax.Array, w_btj: jax.Array, num_experts: int, cap: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(dispatch_btec 0/1, combine_btec weights, kept fraction of the B T k slots).

  Each sequence fills each expert's `cap` buffer positions in slot order s = t k + j; a slot
  whose position is >= cap is dropped."""
  b, t, k = idx_btj.shape
  onehot_bse = jax.nn.one_hot(idx_btj.reshape(b, t * k), num_experts, dtype=jnp.int32)
  pos_bse = jnp.cumsum(onehot_bse, axis=1) - 1  # buffer position of each slot at its expert
  keep_bse = onehot_bse * (pos_bse < cap)
  pos_bs = jnp.sum(pos_bse * onehot_bse, axis=-1)
  slot_bsec = (keep_bse[..., None] * jax.nn.one_hot(pos_bs, cap, dtype=jnp.int32)[:, :, None])
  slot_btjec = slot_bsec.reshape(b, t, k, num_experts, cap).astype(jnp.float32)
  dispatch_btec = jnp.sum(slot_btjec, axis=2)  # top-k experts are distinct: still 0/1
  combine_btec = jnp.einsum("btjec,btj->btec", slot_btjec, w_btj)
  kept = jnp.sum(keep_bse).astype(jnp.float32) / (b * t * k)
  return dispatch_btec, combine_btec, kept


def capacity_dispatch(x_btd: jax.Array, idx_btj: jax.Array, w_btj: jax.Array,
                      experts: Experts, capacity_factor: float) -> tuple[jax.Array, jax.Array]:
  """(y_btd, dropped fraction of slots) through per-sequence expert buffers."""
  num_experts = experts.fc_edf.shape[0]
  cap = capacity(x_btd.shape[1], idx_btj.shape[-1], num_experts, capacity_factor)
  dispatch_btec, combine_btec, kept = capacity_masks(idx_btj, w_btj, num_experts, cap)
  x_becd = jnp.einsum("btd,btec->becd", x_btd, dispatch_btec.astype(x_btd.dtype))
  h_becf = experts.hidden(x_becd, "becd,edf->becf")
  y_becd = jnp.einsum("becf,efd->becd", h_becf, experts.proj_efd.astype(x_btd.dtype))
  y_btd = jnp.einsum("becd,btec->btd", y_becd, combine_btec.astype(x_btd.dtype))
  return y_btd, 1.0 - kept


def ragged_dispatch(x_btd: jax.Array, idx_btj: jax.Array, w_btj: jax.Array,
                    experts: Experts) -> jax.Array:
  """Sort slots by expert, grouped matmuls with `lax.ragged_dot`, scatter-add back."""
  b, t, d = x_btd.shape
  k, num_experts = idx_btj.shape[-1], experts.fc_edf.shape[0]
  expert_s = idx_btj.reshape(b * t * k)
  order_s = jnp.argsort(expert_s, stable=True)
  token_s = order_s // k  # the token each sorted slot belongs to
  x_sd = x_btd.reshape(b * t, d)[token_s]
  sizes_e = jnp.bincount(expert_s, length=num_experts).astype(jnp.int32)
  mm = lambda lhs, rhs: jax.lax.ragged_dot(lhs, rhs.astype(lhs.dtype), sizes_e)  # noqa: E731
  h_sf = experts.act(mm(x_sd, experts.fc_edf)) if experts.gate_edf is None else (
      experts.act(mm(x_sd, experts.gate_edf)) * mm(x_sd, experts.fc_edf))
  y_sd = mm(h_sf, experts.proj_efd)
  y_sd = y_sd * w_btj.reshape(b * t * k)[order_s].astype(y_sd.dtype)[:, None]
  y_nd = jnp.zeros((b * t, d), y_sd.dtype).at[token_s].add(y_sd)
  return y_nd.reshape(b, t, d)
