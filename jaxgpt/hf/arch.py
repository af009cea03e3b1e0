"""Which GPT configurations transformers can run, and config.json in both directions.

A jaxgpt GPT (`model.name = "gpt"`) is a transformers `LlamaForCausalLM` when it has a SwiGLU
MLP, no logit soft-cap, no U-net skips and sequential blocks; with QK-norm it is a
`Qwen3ForCausalLM` instead (Qwen3 = Llama + per-head RMSNorm of q and k before RoPE). Both
directions hold because the pieces are the same functions:
- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, weight w itself (not 1 + w), eps =
  `rms_norm_eps` = `model.norm_eps`, statistics in float32;
- RoPE: rotate-half (GPT-NeoX) layout in both, inv_freq = theta^(-2i / head_dim) with theta =
  `rope_theta` = `model.rope_base` (transformers >= 5 keeps it in `rope_parameters`), no
  scaling; so q and k kernels map without the permutation that Meta's interleaved weights need;
- attention: scale 1 / sqrt(head_dim), GQA query head i reads kv head i // (H / N) in both
  (transformers' `repeat_kv`), no biases;
- MLP: down(silu(gate(x)) * up(x)) = jaxgpt's proj(silu(gate(x)) * fc(x)).
Anything else (ReLU^2 / SiLU^2 / GELU MLPs, soft-cap, U-net skips, parallel blocks, nGPT, MoE,
Titans) is refused with one line naming the knob; `export.format = "safetensors"` still writes
such a model's weights with jaxgpt's own config.
"""

from __future__ import annotations

import math
from typing import Any

from jaxgpt.errors import ConfigError
from jaxgpt.models.dims import GPTConfig

# jaxgpt's name for each counterpart -> (transformers architecture, model_type)
ARCHITECTURES = {"llama": ("LlamaForCausalLM", "llama"), "qwen3": ("Qwen3ForCausalLM", "qwen3")}
DEFAULT_ROPE_THETA = 10000.0  # transformers' default when a config.json names none
DEFAULT_RMS_EPS = 1e-6  # LlamaConfig's and Qwen3Config's default rms_norm_eps


def _no_counterpart(knob: str, why: str) -> ConfigError:
  return ConfigError(f"{knob} has no transformers counterpart ({why}); LlamaForCausalLM and "
                     "Qwen3ForCausalLM need model.name='gpt', model.mlp_act='swiglu', no "
                     "logit soft-cap, model.encoder_layers=0, model.parallel_block=False "
                     "(export.format='safetensors' writes any model with jaxgpt's own config)")


def check_family(name: str) -> None:
  """Only the GPT family has a counterpart."""
  if name != "gpt":
    raise _no_counterpart(f"model.name={name!r}", "its blocks are not Llama blocks")


def counterpart(cfg: GPTConfig) -> str:
  """"llama" or "qwen3" for a GPT config, or a ConfigError naming the first knob that has
  no counterpart."""
  if cfg.moe is not None:
    raise _no_counterpart("model.name='moe'", "routed MLPs")
  if cfg.mlp_act != "swiglu":
    raise _no_counterpart(f"model.mlp_act={cfg.mlp_act!r}", "Llama's MLP is SwiGLU")
  if cfg.logit_softcap is not None:
    raise _no_counterpart(f"model.logit_softcap={cfg.logit_softcap!r}",
                          "Llama's logits are not capped")
  if cfg.encoder_layers:
    raise _no_counterpart(f"model.encoder_layers={cfg.encoder_layers!r}", "U-net skips")
  if cfg.parallel_block:
    raise _no_counterpart("model.parallel_block=True", "Llama's blocks are sequential")
  return "qwen3" if cfg.qk_norm else "llama"


def hf_config(cfg: GPTConfig, arch: str, *, max_positions: int, bos_id: int | None,
              eos_id: int | None) -> dict[str, Any]:
  """The config.json of `cfg` as a transformers `arch` ("llama" | "qwen3") checkpoint.
  `max_positions` is the sequence length trained at (RoPE itself has no maximum). RoPE's theta
  is written both ways transformers has read it (`rope_theta` before version 5,
  `rope_parameters` since)."""
  architecture, model_type = ARCHITECTURES[arch]
  out = {
      "architectures": [architecture], "model_type": model_type,
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model,
      "intermediate_size": cfg.mlp_dim, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim, "hidden_act": "silu", "max_position_embeddings": max_positions,
      "initializer_range": cfg.init_std, "rms_norm_eps": cfg.norm_eps, "use_cache": True,
      "tie_word_embeddings": cfg.tie_embeddings, "rope_theta": cfg.rope_base,
      "rope_scaling": None,
      "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_base},
      "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": bos_id,
      "eos_token_id": eos_id, "pad_token_id": None, "torch_dtype": "float32",
  }
  if arch == "llama":
    out.update(mlp_bias=False, pretraining_tp=1)
  else:
    out.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_layers,
               layer_types=["full_attention"] * cfg.num_layers)
  return out


