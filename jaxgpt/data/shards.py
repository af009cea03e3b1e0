"""Token shards: the on-disk format of tokenized data, and a concatenated view over shards.

Format (modded-nanogpt / parameter-golf FineWeb shards): a header of 256 little-endian int32,
`[0]` magic 20240520, `[1]` the version, `[2]` the number of tokens n, the rest zero; then n
tokens from byte 1024, whose width the version fixes:
- version 1: uint16 tokens (ids below 65,536), a file of exactly 1024 + 2 n bytes. This is the
  format modded-nanogpt and parameter-golf write and read, unchanged byte for byte.
- version 2: uint32 tokens, a file of exactly 1024 + 4 n bytes, for vocabularies above 65,536
  ids. Readers of version 1 check `header[1] == 1` (modded-nanogpt's `_load_data_shard`,
  parameter-golf's `load_data_shard`), so they refuse a version-2 shard instead of misreading
  it. jaxgpt's batches hold int32 ids, so version 2 takes ids below 2^31.
`write_shard` picks version 1 whenever the vocabulary and every id fit uint16, else version 2;
every reader here (`read_shard`, `TokenStream`, hence training and evaluation windows and the
document caches) accepts both.

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
from absl import logging

from jaxgpt import checks, files, registry
from jaxgpt.data.spec import DataSpec, get, spec_from_meta
from jaxgpt.data.tokenizer import (
  NAMES,
  PROBE_TEXT,
  ByteTokenizer,
  is_tokenizer_file,
  load_tokenizer,
  lossy_reason,
  saved_file,
)
from jaxgpt.errors import ConfigError

MAGIC = 20240520
VERSION = 1  # the uint16 format of modded-nanogpt and parameter-golf
VERSION_UINT32 = 2
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
DTYPES = {VERSION: np.dtype("<u2"), VERSION_UINT32: np.dtype("<u4")}  # version -> token dtype
MAX_VOCABS = {VERSION: 1 << 16, VERSION_UINT32: 1 << 31}  # version -> ids must lie below
TOKEN_DTYPE = DTYPES[VERSION]
MAX_VOCAB = MAX_VOCABS[VERSION]
PREPARED_FORMAT = 1  # meta.json["prepared"] of a folder of `python -m jaxgpt.data.prepare`


class ShardError(ValueError):
  """A token shard is missing, malformed, or holds ids outside the vocabulary."""


def shard_version(vocab_size: int | None, max_id: int = -1) -> int:
  """The version `write_shard` picks: 1 (uint16) when a vocabulary of `vocab_size` ids (None:
  unknown) and the largest id `max_id` both fit uint16, else 2 (uint32)."""
  fits = max_id < MAX_VOCABS[VERSION] and (vocab_size is None or vocab_size <= MAX_VOCABS[VERSION])
  return VERSION if fits else VERSION_UINT32


def check_fits(path: str | os.PathLike, version: int, vocab_size: int | None) -> None:
  """A vocabulary of `vocab_size` ids must fit the token dtype of `version`; else one line
  naming the vocabulary size."""
  if version not in DTYPES:
    raise ShardError(f"{path}: shard version {version} is not one of {sorted(DTYPES)}")
  if vocab_size is not None and vocab_size > MAX_VOCABS[version]:
    raise ShardError(f"{path}: vocabulary size {vocab_size} does not fit version-{version} "
                     f"shards ({DTYPES[version].name} tokens hold ids below "
                     f"{MAX_VOCABS[version]:,})")


def write_shard(path: str | os.PathLike, tokens: np.ndarray, vocab_size: int | None = None,
                version: int | None = None) -> int:
  """Writes the 1-D integer array `tokens` as one shard at `path`, atomically; returns its
  version. `version` None picks it (`shard_version`): 1 (uint16) unless the vocabulary
  exceeds 65,536 ids or an id does not fit uint16, then 2 (uint32). With `vocab_size`, every
  id must lie below it."""
  tokens = np.asarray(tokens)
  if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
    raise ShardError(f"{path}: tokens must be a 1-D integer array, got {tokens.dtype}"
                     f"{list(tokens.shape)}")
  low, high = (int(tokens.min()), int(tokens.max())) if tokens.size else (0, -1)
  version = shard_version(vocab_size, high) if version is None else version
  check_fits(path, version, vocab_size)
  limit = MAX_VOCABS[version] if vocab_size is None else vocab_size
  if low < 0 or high >= limit:
    what = (f"the vocabulary size {vocab_size}" if vocab_size is not None
            else f"{limit:,} to fit {DTYPES[version].name}")
    raise ShardError(f"{path}: token ids must lie in [0, {what}), got [{low}, {high}]")
  header = np.zeros(HEADER_INTS, dtype="<i4")
  header[:3] = (MAGIC, version, tokens.size)
  files.atomic_write(path, header.tobytes(), tokens.astype(DTYPES[version]).tobytes())
  return version


def read_header(path: str | os.PathLike) -> tuple[int, int]:
  """Validates the header and size of the shard at `path`; returns (version, token count)."""
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
  if version not in DTYPES:
    raise ShardError(f"{path}: unsupported shard version {version} (this reader knows "
                     f"{' and '.join(map(str, DTYPES))})")
  expected = HEADER_BYTES + DTYPES[version].itemsize * num_tokens
  if num_tokens < 0 or size < expected:
    raise ShardError(f"{path}: truncated: header says {num_tokens} tokens ({expected} bytes "
                     f"at version {version}) but the file has {size} bytes")
  if size != expected:
    raise ShardError(f"{path}: token count mismatch: header says {num_tokens} tokens "
                     f"({expected} bytes at version {version}) but the file has {size} bytes")
  return version, num_tokens


def read_num_tokens(path: str | os.PathLike) -> int:
  """Validates the header and size of the shard at `path`; returns its token count."""
  return read_header(path)[1]


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> np.memmap:
  """The tokens of the shard at `path` as a read-only memmap of shape (n,): uint16 for a
  version-1 shard, uint32 for version 2.

  The header and file size are always validated; with `vocab_size`, every token is checked to
  be below it (a full pass over the shard).
  """
  version, num_tokens = read_header(path)
  tokens_n = np.memmap(path, dtype=DTYPES[version], mode="r", offset=HEADER_BYTES,
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
                max_shard_tokens: int, vocab_size: int | None = None) -> tuple[str, ...]:
  """Writes `tokens` as `<split>_000000.bin`, `<split>_000001.bin`, ... of at most
  `max_shard_tokens` tokens each, all of one version (chosen from `vocab_size` and the
  largest id); returns the file names (relative to `out_dir`)."""
  tokens = np.asarray(tokens)
  version = shard_version(vocab_size, int(tokens.max()) if tokens.size else -1)
  names = []
  for k, start in enumerate(range(0, max(len(tokens), 1), max_shard_tokens)):
    name = f"{split}_{k:06d}.bin"
    write_shard(Path(out_dir) / name, tokens[start:start + max_shard_tokens], vocab_size,
                version)
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
    """Tokens [start, stop) of the concatenation, as the shards' dtype (uint16, or uint32 where
    a version-2 shard is involved); a view when within one shard."""
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
# With a tokenizer.json or a SentencePiece .model (parameter-golf's shards: data.bos_id=1, a
# control id of the model), val_bpb counts `tokenizer.token_bytes` of the targets, and every
# shard's token type must hold the vocabulary (`check_dtypes`). No text comes
# with the shards, so the tokenizer is checked for losslessness on `tokenizer.PROBE_TEXT`
# (a warning and `DataSpec.lossy` when it is lossy). A metaspace tokenizer's "\u2581" counts
# one byte wherever it is: shards written with a dummy prefix count one byte more per
# document than their text holds (parameter-golf does not count a space after BOS).
# With `data.prepared_dir`, a folder written by `python -m jaxgpt.data.prepare`: its meta.json
# names the shards, the tokenizer (byte, or its tokenizer.json), the boundary token (spec.bos_id)
# and the exact UTF-8 bytes of each split; the patterns and data.tokenizer stay unset.

def check_prepared(cfg: Any) -> None:
  """With `data.prepared_dir`, the keys it replaces must stay unset."""
  folder = get(cfg, "prepared_dir")
  if not (isinstance(folder, str) and folder):
    raise ConfigError(f"data.prepared_dir={folder!r} must be a folder written by "
                      "python -m jaxgpt.data.prepare")
  for key in ("train_pattern", "val_pattern", "byte_shards"):
    if get(cfg, key):
      raise ConfigError(f"data.prepared_dir={folder!r} and data.{key}={get(cfg, key)!r}: the "
                        "folder's meta.json names its shards and tokenizer; set one of them")
  if get(cfg, "tokenizer", "byte") != "byte":
    raise ConfigError(f"data.prepared_dir={folder!r} and data.tokenizer="
                      f"{get(cfg, 'tokenizer')!r}: the folder has its own tokenizer; leave "
                      "data.tokenizer at its default")


def check_data(cfg: Any) -> None:
  for key, unset in (("document_separator", "newline"), ("bos_token", None)):
    if get(cfg, key, unset) != unset:
      raise ConfigError(f"data.{key}={get(cfg, key)!r}: token shards are tokenized already; "
                        "a folder of python -m jaxgpt.data.prepare records its boundary token "
                        "(data.prepared_dir)")
  if get(cfg, "prepared_dir") is not None:
    return check_prepared(cfg)
  tok = get(cfg, "tokenizer", "byte")
  if tok not in NAMES and not is_tokenizer_file(tok):
    raise ConfigError(f"data.tokenizer={tok!r} must be 'byte', 'bpe' (both mean: no tokenizer "
                      "for raw shards) or the path of a tokenizer.json or a SentencePiece "
                      ".model")
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
  if get(config.data, "prepared_dir") is not None:
    return
  if config.model.vocab_size is None and not get(config.data, "byte_shards", False):
    raise ConfigError("model.vocab_size=None must be set when data.name='shards' (e.g. 50304 "
                      "for GPT-2 token shards), unless data.byte_shards=True (byte-level "
                      "shards, vocabulary 256)")


def _shard_tokenizer(cfg: Any):
  """The tokenizer that vouches for the shards' ids, or None (raw shards)."""
  if get(cfg, "byte_shards", False):
    return ByteTokenizer()
  tok_path = get(cfg, "tokenizer", "byte")
  if not is_tokenizer_file(tok_path):
    return None
  try:
    tok = load_tokenizer(tok_path)
  except ValueError as e:  # not a tokenizer file, no sentencepiece package, ...
    raise ConfigError(f"data.tokenizer={tok_path!r}: {e}") from None
  bos = get(cfg, "bos_id")
  if bos is not None and hasattr(tok, "pg_tables") and not tok.sp.is_control(bos):
    raise ConfigError(f"data.bos_id={bos} is not a control id of the SentencePiece model "
                      f"{tok_path} (its BOS is {tok.sp.bos_id()}; parameter-golf's shards: 1)")
  return tok


