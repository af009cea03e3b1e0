"""Data for jaxgpt: prepared token shards, tokenizers, and training / evaluation batches.

    spec = data.prepare(config.data)                  # DataSpec: shard files + tokenizer
    it = data.train_iterator(spec, seq_len=T, global_batch_size=B, seed=s)
    batch = next(it)                                  # {"inputs", "targets"}: int32[B, T]
    for b in data.eval_batches(spec, "val", seq_len=T, batch_size=b): ...

Sources (`data.name`):
- `shakespeare`: the embedded default corpus (see `shakespeare.py`), tokenized with
  `data.tokenizer` = `byte` (256 ids) or `bpe` (a byte-level BPE of `data.bpe_vocab_size` ids
  trained on the training split), cached under `data.data_dir` / $JAXGPT_DATA_DIR /
  ~/.cache/jaxgpt. With `data.folio_val`, `spec.extra_val["folio"]` holds the First Folio
  spellings of the validation works.
- `shards`: token shards matching `data.train_pattern` and `data.val_pattern` (sorted globs),
  e.g. FineWeb GPT-2 shards. Their tokenizer is unknown unless `data.tokenizer` is the path of
  a byte-level BPE `tokenizer.json` (e.g. GPT-2's); then every token is checked against its
  vocabulary and val_bpb is available. Otherwise `spec.tokenizer`, `spec.vocab_size` and
  `spec.token_bytes` are None (no val_bpb), and the trainer should check the shards against
  `model.vocab_size` with `data.check_vocab(files, vocab_size)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxgpt.data import cache, shakespeare
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.data.pipeline import (TrainIterator, eval_batches, num_eval_batches,
                                  train_iterator)
from jaxgpt.data.shards import (ShardError, TokenStream, check_vocab, glob_shards, read_shard,
                                write_shard)
from jaxgpt.data.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer

NAMES = ("shakespeare", "shards")
TOKENIZERS = ("byte", "bpe")


@dataclasses.dataclass(frozen=True, eq=False)
class DataSpec:
  """What a run needs to know about its data; built by `prepare`.

  `split_tokens` / `split_bytes` give each split's token count and exact UTF-8 byte count
  where known (the Shakespeare cache records them; raw shards give tokens only).
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

  def files(self, split: str) -> tuple[str, ...]:
    """The shard files of `split` ("train", "val" or a key of `extra_val`)."""
    return {"train": self.train_files, "val": self.val_files, **self.extra_val}[split]


def _get(cfg: Any, key: str, default: Any = None) -> Any:
  value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
  return default if value is None else value


def _check_config(cfg: Any) -> None:
  name, tok, seq_len = _get(cfg, "name", "shakespeare"), _get(cfg, "tokenizer", "byte"), _get(
      cfg, "seq_len")
  if name not in NAMES:
    raise ValueError(f"data.name={name!r} is not one of {', '.join(map(repr, NAMES))}")
  if name == "shakespeare" and tok not in TOKENIZERS:
    raise ValueError(f"data.tokenizer={tok!r} is not one of {', '.join(map(repr, TOKENIZERS))}")
  if name == "shards" and tok not in TOKENIZERS and not str(tok).endswith(".json"):
    raise ValueError(f"data.tokenizer={tok!r} must be 'byte', 'bpe' (both mean: no tokenizer "
                     "for raw shards) or the path of a tokenizer.json")
  vocab = _get(cfg, "bpe_vocab_size", 1024)
  if name == "shakespeare" and tok == "bpe" and not (
      isinstance(vocab, int) and tokenizer_lib.MIN_BPE_VOCAB <= vocab <= tokenizer_lib.MAX_BPE_VOCAB):
    raise ValueError(f"data.bpe_vocab_size={vocab!r} must be an integer in "
                     f"[{tokenizer_lib.MIN_BPE_VOCAB}, {tokenizer_lib.MAX_BPE_VOCAB}]")
  if seq_len is not None and not (isinstance(seq_len, int) and seq_len > 0):
    raise ValueError(f"data.seq_len={seq_len!r} must be a positive integer")


def _check_seq_len(spec: DataSpec, seq_len: int | None) -> None:
  """A split shorter than one window (seq_len + 1 tokens) is an error naming it."""
  if seq_len is None:
    return
  for split in ("train", "val", *spec.extra_val):
    n = len(TokenStream(spec.files(split)))
    if n < seq_len + 1:
      raise ValueError(f"data.seq_len={seq_len} is too long for the {split} split "
                       f"({n} tokens; a window needs seq_len + 1)")


def _prepare_shakespeare(cfg: Any) -> DataSpec:
  root = cache.data_dir(_get(cfg, "data_dir")) / "shakespeare"
  tok_name, bpe_vocab = _get(cfg, "tokenizer", "byte"), _get(cfg, "bpe_vocab_size", 1024)
  meta = shakespeare.prepare(root, tok_name, bpe_vocab)
  tok = shakespeare.load_tokenizer(root, tok_name, bpe_vocab)
  paths = {s: shakespeare.shard_paths(root, tok_name, bpe_vocab, meta, s)
           for s in shakespeare.SPLITS}
  return DataSpec(
      name="shakespeare", train_files=paths["train"], val_files=paths["val"],
      extra_val={"folio": paths["folio"]} if _get(cfg, "folio_val", False) else {},
      vocab_size=tok.vocab_size, tokenizer=tok, token_bytes=tok.token_bytes,
      split_tokens={s: m["tokens"] for s, m in meta["splits"].items()},
      split_bytes={s: m["bytes"] for s, m in meta["splits"].items()})


def _prepare_shards(cfg: Any) -> DataSpec:
  files = {}
  for split, key in (("train", "train_pattern"), ("val", "val_pattern")):
    pattern = _get(cfg, key)
    if not pattern:
      raise ValueError(f"data.{key} must be set (a glob of token shards) when data.name='shards'")
    files[split] = glob_shards(pattern, f"data.{key}")
  tok_path = _get(cfg, "tokenizer", "byte")
  tok = load_tokenizer(tok_path) if str(tok_path).endswith(".json") else None
  if tok is not None:
    check_vocab(files["train"] + files["val"], tok.vocab_size)
  return DataSpec(
      name="shards", train_files=files["train"], val_files=files["val"], extra_val={},
      vocab_size=None if tok is None else tok.vocab_size, tokenizer=tok,
      token_bytes=None if tok is None else tok.token_bytes,
      split_tokens={s: len(TokenStream(f)) for s, f in files.items()}, split_bytes={})


def prepare(cfg: Any) -> DataSpec:
  """Prepares (downloads, splits, tokenizes, caches) the data of `cfg` = config.data.

  Idempotent and safe to call from several processes at once; a prepared cache is reused.
  """
  _check_config(cfg)
  name = _get(cfg, "name", "shakespeare")
  spec = _prepare_shakespeare(cfg) if name == "shakespeare" else _prepare_shards(cfg)
  _check_seq_len(spec, _get(cfg, "seq_len"))
  return spec


__all__ = [
    "DataSpec", "prepare", "train_iterator", "TrainIterator", "eval_batches",
    "num_eval_batches", "Tokenizer", "ByteTokenizer", "BPETokenizer", "load_tokenizer",
    "read_shard", "write_shard", "check_vocab", "ShardError", "TokenStream",
]