# ------------------------------------------------------------------------------------------
# config.json -> the jaxgpt model it describes.

def architecture(hf: dict, source: str) -> str:
  """"llama" or "qwen3" from a config.json's `architectures` (else `model_type`)."""
  names = hf.get("architectures") or []
  for arch, (architecture_name, model_type) in ARCHITECTURES.items():
    if architecture_name in names or (not names and hf.get("model_type") == model_type):
      return arch
  got = names[0] if names else hf.get("model_type")
  allowed = ", ".join(a for a, _ in ARCHITECTURES.values())
  raise ConfigError(f"{source}: architecture {got!r} is not one jaxgpt maps ({allowed})")


def rope_theta(hf: dict, source: str) -> float:
  """theta of default (unscaled) RoPE; scaled RoPE types are refused by name."""
  params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  kind = params.get("rope_type", params.get("type", "default"))
  if kind != "default":
    raise ConfigError(f"{source}: rope_type={kind!r} (scaled RoPE) is not one jaxgpt runs; "
                      "it runs default RoPE only")
  theta = params.get("rope_theta", hf.get("rope_theta", DEFAULT_ROPE_THETA))
  return float(theta)


def mlp_mult(intermediate: int, d_model: int) -> float:
  """The `model.mlp_mult` whose int(mlp_mult * d_model) is `intermediate` exactly (the float
  quotient can land just below it)."""
  mult = intermediate / d_model
  while int(mult * d_model) < intermediate:
    mult = math.nextafter(mult, math.inf)
  return mult


def _require(hf: dict, key: str, source: str, allowed: tuple, default: Any) -> None:
  value = hf.get(key, default)
  if value not in allowed:
    raise ConfigError(f"{source}: {key}={value!r} is not one jaxgpt runs (it needs "
                      f"{' or '.join(repr(a) for a in allowed)})")


def _integer(hf: dict, key: str, source: str) -> int:
  value = hf.get(key)
  if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
    raise ConfigError(f"{source}: {key}={value!r} must be an integer >= 1")
  return value


def model_keys(hf: dict, source: str) -> tuple[str, dict[str, Any]]:
  """(arch, {model key: value}) for the jaxgpt GPT that the config.json `hf` describes; a
  ConfigError naming `source` and the key for anything jaxgpt does not run."""
  arch = architecture(hf, source)
  _require(hf, "hidden_act", source, ("silu",), "silu")
  _require(hf, "attention_bias", source, (False,), False)
  _require(hf, "mlp_bias", source, (False,), False)
  if arch == "qwen3":
    _require(hf, "use_sliding_window", source, (False,), False)
    kinds = set(hf.get("layer_types") or ["full_attention"])
    if kinds != {"full_attention"}:
      raise ConfigError(f"{source}: layer_types={sorted(kinds)} (sliding-window layers) is "
                        "not one jaxgpt runs; it needs full_attention only")
  d = _integer(hf, "hidden_size", source)
  heads = _integer(hf, "num_attention_heads", source)
  kv_heads = hf.get("num_key_value_heads") or heads
  head_dim = hf.get("head_dim") or d // heads
  keys = {
      "name": "gpt", "num_layers": _integer(hf, "num_hidden_layers", source), "d_model": d,
      "num_heads": heads, "num_kv_heads": kv_heads, "head_dim": head_dim,
      "mlp_mult": mlp_mult(_integer(hf, "intermediate_size", source), d),
      "mlp_act": "swiglu", "qk_norm": arch == "qwen3", "rope_base": rope_theta(hf, source),
      "logit_softcap": None, "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
      "norm_eps": float(hf.get("rms_norm_eps", DEFAULT_RMS_EPS)), "parallel_block": False,
      "encoder_layers": 0, "vocab_size": _integer(hf, "vocab_size", source),
  }
  return arch, keys
