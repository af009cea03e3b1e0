"""Model families, chosen by `config.model.name`, and the parameter and FLOP counts the trainer
reports.

    model = models.build_model(config.model, vocab_size)
    variables = model.init(rng, tokens_bt)         # params boxed with logical axis names
    logits_btv = model.apply({"params": params}, tokens_bt)   # float32

A new family is one line in MODELS: name -> builder(cfg_model, vocab_size) -> flax Module.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax

from jaxgpt.models import gpt, ngpt
from jaxgpt.models.gpt import GPTConfig

Builder = Callable[[Any, "int | None"], nn.Module]

MODELS: dict[str, Builder] = {
    "gpt": gpt.build,
    "ngpt": ngpt.build,
    "gated_ngpt": ngpt.build,
}


# Families whose parameters live on a constraint set: params -> params projected back onto it,
# applied after optimizer steps (every `model.lazy_proj_freq` steps) by the trainer.
PROJECTIONS: dict[str, Callable[[Any], Any]] = {
    "ngpt": ngpt.project,
    "gated_ngpt": ngpt.project,
}


def projection(cfg_model: Any) -> Callable[[Any], Any] | None:
  """The projection of `config.model`'s family, or None if it has none."""
  return PROJECTIONS.get(cfg_model.name)


def build_model(cfg_model: Any, vocab_size: int | None = None) -> nn.Module:
  """The flax Module for `config.model`; `vocab_size` is the trainer's resolved vocabulary."""
  name = cfg_model.name
  if name not in MODELS:
    raise ValueError(f"model.name={name!r} is not allowed; choose one of {tuple(MODELS)}")
  return MODELS[name](cfg_model, vocab_size)


def _numel(tree: Any) -> int:
  # Works on arrays, ShapeDtypeStructs and boxed (nn.Partitioned) leaves alike.
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def count_params(params: Any) -> int:
  """Every parameter in the tree."""
  return _numel(params)


def non_embedding_params(params: Any, cfg: Any) -> int:
  """N for MFU (REFERENCE.md): all parameters but the embedding table, plus the LM head. Tied, the
  table is the head, so N counts it; untied, `lm_head` is already in the tree."""
  if "params" in params:
    params = params["params"]
  table = _numel(params["embed"])
  return count_params(params) - (0 if cfg.tie_embeddings else table)


def flops_per_token(cfg_model: Any, vocab_size: int | None, seq_len: int) -> float:
  """Training FLOPs per token, 6 N + 12 L d T (REFERENCE.md MFU)."""
  if cfg_model.get("name") in ngpt.NAMES:
    return ngpt.model_flops_per_token(cfg_model, vocab_size, seq_len)
  return gpt.flops_per_token(GPTConfig.from_config(cfg_model, vocab_size), seq_len)