def check_dtypes(paths: Sequence[str], vocab_size: int, what: str) -> None:
  """Every shard's token dtype holds the ids of a vocabulary of `vocab_size`; else one line
  naming the shard and `what` (the key that gave the tokenizer)."""
  for path in paths:
    try:
      check_fits(path, read_header(path)[0], vocab_size)
    except ShardError as e:
      raise ShardError(f"{e} ({what})") from None


def prepared_spec(folder: str | os.PathLike) -> DataSpec:
  """The DataSpec of a finished folder of `python -m jaxgpt.data.prepare` (its meta.json)."""
  root = Path(folder).expanduser()
  meta = files.read_json(root / "meta.json", None)
  if meta is None or meta.get("prepared") != PREPARED_FORMAT:
    why = "no meta.json" if meta is None else "its meta.json is not one the command writes"
    raise ConfigError(f"data.prepared_dir={str(folder)!r}: {why} (prepare it with python -m "
                      "jaxgpt.data.prepare --output DIR; a killed run finishes when rerun)")
  needed = [root / f for m in meta["splits"].values() for f in m["files"]]
  needed += [root / saved_file(meta["tokenizer"])] if meta["tokenizer"] != "byte" else []
  missing = [str(p) for p in needed if not p.exists()]
  if missing:
    raise ConfigError(f"data.prepared_dir={str(folder)!r}: {missing[0]} is missing "
                      f"({len(missing)} of the files its meta.json names)")
  return spec_from_meta(root, meta, "shards")


