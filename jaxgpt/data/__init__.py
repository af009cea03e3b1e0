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
- `shards`: token shards matching `data.train_pattern` and `data.val_pattern` (sorted globs), e.g.
  FineWeb GPT-2 shards. Their tokenizer is unknown unless `data.tokenizer` is the path of a
  `tokenizer.json` (e.g. GPT-2's byte-level BPE; metaspace and WordPiece load too); then every
  token is checked against its vocabulary and val_bpb is available. Otherwise `spec.tokenizer`,
  `spec.vocab_size` and `spec.token_bytes` are None (no val_bpb), and the trainer should check the
  shards against `model.vocab_size` with `data.check_vocab(files, vocab_size)`. With
  `data.byte_shards` the ids are UTF-8 bytes: vocabulary 256, ids checked, exact val_bpb.
- `mixture`: several shard sources (`data.mixture`), each batch drawn in proportion to their
  weights, each validation split scored on its own (`mixture.py`).
- `text`: your own UTF-8 text files (`data.train_pattern`, `data.val_pattern` or a held-out
  `data.val_fraction` of whole files), see `text.py`.
- `tfds`: a TensorFlow Datasets text dataset prepared as ArrayRecord, read without TensorFlow
  (`data.tfds_name`, ...), see `tfds.py`.
`text` and `tfds` tokenize their documents into cached token shards (`documents.py`).
"""

from __future__ import annotations

from typing import Any

from jaxgpt import checks, registry
from jaxgpt.data import shakespeare, shards, text, tfds  # noqa: F401 - registers the sources
from jaxgpt.data.pipeline import TrainIterator, eval_batches, num_eval_batches, train_iterator
from jaxgpt.data.shards import (
  ShardError,
  TokenStream,
  check_vocab,
  read_shard,
  write_shard,
)
from jaxgpt.data.spec import DataSpec, get
from jaxgpt.data.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer
from jaxgpt.errors import ConfigError


def _check_seq_len(spec: DataSpec, seq_len: int | None) -> None:
  """A split shorter than one window (seq_len + 1 tokens) is an error naming it."""
  if seq_len is None:
    return
  for split in ("train", "val", *spec.extra_val):
    n = len(TokenStream(spec.files(split)))
    if n < seq_len + 1:
      raise ConfigError(f"data.seq_len={seq_len} is too long for the {split} split "
                       f"({n} tokens; a window needs seq_len + 1)")


def prepare(cfg: Any) -> DataSpec:
  """Prepares (downloads, splits, tokenizes, caches) the data of `cfg` = config.data.

  Idempotent and safe to call from several processes at once; a prepared cache is reused.
  The source `data.name` comes from `registry.DATA_SOURCES` (each registers itself in its
  own module: `shakespeare.py`, `shards.py`).
  """
  name = get(cfg, "name", "shakespeare")
  seq_len = checks.integer("data.seq_len", get(cfg, "seq_len"), 1, allow_none=True)
  source = registry.DATA_SOURCES.get(name)
  source.check_data(cfg)
  spec = source.prepare(cfg)
  _check_seq_len(spec, seq_len)
  return spec


__all__ = [
    "DataSpec", "prepare", "train_iterator", "TrainIterator", "eval_batches",
    "num_eval_batches", "Tokenizer", "ByteTokenizer", "BPETokenizer", "load_tokenizer",
    "read_shard", "write_shard", "check_vocab", "ShardError", "TokenStream",
]
