"""DataSpec: what a run needs to know about its data, whichever source (`data.name`) made it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxgpt.data.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True, eq=False)
class DataSpec:
  """What a run needs to know about its data; built by `prepare`.

  `split_tokens` / `split_bytes` give each split's token count and exact UTF-8 byte count
  where known (the Shakespeare cache records them; raw shards give tokens only). `lossy` says
  why the tokenizer's tokens do not stand for the raw text (`tokenizer.lossy_reason`: val_bpb
  then counts the bytes the tokens stand for), None when they do or when nothing is known.
  """
  name: str
  train_files: tuple[str, ...]
  val_files: tuple[str, ...]
  extra_val: dict[str, tuple[str, ...]]
  vocab_size: int | None
  tokenizer: Tokenizer | None
  token_bytes: np.ndarray | None
  split_tokens: dict[str, int]
  split_bytes: dict[str, int]
  lossy: str | None = None

  def files(self, split: str) -> tuple[str, ...]:
    """The shard files of `split` ("train", "val" or a key of `extra_val`)."""
    return {"train": self.train_files, "val": self.val_files, **self.extra_val}[split]


def get(cfg: Any, key: str, default: Any = None) -> Any:
  value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if value is None else value
