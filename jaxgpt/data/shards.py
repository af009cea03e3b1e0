"""Token shards: the on-disk format of tokenized data, and a concatenated view over shards.

Format (modded-nanogpt / parameter-golf FineWeb shards): a header of 256 little-endian int32,
`[0]` magic 20240520, `[1]` version 1, `[2]` the number of tokens n, the rest zero; then n
uint16 tokens from byte 1024. A file is therefore exactly 1024 + 2 n bytes, and token ids must
be below 65536.

Shards are read memory-mapped, so a 100M-token shard costs no memory until rows are touched,
and every error names the file (and, for globs, the pattern and the config key that gave it).
"""

from __future__ import annotations

import bisect
import glob as globlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jaxgpt import checks, files, registry
from jaxgpt.data.spec import DataSpec, get
from jaxgpt.data.tokenizer import NAMES, ByteTokenizer, load_tokenizer
from jaxgpt.errors import ConfigError

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_VOCAB = 1 << 16  # uint16 tokens


class ShardError(ValueError):
  """A token shard is missing, malformed, or holds ids outside the vocabulary."""


def write_shard(path: str | os.PathLike, tokens: np.ndarray) -> None:
  """Writes the 1-D integer array `tokens` as one shard at `path`, atomically."""
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ShardError(f"{path}: tokens must be a 1-D integer array, got {tokens.dtype}"
                     f"{list(tokens.shape)}")
  if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= MAX_VOCAB):
    raise ShardError(f"{path}: token ids must lie in [0, {MAX_VOCAB}) to fit uint16, got "
                     f"[{int(tokens.min())}, {int(tokens.max())}]")
  header = np.zeros(HEADER_INTS, dtype="<i4")
  header[:3] = (MAGIC, VERSION, tokens.size)
  files.atomic_write(path, header.tobytes(), tokens.astype(TOKEN_DTYPE).tobytes())


