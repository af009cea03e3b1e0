"""The gated nGPT floor of `jaxgpt.bench.floor` (scripts/bench_floor.py): jaxgpt's gated nGPT
in plain jnp + optax.

The function is `jaxgpt.models.ngpt` with `gated=True` (docs/formulas.md "Gated nGPT"), written
with 2-D weight matrices:

    x = Norm(wte[tokens])
    per block, for (Attn, g_A, alpha_A) then (MLP, g_M, alpha_M):
      x <- Norm(x + sigmoid(g) * alpha * out(x))
    Attn: q, k = s_qk * Norm(RoPE(x wq)), Norm(RoPE(x wk)) per head; v = x wv;
          softmax(sqrt(K) q k^T + causal mask) v, then wo
    MLP:  u = s_u * (x fc), v = s_v * (x gate), both times sqrt(d) ("uv") or v only ("v");
          proj(u * SiLU(v))
    logits = logit_scale * Norm(x) Norm(lm_head)^T

with jaxgpt's reparameterised scales (stored theta, effective theta * s_init / s_scale). The
optimizer is `optax.contrib.muon` on the block matrices (wq, wk, wv, wo, fc, gate, proj) and its
Adam on the rest (tables, gates, alphas, s_qk, s_u, s_v), then every `optimizer.lazy_proj_freq`
steps (a step counter in the state, `lax.cond` inside the jitted step) every matrix goes back
onto the unit sphere along its d_model axis, as jaxgpt's `project_every` does. optax's Muon
bias-corrects its momentum and scales by shape; with a constant learning rate it costs what
jaxgpt's Muon costs (one Newton-Schulz per matrix) without computing the same numbers, which is
all a timing floor needs. The forward is the same function: `floor.bench` checks the initial
loss against jaxgpt's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jaxgpt.models import layers, ngpt

# Floor key -> axis (of the unstacked 2-D weight) along which it is unit-norm: its d_model axis.
UNIT_AXIS = {"wte": -1, "lm_head": -1, "wq": 0, "wk": 0, "wv": 0, "fc": 0, "gate": 0,
             "wo": -1, "proj": -1}
MUON_KEYS = ("wq", "wk", "wv", "wo", "fc", "gate", "proj")


def floor_config(cfg_model, vocab_size: int) -> ngpt.NGPTConfig:
  cfg = ngpt.NGPTConfig.from_config(cfg_model, vocab_size)
  if not cfg.gated:
    raise SystemExit(f"error: model.name={cfg_model.name!r}: the nGPT floor is gated_ngpt's")
  if cfg.dtype != jnp.float32:
    raise SystemExit(f"error: model.compute_dtype={cfg.compute_dtype!r}: the gated nGPT floor "
                     "runs in float32 (pass --set model.compute_dtype=float32)")
  return cfg


def _unit(x_nd, axis: int = -1):
  """x / ||x|| along `axis` (float32), with jaxgpt's eps."""
  return x_nd * jax.lax.rsqrt(jnp.sum(x_nd * x_nd, axis=axis, keepdims=True) + ngpt.EPS)


def floor_init(cfg: ngpt.NGPTConfig, key) -> dict:
  """Unit-norm random weights and jaxgpt's initial scales (stored theta)."""
  d, h, n, k, f = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim
  keys = iter(jax.random.split(key, 7 * cfg.num_layers + 2))
  w = lambda name, *s: _unit(jax.random.normal(next(keys), s), UNIT_AXIS[name])  # noqa: E731

  def block():
    return {"wq": w("wq", d, h * k), "wk": w("wk", d, n * k), "wv": w("wv", d, n * k),
            "wo": w("wo", h * k, d), "fc": w("fc", d, f), "gate": w("gate", d, f),
            "proj": w("proj", f, d), "s_qk": jnp.full(k, 1 / math.sqrt(d)),
            "s_u": jnp.ones(f), "s_v": jnp.ones(f), "g_attn": jnp.zeros(d),
            "g_mlp": jnp.zeros(d), "a_attn": jnp.float32(cfg.alpha),
            "a_mlp": jnp.float32(cfg.alpha)}

  return {"wte": w("wte", cfg.vocab_size, d), "lm_head": w("lm_head", cfg.vocab_size, d),
          "blocks": [block() for _ in range(cfg.num_layers)]}


