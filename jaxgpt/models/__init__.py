"""Model families, chosen by `config.model.name`, and the parameter and FLOP counts the trainer
reports.

    model = models.build_model(config.model, vocab_size, config.data.bos_id)
    variables = model.init(rng, tokens_bt)         # params boxed with logical axis names
    logits_btv = model.apply({"params": params}, tokens_bt)   # float32

Each family registers itself in its own module (`registry.MODELS.register(name,
registry.ModelFamily(...))`, see `gpt.py`, `ngpt.py`); importing this package registers them all.
A new family is a new module with one `register` call, plus its import here.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax

from jaxgpt import registry
from jaxgpt.models import gpt, ngpt, titans  # noqa: F401 - importing registers the families

family = registry.MODELS.get  # model.name -> registry.ModelFamily (ConfigError if unknown)


def projection(cfg_model: Any) -> Callable[[Any], Any] | None:
  """The projection of `config.model`'s family, or None if it has none."""
  return family(cfg_model.name).projection


def build_model(cfg_model: Any, vocab_size: int | None = None,
                bos_id: int | None = None) -> nn.Module:
  """The flax Module for `config.model`; `vocab_size` is the trainer's resolved vocabulary;
  `bos_id` is `data.bos_id`, the boundary token that `model.document_mask` needs (without it a
  document-masked model is a ConfigError, never an unmasked run). Passed on only when set, so
  a family's build may leave it out."""
  build = family(cfg_model.name).build
  return build(cfg_model, vocab_size) if bos_id is None else build(cfg_model, vocab_size,
                                                                    bos_id=bos_id)


def _numel(tree: Any) -> int:
  # Works on arrays, ShapeDtypeStructs and boxed (nn.Partitioned) leaves alike.
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def count_params(params: Any) -> int:
  """Every parameter in the tree."""
  return _numel(params)


def non_embedding_params(params: Any, cfg: Any) -> int:
  """N for MFU (docs/formulas.md "MFU"): all parameters but the embedding table, plus the LM
  head. Tied, the table is the head, so N counts it; untied, `lm_head` is already in the tree."""
  if "params" in params:
    params = params["params"]
  table = _numel(params["embed"])
  return count_params(params) - (0 if cfg.tie_embeddings else table)


def flops_per_token(cfg_model: Any, vocab_size: int | None, seq_len: int) -> float:
  """Training FLOPs per token of `config.model`'s family (docs/formulas.md "MFU")."""
  return family(cfg_model.name).flops_per_token(cfg_model, vocab_size, seq_len)
