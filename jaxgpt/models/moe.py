"""The routed mixture-of-experts FFN (`model.name = "moe"`: GPT blocks whose MLP is this layer).

    logits_bte = x_btd @ router            (float32; + N(0, router_noise^2) in training)
    idx_btj, w_btj = top_k_route(logits)   (softmax over the k chosen logits; `routing.py`)
    y_btd = sum_j w_btj FFN_{idx_btj}(x)   (dense | capacity | ragged; `dispatch.py`)

Parameters (under the block's `mlp/`): `router/kernel` (d, E), `experts/fc/kernel` (E, d, f),
`experts/proj/kernel` (E, f, d) and `experts/gate/kernel` for a gated activation. The leading
experts axis carries the logical name "expert" (mesh axis `expert`) and is a batch axis for
Muon: each expert's matrices are orthogonalized on their own (`optim/partition.py`).

Sown (`models/aux.py`, added to the loss by the training core, logged per layer path):
  losses:  aux_loss = aux_weight * E * sum_e f_e P_e; router_z = router_z_loss * mean lse^2
  metrics: load_max, load_min (E * slot fraction of the busiest / idlest expert: 1 = balanced),
           dropped_frac (capacity dispatch: the fraction of routing slots over capacity)

Document masking (`model.document_mask`) keeps attention inside each document of a packed
window; the routed FFN is per token, so dense and ragged dispatch keep documents apart exactly.
Capacity dispatch does not: it fills each expert's C slots in token order over the whole window,
so whether a token is dropped depends on the earlier documents' routing, and documents leak into
each other through dropping. (The load-balance and z losses are batch statistics by design.)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import logging

from jaxgpt import checks
from jaxgpt.errors import ConfigError
from jaxgpt.models import aux, dims, dispatch, layers, routing
from jaxgpt.models.dims import GPTConfig

EXPERT_AXIS = "expert"  # logical name of the stacked experts axis


@dataclasses.dataclass(frozen=True)
class MoEConfig:
  num_experts: int = 8  # E
  top_k: int = 2  # k experts per token
  aux_weight: float = 0.01  # load-balance loss coefficient (0 = off)
  aux_normalization: str = "blueberry"  # slot fractions summing to 1 | "switch": to k
  router_noise: float = 0.1  # std of Gaussian noise on the router logits, training only
  router_z_loss: float = 0.0  # z-loss coefficient (0 = off)
  dispatch: str = "dense"  # one of dispatch.DISPATCHES
  capacity_factor: float = 1.25  # capacity dispatch only
  act: str = "silu"  # expert activation (one of dims.MLP_ACTS)

  @classmethod
  def from_config(cls, cfg_moe: Any, mlp_act: str) -> MoEConfig:
    """Validated from `config.model.moe`; `act` None means `model.mlp_act`."""
    m = cfg_moe
    for key in ("num_experts", "top_k"):
      checks.integer(f"model.moe.{key}", m[key], 1)
    if m.top_k > m.num_experts:
      raise ConfigError(f"model.moe.top_k={m.top_k} must be <= model.moe.num_experts="
                        f"{m.num_experts}")
    for key in ("aux_weight", "router_noise", "router_z_loss"):
      checks.positive(f"model.moe.{key}", m[key], allow_zero=True)
    checks.one_of("model.moe.aux_normalization", m.aux_normalization,
                  routing.AUX_NORMALIZATIONS)
    checks.one_of("model.moe.dispatch", m.dispatch, dispatch.DISPATCHES)
    checks.positive("model.moe.capacity_factor", m.capacity_factor)
    act = checks.one_of("model.moe.act", mlp_act if m.get("act") is None else m.act,
                        dims.MLP_ACTS)  # None: model.mlp_act
    return cls(num_experts=m.num_experts, top_k=m.top_k, aux_weight=float(m.aux_weight),
               aux_normalization=m.aux_normalization, router_noise=float(m.router_noise),
               router_z_loss=float(m.router_z_loss), dispatch=m.dispatch,
               capacity_factor=float(m.capacity_factor), act=act)


def expert_params(moe: MoEConfig, d: int, f: int) -> int:
  """One layer's expert kernels: E (2 or 3) d f."""
  return moe.num_experts * (3 if moe.act in layers.GATED_ACTIVATIONS else 2) * d * f


