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
- `shards`: a folder prepared by `python -m jaxgpt.data.prepare` (`data.prepared_dir`: parquet,
  jsonl, text files or a Hugging Face dataset, tokenized with a boundary token before every
  document, see `prepare.py`), or token shards matching `data.train_pattern` and
  `data.val_pattern` (sorted globs), e.g.
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

Documents (`data.document_separator`): "newline" (the default; today's caches) ends each with
"\\n"; "bos" puts the tokenizer's boundary token before each (byte 256, "<|endoftext|>" in a
trained BPE, a tokenizer.json's special token, `data.bos_token`), as the embedded corpus, `text`
and `tfds` do on request and `python -m jaxgpt.data.prepare` by default. `spec.bos_id` is its id
(None: none); `bos_id(config.data, spec)` is the id the model's document mask should use:
`data.bos_id` when set, else the data's.
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


def bos_id(cfg: Any, spec: DataSpec) -> int | None:
  """The boundary token for `model.document_mask`: `data.bos_id` when set, else the one the
  data put before every document (`spec.bos_id`), else None."""
  configured = get(cfg, "bos_id")
  return spec.bos_id if configured is None else configured


def _check_bos_id(cfg: Any, spec: DataSpec) -> None:
  """`data.bos_id`, when set, must be the data's boundary token (where the data has one)."""
  configured = get(cfg, "bos_id")
  if configured is not None and spec.bos_id is not None and configured != spec.bos_id:
    raise ConfigError(f"data.bos_id={configured} but the {spec.name} data starts each document "
                      f"with token {spec.bos_id}; unset data.bos_id or set it to {spec.bos_id}")


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
  _check_bos_id(cfg, spec)
  return spec


__all__ = [
    "DataSpec", "prepare", "bos_id", "train_iterator", "TrainIterator", "eval_batches",
    "num_eval_batches", "Tokenizer", "ByteTokenizer", "BPETokenizer", "load_tokenizer",
    "read_shard", "write_shard", "check_vocab", "ShardError", "TokenStream",
]