def layer_params(params: dict, num_layers: int) -> list[dict]:
  """jaxgpt's per-layer parameter trees, from a scanned stack ("blocks") or unrolled layers."""
  if "blocks" in params:
    return [jax.tree.map(lambda x, i=i: x[i], params["blocks"]) for i in range(num_layers)]
  return [params[f"blocks_{i}"] for i in range(num_layers)]


def attn_matrices(a: dict, cfg) -> dict:
  """jaxgpt's attention kernels as the floors' 2-D wq, wk, wv, wo."""
  d, h, n, k = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  return {"wq": a["q"]["kernel"].reshape(d, h * k), "wk": a["k"]["kernel"].reshape(d, n * k),
          "wv": a["v"]["kernel"].reshape(d, n * k), "wo": a["o"]["kernel"].reshape(h * k, d)}


def from_jaxgpt(params: dict, cfg: ngpt.NGPTConfig) -> dict:
  """jaxgpt gated nGPT parameters (scanned or not) in the floor's layout: the same function."""
  per_layer = layer_params(params, cfg.num_layers)

  def block(p):
    a, m = p["attn"], p["mlp"]
    return {**attn_matrices(a, cfg),
            "fc": m["fc"]["kernel"], "gate": m["gate"]["kernel"], "proj": m["proj"]["kernel"],
            "s_qk": a["s_qk"], "s_u": m["s_u"], "s_v": m["s_v"], "g_attn": p["gate_attn"],
            "g_mlp": p["gate_mlp"], "a_attn": p["alpha_attn"], "a_mlp": p["alpha_mlp"]}

  return {"wte": params["embed"]["embedding"], "lm_head": params["lm_head"]["embedding"],
          "blocks": [block(p) for p in per_layer]}


def project(params: dict) -> dict:
  """Every matrix unit-norm along its d_model axis (stacked blocks: a leading layers axis)."""
  def one(name, x, stacked):
    axis = UNIT_AXIS.get(name)
    if axis is None:
      return x
    return _unit(x, axis + 1 if stacked and axis >= 0 else axis)

  blocks = params["blocks"]
  if isinstance(blocks, dict):  # scan layout: one dict of stacked leaves
    blocks = {name: one(name, x, True) for name, x in blocks.items()}
  else:
    blocks = [{name: one(name, x, False) for name, x in b.items()} for b in blocks]
  return {"wte": one("wte", params["wte"], False),
          "lm_head": one("lm_head", params["lm_head"], False), "blocks": blocks}