def read_num_tokens(path: str | os.PathLike) -> int:
  """Validates the header and size of the shard at `path`; returns its token count."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      raw = f.read(HEADER_BYTES)
  except FileNotFoundError:
    raise ShardError(f"token shard not found: {path}") from None
  if len(raw) < HEADER_BYTES:
    raise ShardError(f"{path}: truncated header ({len(raw)} of {HEADER_BYTES} bytes)")
  magic, version, num_tokens = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=3))
  if magic != MAGIC:
    raise ShardError(f"{path}: bad magic number {magic} (a token shard starts with {MAGIC})")
  if version != VERSION:
    raise ShardError(f"{path}: unsupported shard version {version} (this reader knows {VERSION})")
  expected = HEADER_BYTES + 2 * num_tokens
  if num_tokens < 0 or size < expected:
    raise ShardError(f"{path}: truncated: header says {num_tokens} tokens ({expected} bytes) "
                     f"but the file has {size} bytes")
  if size != expected:
    raise ShardError(f"{path}: token count mismatch: header says {num_tokens} tokens "
                     f"({expected} bytes) but the file has {size} bytes")
  return num_tokens


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> np.memmap:
  """The tokens of the shard at `path` as a read-only uint16 memmap of shape (n,).

  The header and file size are always validated; with `vocab_size`, every token is checked to
  be below it (a full pass over the shard).
  """
  num_tokens = read_num_tokens(path)
  tokens_n = np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES,
                       shape=(num_tokens,))
  if vocab_size is not None and num_tokens:
    top = int(tokens_n.max())
    if top >= vocab_size:
      where = int(np.argmax(tokens_n >= vocab_size))
      raise ShardError(f"{path}: token id {top} is >= the vocabulary size {vocab_size} "
                       f"(first offending token at position {where})")
  return tokens_n


def check_vocab(paths: Sequence[str], vocab_size: int) -> None:
  """Checks that every token of every shard in `paths` is below `vocab_size`."""
  for path in paths:
    read_shard(path, vocab_size)


def glob_shards(pattern: str, key: str) -> tuple[str, ...]:
  """The sorted files matching `pattern`; empty is an error naming the pattern and `key`."""
  paths = tuple(sorted(globlib.glob(os.path.expanduser(pattern))))
  if not paths:
    raise ShardError(f"{key}={pattern!r} matches no files (expected token shards)")
  return paths


def write_split(out_dir: str | os.PathLike, split: str, tokens: np.ndarray,
                max_shard_tokens: int) -> tuple[str, ...]:
  """Writes `tokens` as `<split>_000000.bin`, `<split>_000001.bin`, ... of at most
  `max_shard_tokens` tokens each; returns the file names (relative to `out_dir`)."""
  names = []
  for k, start in enumerate(range(0, max(len(tokens), 1), max_shard_tokens)):
    name = f"{split}_{k:06d}.bin"
    write_shard(Path(out_dir) / name, tokens[start:start + max_shard_tokens])
    names.append(name)
  return tuple(names)


class TokenStream:
  """The tokens of several shards as one sequence, read by `[start, stop)` ranges.

  Memmaps open lazily, and are dropped when pickled, so a stream can be sent to Grain worker
  processes (pickling a memmap would copy the whole shard).
  """

  def __init__(self, paths: Sequence[str]):
    if not paths:
      raise ShardError("a token stream needs at least one shard")
    self.paths = tuple(paths)
    sizes = [read_num_tokens(p) for p in self.paths]
    self.starts = tuple(int(s) for s in np.concatenate([[0], np.cumsum(sizes)]))
    self._shards = None

  def __len__(self) -> int:
    return self.starts[-1]

  def __getstate__(self):
    return {**self.__dict__, "_shards": None}

  def _open(self) -> list[np.ndarray]:
    if self._shards is None:  # plain ndarray views: slicing a memmap subclass is slower
      self._shards = [np.asarray(read_shard(p)) for p in self.paths]
    return self._shards

  def read(self, start: int, stop: int) -> np.ndarray:
    """Tokens [start, stop) of the concatenation, as uint16 (a view when within one shard)."""
    if not 0 <= start <= stop <= len(self):
      raise IndexError(f"range [{start}, {stop}) outside a stream of {len(self)} tokens")
    shards = self._open()
    if start == stop:
      return np.zeros(0, dtype=TOKEN_DTYPE)
    k = bisect.bisect_right(self.starts, start) - 1
    if stop <= self.starts[k + 1]:  # the common case: one shard, no copy
      return shards[k][start - self.starts[k]:stop - self.starts[k]]
    pieces = []
    while start < stop:
      k = bisect.bisect_right(self.starts, start) - 1
      end = min(stop, self.starts[k + 1])
      pieces.append(shards[k][start - self.starts[k]:end - self.starts[k]])
      start = end
    return np.concatenate(pieces)


# ------------------------------------------------------------------------------------------
# The source `data.name = "shards"`: token shards the user brings, by glob. Their ids mean
# nothing to jaxgpt (raw: `model.vocab_size` required, no val_bpb) unless `data.tokenizer` is
# a tokenizer.json, or `data.byte_shards` says they are UTF-8 bytes: then the vocabulary is
# 256, every id is checked below it, and val_bpb is exact (one byte per token).

def check_data(cfg: Any) -> None:
  tok = get(cfg, "tokenizer", "byte")
  if tok not in NAMES and not str(tok).endswith(".json"):
    raise ConfigError(f"data.tokenizer={tok!r} must be 'byte', 'bpe' (both mean: no tokenizer "
                      "for raw shards) or the path of a tokenizer.json")
  byte_shards = checks.boolean("data.byte_shards", get(cfg, "byte_shards", False))
  if byte_shards and tok != "byte":
    raise ConfigError(f"data.byte_shards=True and data.tokenizer={tok!r}: byte shards need "
                      "data.tokenizer='byte' (the default)")
  for key in ("train_pattern", "val_pattern"):
    if not get(cfg, key):
      raise ConfigError(f"data.{key}={get(cfg, key)!r} must be set (a glob of token shards) "
                        "when data.name='shards'")


def check(config: Any) -> None:
  check_data(config.data)
  if config.model.vocab_size is None and not get(config.data, "byte_shards", False):
    raise ConfigError("model.vocab_size=None must be set when data.name='shards' (e.g. 50304 "
                      "for GPT-2 token shards), unless data.byte_shards=True (byte-level "
                      "shards, vocabulary 256)")


def _shard_tokenizer(cfg: Any):
  """The tokenizer that vouches for the shards' ids, or None (raw shards)."""
  if get(cfg, "byte_shards", False):
    return ByteTokenizer()
  tok_path = get(cfg, "tokenizer", "byte")
  return load_tokenizer(tok_path) if str(tok_path).endswith(".json") else None


def prepare_source(cfg: Any) -> DataSpec:
  """The DataSpec of the shards matching `data.train_pattern` / `data.val_pattern`."""
  found = {split: glob_shards(get(cfg, key), f"data.{key}")
           for split, key in (("train", "train_pattern"), ("val", "val_pattern"))}
  tok = _shard_tokenizer(cfg)
  if tok is not None:
    try:
      check_vocab(found["train"] + found["val"], tok.vocab_size)
    except ShardError as e:
      what = ("data.byte_shards=True" if tok.name == "byte"
              else f"data.tokenizer={get(cfg, 'tokenizer')!r}")
      raise ShardError(f"{e} ({what})") from None
  split_tokens = {s: len(TokenStream(f)) for s, f in found.items()}
  return DataSpec(
      name="shards", train_files=found["train"], val_files=found["val"], extra_val={},
      vocab_size=None if tok is None else tok.vocab_size, tokenizer=tok,
      token_bytes=None if tok is None else tok.token_bytes, split_tokens=split_tokens,
      split_bytes=dict(split_tokens) if isinstance(tok, ByteTokenizer) else {})


registry.DATA_SOURCES.register("shards", registry.DataSource(
    prepare=prepare_source, check_data=check_data, check=check))
