"""Tensor layouts between jaxgpt's GPT parameters and a transformers Llama / Qwen3 state dict.

jaxgpt keeps kernels as (in, out) with the heads split out; PyTorch's `nn.Linear.weight` is
(out, in) with the heads flattened, head-major (transformers views q_proj's output as
(heads, head_dim), so flat row h * K + k is head h, component k). Each conversion below is a
pair of pure numpy functions, tested against what the two layouts compute
(tests/test_hf_interop.py):

  attn q / k / v  (D, H, K)  <->  q_proj / k_proj / v_proj.weight  (H K, D)   heads_in_*
  attn o          (H, K, D)  <->  o_proj.weight                    (D, H K)   heads_out_*
  mlp gate / fc   (D, F)     <->  gate_proj / up_proj.weight       (F, D)     transpose
  mlp proj        (F, D)     <->  down_proj.weight                 (D, F)     transpose
  lm_head         (D, V)     <->  lm_head.weight                   (V, D)     transpose
  embed           (V, D)     ==   model.embed_tokens.weight        (V, D)
  RMSNorm scales  (D,), (K,) ==   *_layernorm / norm / q_norm / k_norm .weight (same w)

GQA needs no reordering: kv head n serves query heads [n H/N, (n+1) H/N) in both. RoPE needs
none either: both rotate halves (arch.py). A tied head has no `lm_head.weight` (transformers
writes only the embedding of tied weights).

Layers: unscanned parameters are `blocks_<i>/...`; scanned ones are stacked on a leading axis
in the scan groups of `models.gpt.layer_groups` (`blocks` when there are no U-net skips).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from jaxgpt.errors import ConfigError
from jaxgpt.models import gpt
from jaxgpt.models.dims import GPTConfig

Array = np.ndarray


def heads_in_to_linear(w_dhk: Array) -> Array:
  """(D, H, K) q/k/v kernel -> (H K, D) Linear weight."""
  d, h, k = w_dhk.shape
  return np.ascontiguousarray(w_dhk.reshape(d, h * k).T)


def linear_to_heads_in(w_od: Array, heads: int, head_dim: int) -> Array:
  """(H K, D) Linear weight -> (D, H, K) kernel."""
  return np.ascontiguousarray(w_od.T.reshape(w_od.shape[1], heads, head_dim))


def heads_out_to_linear(w_hkd: Array) -> Array:
  """(H, K, D) output-projection kernel -> (D, H K) Linear weight."""
  h, k, d = w_hkd.shape
  return np.ascontiguousarray(w_hkd.reshape(h * k, d).T)


def linear_to_heads_out(w_di: Array, heads: int, head_dim: int) -> Array:
  """(D, H K) Linear weight -> (H, K, D) kernel."""
  return np.ascontiguousarray(w_di.T.reshape(heads, head_dim, w_di.shape[0]))


def transpose(w: Array) -> Array:
  """(in, out) kernel <-> (out, in) Linear weight."""
  return np.ascontiguousarray(w.T)


def identity(w: Array) -> Array:
  return np.ascontiguousarray(w)


# Per layer: (jaxgpt sub-path, transformers suffix, to transformers, from transformers(w, cfg)).
Rule = tuple[str, str, Callable[[Array], Array], Callable[[Array, GPTConfig], Array]]
LAYER_RULES: tuple[Rule, ...] = (
    ("attn_norm/scale", "input_layernorm.weight", identity, lambda w, c: identity(w)),
    ("attn/q/kernel", "self_attn.q_proj.weight", heads_in_to_linear,
     lambda w, c: linear_to_heads_in(w, c.num_heads, c.head_dim)),
    ("attn/k/kernel", "self_attn.k_proj.weight", heads_in_to_linear,
     lambda w, c: linear_to_heads_in(w, c.num_kv_heads, c.head_dim)),
    ("attn/v/kernel", "self_attn.v_proj.weight", heads_in_to_linear,
     lambda w, c: linear_to_heads_in(w, c.num_kv_heads, c.head_dim)),
    ("attn/q_norm/scale", "self_attn.q_norm.weight", identity, lambda w, c: identity(w)),
    ("attn/k_norm/scale", "self_attn.k_norm.weight", identity, lambda w, c: identity(w)),
    ("attn/o/kernel", "self_attn.o_proj.weight", heads_out_to_linear,
     lambda w, c: linear_to_heads_out(w, c.num_heads, c.head_dim)),
    ("mlp_norm/scale", "post_attention_layernorm.weight", identity, lambda w, c: identity(w)),
    ("mlp/gate/kernel", "mlp.gate_proj.weight", transpose, lambda w, c: transpose(w)),
    ("mlp/fc/kernel", "mlp.up_proj.weight", transpose, lambda w, c: transpose(w)),
    ("mlp/proj/kernel", "mlp.down_proj.weight", transpose, lambda w, c: transpose(w)),
)
TOP_RULES: tuple[Rule, ...] = (
    ("embed/embedding", "model.embed_tokens.weight", identity, lambda w, c: identity(w)),
    ("final_norm/scale", "model.norm.weight", identity, lambda w, c: identity(w)),
    ("lm_head/kernel", "lm_head.weight", transpose, lambda w, c: transpose(w)),
)
# Tensors old transformers checkpoints carry that hold no weights (RoPE's buffer).
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


QK_NORM = ("attn/q_norm/scale", "attn/k_norm/scale")  # Qwen3 only


def layer_rules(cfg: GPTConfig) -> tuple[Rule, ...]:
  return tuple(r for r in LAYER_RULES if cfg.qk_norm or r[0] not in QK_NORM)


def top_rules(cfg: GPTConfig) -> tuple[Rule, ...]:
  return tuple(r for r in TOP_RULES if not (cfg.tie_embeddings and r[0] == "lm_head/kernel"))


def hf_name(layer: int, suffix: str) -> str:
  return f"model.layers.{layer}.{suffix}"


# ------------------------------------------------------------------------------------------
# Layers in and out of the scanned / unscanned parameter layouts.

def layer_slots(cfg: GPTConfig) -> list[tuple[str, int | None]]:
  """Per layer i: (parameter prefix, index on the stacked axis or None when unscanned)."""
  if not cfg.scan_layers:
    return [(f"blocks_{i}", None) for i in range(cfg.num_layers)]
  return [(name, j) for name, _, n in gpt.layer_groups(cfg) for j in range(n)]


def per_layer(flat: dict[str, Array], cfg: GPTConfig, sub: str) -> list[Array]:
  """Layer i's `sub` tensor for every layer, from flat parameters ("a/b/c" -> array)."""
  out = []
  for prefix, j in layer_slots(cfg):
    w = np.asarray(flat[f"{prefix}/{sub}"])
    out.append(w if j is None else w[j])
  return out