def prepare_source(cfg: Any) -> DataSpec:
  """The DataSpec of the shards matching `data.train_pattern` / `data.val_pattern`, or of the
  folder `data.prepared_dir`."""
  if get(cfg, "prepared_dir") is not None:
    return prepared_spec(get(cfg, "prepared_dir"))
  found = {split: glob_shards(get(cfg, key), f"data.{key}")
           for split, key in (("train", "train_pattern"), ("val", "val_pattern"))}
  tok = _shard_tokenizer(cfg)
  if tok is not None:
    what = ("data.byte_shards=True" if tok.name == "byte"
            else f"data.tokenizer={get(cfg, 'tokenizer')!r}")
    check_dtypes(found["train"] + found["val"], tok.vocab_size, what)
    try:
      check_vocab(found["train"] + found["val"], tok.vocab_size)
    except ShardError as e:
      raise ShardError(f"{e} ({what})") from None
  split_tokens = {s: len(TokenStream(f)) for s, f in found.items()}
  lossy = None if tok is None else lossy_reason(tok, PROBE_TEXT)
  if lossy:
    lossy += " (on tokenizer.PROBE_TEXT: no text comes with shards)"
    logging.warning("data.tokenizer=%r is lossy: %s; raw shards carry no raw byte count, so "
                    "val_bpb counts the bytes its tokens stand for, not the raw text's",
                    get(cfg, "tokenizer"), lossy)
  return DataSpec(
      name="shards", train_files=found["train"], val_files=found["val"], extra_val={},
      vocab_size=None if tok is None else tok.vocab_size, tokenizer=tok,
      token_bytes=None if tok is None else tok.token_bytes, split_tokens=split_tokens,
      split_bytes=dict(split_tokens) if isinstance(tok, ByteTokenizer) else {}, lossy=lossy)


registry.DATA_SOURCES.register("shards", registry.DataSource(
    prepare=prepare_source, check_data=check_data, check=check))
