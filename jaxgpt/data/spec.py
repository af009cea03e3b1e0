"""DataSpec: what a run needs to know about its data, whichever source (`data.name`) made it;
`spec_from_meta` builds one from the meta.json of a tokenized folder (`documents.py`, and
`python -m jaxgpt.data.prepare`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.data.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True, eq=False)
class DataSpec:
  """What a run needs to know about its data; built by `prepare`.

  `split_tokens` / `split_bytes` give each split's token count and exact UTF-8 byte count
  where known (the Shakespeare cache records them; raw shards give tokens only). `lossy` says
  why the tokenizer's tokens do not stand for the raw text (`tokenizer.lossy_reason`: val_bpb
  then scales the tokens' bytes to the split's raw bytes, `train/evaluate.raw_bytes_summary`),
  None when they do or when nothing is known.
  `bos_id` is the document-boundary token the data put before every document (a prepared
  corpus's meta.json, or `data.document_separator="bos"`), None when there is none: the
  trainer uses it where `data.bos_id` is unset (`data.bos_id(config.data, spec)`).
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
  bos_id: int | None = None

  def files(self, split: str) -> tuple[str, ...]:
    """The shard files of `split` ("train", "val" or a key of `extra_val`)."""
    return {"train": self.train_files, "val": self.val_files, **self.extra_val}[split]


def get(cfg: Any, key: str, default: Any = None) -> Any:
  value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if value is None else value


def tokenizer_from_meta(root: Path, meta: dict):
  """The tokenizer of a finished preparation in `root`, with its boundary token if any."""
  return tokenizer_lib.load_saved(root, meta["tokenizer"], meta.get("bos_id") is not None,
                                 meta.get("bos_token"))


def spec_from_meta(root: Path, meta: dict, name: str) -> DataSpec:
  """The DataSpec of a finished preparation; a lossy tokenizer is logged as a warning."""
  tok = tokenizer_from_meta(root, meta)
  lossy = meta.get("lossy")  # absent from caches made before it was recorded: byte-level, exact
  if lossy:
    logging.warning("%s data in %s: the tokenizer is lossy: %s; val_bpb divides by the raw "
                    "bytes, val_bpb_tokens by the bytes its tokens stand for", name, root, lossy)
  split_files = {s: tuple(str(root / f) for f in m["files"]) for s, m in meta["splits"].items()}
  return DataSpec(
      name=name, train_files=split_files.pop("train"), val_files=split_files.pop("val"),
      extra_val=split_files, vocab_size=tok.vocab_size, tokenizer=tok,
      token_bytes=tok.token_bytes,
      split_tokens={s: m["tokens"] for s, m in meta["splits"].items()},
      split_bytes={s: m["bytes"] for s, m in meta["splits"].items()}, lossy=lossy,
      bos_id=meta.get("bos_id"))