def stack_layers(layers: list[dict[str, Array]], cfg: GPTConfig) -> dict[str, Array]:
  """Flat parameters in `cfg`'s layout from one {sub-path: array} per layer."""
  flat: dict[str, list | Array] = {}
  for (prefix, j), tensors in zip(layer_slots(cfg), layers):
    for sub, w in tensors.items():
      if j is None:
        flat[f"{prefix}/{sub}"] = w
      else:
        flat.setdefault(f"{prefix}/{sub}", []).append(w)
  return {k: np.stack(v) if isinstance(v, list) else v for k, v in flat.items()}


# ------------------------------------------------------------------------------------------
# The two directions.

def to_hf(flat: dict[str, Array], cfg: GPTConfig) -> dict[str, Array]:
  """transformers state dict (name -> float32 array) of jaxgpt's flat GPT parameters."""
  out = {}
  for sub, name, fwd, _ in top_rules(cfg):
    out[name] = fwd(np.asarray(flat[sub], np.float32))
  for sub, suffix, fwd, _ in layer_rules(cfg):
    for i, w in enumerate(per_layer(flat, cfg, sub)):
      out[hf_name(i, suffix)] = fwd(np.asarray(w, np.float32))
  return out


def expected_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
  """The transformers tensor shapes `cfg` implies (checked before any conversion)."""
  d, h, n, k, f, v = (cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.mlp_dim,
                      cfg.vocab_size)
  layer = {"input_layernorm.weight": (d,), "self_attn.q_proj.weight": (h * k, d),
           "self_attn.k_proj.weight": (n * k, d), "self_attn.v_proj.weight": (n * k, d),
           "self_attn.q_norm.weight": (k,), "self_attn.k_norm.weight": (k,),
           "self_attn.o_proj.weight": (d, h * k), "post_attention_layernorm.weight": (d,),
           "mlp.gate_proj.weight": (f, d), "mlp.up_proj.weight": (f, d),
           "mlp.down_proj.weight": (d, f)}
  top = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,),
         "lm_head.weight": (v, d)}
  out = {name: top[name] for _, name, _, _ in top_rules(cfg)}
  for _, suffix, _, _ in layer_rules(cfg):
    out.update({hf_name(i, suffix): layer[suffix] for i in range(cfg.num_layers)})
  return out


def check_names_and_shapes(shapes: dict[str, tuple[int, ...]], cfg: GPTConfig,
                           source: str) -> None:
  """The tensors of a checkpoint (name -> shape) against what its config.json implies: a
  missing, unexpected or misshapen tensor is one ConfigError naming it. A tied checkpoint may
  also hold `lm_head.weight` (checked equal to the embedding by `from_hf`)."""
  want = expected_shapes(cfg)
  for name, shape in want.items():
    if name not in shapes:
      raise ConfigError(f"{source}: no tensor {name} (config.json implies it, shape "
                        f"{want[name]})")
    if tuple(shapes[name]) != shape:
      raise ConfigError(f"{source}: {name} has shape {tuple(shapes[name])} but config.json "
                        f"implies {shape}")
  extra = sorted(n for n in shapes if n not in want and not n.endswith(IGNORED_SUFFIXES)
                 and not (cfg.tie_embeddings and n == "lm_head.weight"))
  if extra:
    more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
    raise ConfigError(f"{source}: tensor {extra[0]}{more} has no place in the model that "
                      "config.json describes")
  if cfg.tie_embeddings and "lm_head.weight" in shapes and \
      tuple(shapes["lm_head.weight"]) != want["model.embed_tokens.weight"]:
    raise ConfigError(f"{source}: lm_head.weight has shape {tuple(shapes['lm_head.weight'])} "
                      f"but the tied embedding is {want['model.embed_tokens.weight']}")


def from_hf(tensors: dict[str, Array], cfg: GPTConfig, source: str) -> dict[str, Array]:
  """jaxgpt's flat GPT parameters (float32, `cfg`'s layout) from a transformers state dict
  whose names and shapes `check_names_and_shapes` accepted."""
  get = lambda name: np.asarray(tensors[name], np.float32)  # noqa: E731
  flat = {}
  for sub, name, _, back in top_rules(cfg):
    flat[sub] = back(get(name), cfg)
  if cfg.tie_embeddings and "lm_head.weight" in tensors and \
      not np.array_equal(get("lm_head.weight"), flat["embed/embedding"]):
    raise ConfigError(f"{source}: lm_head.weight differs from model.embed_tokens.weight but "
                      "config.json has tie_word_embeddings=true")
  layers = [{sub: back(get(hf_name(i, suffix)), cfg) for sub, suffix, _, back in layer_rules(cfg)}
            for i in range(cfg.num_layers)]
  flat.update(stack_layers(layers, cfg))
  return flat