class _Stacked(nn.Module):
  """One stacked kernel `kernel` of `shape` with logical `axes` (float32)."""
  shape: tuple[int, ...]
  axes: tuple[str, ...]
  init: Any

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param("kernel", nn.with_logical_partitioning(self.init, self.axes), self.shape,
                      jnp.float32)


class Experts(nn.Module):
  """The stacked expert kernels as a `dispatch.Experts`."""
  cfg: GPTConfig

  @nn.compact
  def __call__(self) -> dispatch.Experts:
    c, moe, init = self.cfg, self.cfg.moe, layers.initializers(self.cfg)
    e, d, f = moe.num_experts, c.d_model, c.mlp_dim
    din = (e, d, f), (EXPERT_AXIS, "embed", "mlp")
    fc = _Stacked(*din, init["mlp_in"], name="fc")()
    gated = moe.act in layers.GATED_ACTIVATIONS
    gate = _Stacked(*din, init["mlp_in"], name="gate")() if gated else None
    proj = _Stacked((e, f, d), (EXPERT_AXIS, "mlp", "embed"), init["mlp_out"], name="proj")()
    act = layers.GATED_ACTIVATIONS[moe.act] if gated else layers.ACTIVATIONS[moe.act]
    return dispatch.Experts(fc, proj, gate, act)


class MoE(nn.Module):
  """Routed top-k experts in place of the MLP; same input and output as `layers.MLP`."""
  cfg: GPTConfig

  @nn.compact
  def __call__(self, x_btd: jax.Array) -> jax.Array:
    c, moe = self.cfg, self.cfg.moe
    w_de = _Stacked((c.d_model, moe.num_experts), ("embed", None),
                    nn.initializers.normal(c.init_std), name="router")()
    logits_bte = jnp.einsum("btd,de->bte", x_btd.astype(jnp.float32), w_de)
    if moe.router_noise > 0 and self.has_rng("router"):
      noise = jax.random.normal(self.make_rng("router"), logits_bte.shape, jnp.float32)
      logits_bte = logits_bte + moe.router_noise * noise
    idx_btj, w_btj = routing.top_k_route(logits_bte, moe.top_k)
    if moe.aux_weight > 0:
      aux.add_loss(self, "aux_loss", moe.aux_weight * routing.load_balance_loss(
          logits_bte, idx_btj, moe.aux_normalization))
    if moe.router_z_loss > 0:
      aux.add_loss(self, "router_z", moe.router_z_loss * routing.z_loss(logits_bte))
    load_e = routing.expert_load(idx_btj, moe.num_experts)
    aux.add_metric(self, "load_max", jnp.max(load_e))
    aux.add_metric(self, "load_min", jnp.min(load_e))

    experts = Experts(c, name="experts")()
    if moe.dispatch == "dense":
      combine_bte = routing.combine_weights(idx_btj, w_btj, moe.num_experts)
      return dispatch.dense(x_btd, combine_bte, experts)
    if moe.dispatch == "capacity":
      y_btd, dropped = dispatch.capacity_dispatch(x_btd, idx_btj, w_btj, experts,
                                                  moe.capacity_factor)
      aux.add_metric(self, "dropped_frac", dropped)
      return y_btd
    if jax.default_backend() == "cpu":
      logging.log_first_n(logging.WARNING, "model.moe.dispatch='ragged' on CPU: XLA expands "
                          "ragged_dot to a dense matmul over all E experts (E / k x dense "
                          "dispatch's cost); use 'dense' on CPU", 1)
    return dispatch.ragged_dispatch(x_btd, idx_btj, w_btj, experts)