def _attn(cfg, sin, cos, x_btd, p):
  b, t, d = x_btd.shape
  h, n, k = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
  s_qk_k = p["s_qk"] * (ngpt.SQK_INIT / (1 / math.sqrt(d)))
  q_bthk = s_qk_k * _unit(layers.apply_rope((x_btd @ p["wq"]).reshape(b, t, h, k), sin, cos))
  k_btnk = s_qk_k * _unit(layers.apply_rope((x_btd @ p["wk"]).reshape(b, t, n, k), sin, cos))
  v_btnk = (x_btd @ p["wv"]).reshape(b, t, n, k)
  k_bthk, v_bthk = jnp.repeat(k_btnk, h // n, axis=2), jnp.repeat(v_btnk, h // n, axis=2)
  s_bhts = jnp.einsum("bthk,bshk->bhts", q_bthk, k_bthk) * math.sqrt(k)
  s_bhts = jnp.where(jnp.tril(jnp.ones((t, t), bool)), s_bhts, -1e30)
  o_bthk = jnp.einsum("bhts,bshk->bthk", jax.nn.softmax(s_bhts, -1), v_bthk)
  return o_bthk.reshape(b, t, h * k) @ p["wo"]


def _mlp(cfg, x_btd, p):
  sqrt_d = math.sqrt(cfg.d_model)
  u_btf = (x_btd @ p["fc"]) * (p["s_u"] * (ngpt.SUV_INIT / 1.0))
  u_btf = u_btf * (sqrt_d if cfg.mlp_sqrt_d == "uv" else 1.0)
  v_btf = (x_btd @ p["gate"]) * (p["s_v"] * (ngpt.SUV_INIT / 1.0)) * sqrt_d
  return (u_btf * jax.nn.silu(v_btf)) @ p["proj"]


def _block(cfg, sin, cos, x_btd, p):
  x_btd = _unit(x_btd + jax.nn.sigmoid(p["g_attn"]) * p["a_attn"] * _attn(cfg, sin, cos, x_btd, p))
  return _unit(x_btd + jax.nn.sigmoid(p["g_mlp"]) * p["a_mlp"] * _mlp(cfg, x_btd, p))


def floor_loss(cfg, scan: bool, params, inputs, targets):
  sin, cos = layers.rope_angles(inputs.shape[1], cfg.head_dim, cfg.rope_base)
  x_btd = _unit(params["wte"][inputs])
  if scan:
    x_btd, _ = jax.lax.scan(lambda x, p: (_block(cfg, sin, cos, x, p), None), x_btd,
                            params["blocks"])
  else:
    for p in params["blocks"]:
      x_btd = _block(cfg, sin, cos, x_btd, p)
  logits_btv = cfg.logit_scale * (_unit(x_btd) @ _unit(params["lm_head"]).T)
  return optax.softmax_cross_entropy_with_integer_labels(logits_btv, targets).mean()


def floor_tx(opt_cfg) -> optax.GradientTransformation:
  """optax's Muon on the block matrices, its Adam on the rest (no clip, no decay: gated nGPT's)."""
  if opt_cfg.name != "muon":
    raise SystemExit(f"error: optimizer.name={opt_cfg.name!r}: the gated nGPT floor is Muon's")

  def dims(ps):
    return jax.tree_util.tree_map_with_path(
        lambda path, x: optax.contrib.MuonDimensionNumbers(-2, -1)  # stacked: layers lead
        if getattr(path[-1], "key", None) in MUON_KEYS else None, ps)

  return optax.contrib.muon(opt_cfg.lr, beta=opt_cfg.momentum, ns_steps=opt_cfg.ns_steps,
                            nesterov=opt_cfg.nesterov, adam_b1=opt_cfg.b1, adam_b2=opt_cfg.b2,
                            adam_learning_rate=opt_cfg.embed_lr or opt_cfg.lr,
                            muon_weight_dimension_numbers=dims)


def floor_step(cfg, opt_cfg, scan: bool):
  """(jitted step (state, batch) -> (state, loss), init(key, params=None) -> state); the state
  is (params, optimizer state, steps taken)."""
  tx = floor_tx(opt_cfg)
  every = opt_cfg.lazy_proj_freq
  grad = jax.value_and_grad(lambda p, i, t: floor_loss(cfg, scan, p, i, t))

  def step(state, batch):
    params, opt, count = state
    loss, g = grad(params, batch["inputs"], batch["targets"])
    upd, opt = tx.update(g, opt, params)
    params, count = optax.apply_updates(params, upd), count + 1
    params = jax.lax.cond(count % every == 0, project, lambda p: p, params)
    return (params, opt, count), loss

  def init(key, params=None):
    params = dict(floor_init(cfg, key) if params is None else params)
    if scan:
      params["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *params["blocks"])
    return params, tx.init(params), jnp.zeros((), jnp.int32)

  return jax.jit(step, donate_argnums=(0,)), init
