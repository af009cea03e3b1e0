"""Your own text files (`data.name = "text"`): globs of UTF-8 files, one document per file.

    --config.data.name=text --config.data.train_pattern='mytexts/**/*.txt'

Splits, by whole files (a file is in exactly one split):
- `data.val_pattern` set: the files it matches are the validation split (a file matching both
  patterns is an error);
- otherwise `data.val_fraction` (default 0.1) of the distinct files matched by
  `data.train_pattern` are held out: the files are ranked by the sha256 of their contents and
  the first round(fraction x N) (at least 1, fewer than N) become `val`. The choice depends on
  the contents only, not on where the folder lives; files with equal contents share a split.
Within a split the files follow in path order. Globs are sorted and `**` is recursive.

Tokenizer (`data.tokenizer`): `byte`, `bpe` (a byte-level BPE of `data.bpe_vocab_size` ids
trained on the train files only) or the path of a `tokenizer.json` (byte-level BPE,
metaspace / SentencePiece-style or WordPiece-style, `tokenizer.HFTokenizer`); each token's byte
count is exact for the lossless kinds, and a lossy tokenizer is named in the log and
meta.json. Files are read as bytes and decoded as strict UTF-8 (no newline translation); each
file becomes `documents.document_text(text)`, or with `data.document_separator="bos"` the
tokenizer's boundary token and then the text as it is (`documents.py`; `data.bos_token` names
a tokenizer.json's special token; `spec.bos_id` is its id).

Cache: `<data_dir>/text/<key>/` (`data.data_dir`, else $JAXGPT_DATA_DIR, else ~/.cache/jaxgpt),
where key hashes the sha256 of every file of each split, in order, and the tokenizer setting:
edit, add or remove a file and the next run tokenizes afresh; the same contents elsewhere
reuse the cache. Every start reads each file once to hash it.
"""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path
from typing import Any, Sequence

from jaxgpt import checks, registry
from jaxgpt.data import cache, documents, spm
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.data.spec import DataSpec, get
from jaxgpt.errors import ConfigError

DEFAULT_VAL_FRACTION = 0.1


def check_tokenizer(tok: Any) -> None:
  """`byte`, `bpe`, `spm<V>`, or the path of an existing tokenizer.json or SentencePiece
  .model (also used by `tfds.py`)."""
  if str(tok).startswith("spm") and not tokenizer_lib.is_tokenizer_file(tok):
    spm.check_name("data.tokenizer", tok)
    return
  if tok not in tokenizer_lib.NAMES and not tokenizer_lib.is_tokenizer_file(tok):
    raise ConfigError(f"data.tokenizer={tok!r} must be 'byte', 'bpe', 'spm<V>' (e.g. "
                      "'spm1024') or the path of a tokenizer.json (byte-level, metaspace or "
                      "WordPiece) or of a SentencePiece .model")
  if tok not in tokenizer_lib.NAMES and not os.path.isfile(os.path.expanduser(str(tok))):
    raise ConfigError(f"data.tokenizer={tok!r}: no such file")


def check_data(cfg: Any) -> None:
  check_tokenizer(get(cfg, "tokenizer", "byte"))
  documents.check_boundary(cfg)
  if not get(cfg, "train_pattern"):
    raise ConfigError(f"data.train_pattern={get(cfg, 'train_pattern')!r} must be set (a glob "
                      "of UTF-8 text files, e.g. 'mytexts/*.txt') when data.name='text'")
  fraction = get(cfg, "val_fraction")
  if fraction is not None:
    if get(cfg, "val_pattern"):
      raise ConfigError(f"data.val_fraction={fraction!r} and data.val_pattern="
                        f"{get(cfg, 'val_pattern')!r}: set one of them, not both")
    checks.number("data.val_fraction", fraction, 0, 1, low_open=True, high_open=True)


def glob_files(pattern: str, key: str) -> tuple[str, ...]:
  """The sorted files matching `pattern` (`**` recursive); none is an error naming `key`."""
  expanded = os.path.expanduser(pattern)
  paths = sorted(p for p in globlib.glob(expanded, recursive=True) if os.path.isfile(p))
  if not paths:
    hint = f" (a folder: use '{pattern.rstrip('/')}/*.txt')" if os.path.isdir(expanded) else ""
    raise ConfigError(f"{key}={pattern!r} matches no files{hint}")
  return tuple(paths)


def hold_out(paths: Sequence[str], sha: dict[str, str], fraction: float
             ) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(train, val): the files whose contents rank first by sha256 go to val, whole."""
  distinct = sorted(set(sha[p] for p in paths))
  k = max(1, round(fraction * len(distinct)))
  if k >= len(distinct):
    raise ConfigError(
        f"data.val_fraction={fraction} holds out {k} of the {len(distinct)} distinct files of "
        "data.train_pattern and leaves none to train on; add files, lower the fraction, or "
        "set data.val_pattern")
  val_hashes = set(distinct[:k])
  return (tuple(p for p in paths if sha[p] not in val_hashes),
          tuple(p for p in paths if sha[p] in val_hashes))


def read_text(path: str, key: str) -> str:
  try:
    return Path(path).read_bytes().decode("utf-8")
  except UnicodeDecodeError as e:
    raise ConfigError(f"{key}: {path} is not UTF-8 text ({e})") from None


def split_files(cfg: Any) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
  """({"train": paths, "val": paths}, {path: sha256 of its contents})."""
  train = glob_files(get(cfg, "train_pattern"), "data.train_pattern")
  val_pattern = get(cfg, "val_pattern")
  val = glob_files(val_pattern, "data.val_pattern") if val_pattern else ()
  both = sorted(set(train) & set(val))
  if both:
    raise ConfigError(f"data.val_pattern={val_pattern!r} and data.train_pattern="
                      f"{get(cfg, 'train_pattern')!r} both match {both[0]} "
                      f"({len(both)} files in all): a file may be in one split only")
  sha = {p: documents.file_sha256(p) for p in (*train, *val)}
  if not val_pattern:
    train, val = hold_out(train, sha, get(cfg, "val_fraction", DEFAULT_VAL_FRACTION))
  return {"train": train, "val": val}, sha


def prepare_source(cfg: Any) -> DataSpec:
  """Tokenizes (or finds in the cache) the text files of `data.train_pattern` and the
  validation files; returns their DataSpec."""
  splits, sha = split_files(cfg)
  tok = get(cfg, "tokenizer", "byte")
  bpe_vocab_size = get(cfg, "bpe_vocab_size", 1024)
  separator, bos_token = get(cfg, "document_separator", "newline"), get(cfg, "bos_token")
  key = {"source": "text", "format": documents.FORMAT,
         **documents.tokenizer_key(tok, bpe_vocab_size),
         **documents.separator_key(separator, bos_token),
         "splits": {s: [sha[p] for p in paths] for s, paths in splits.items()}}
  root = cache.data_dir(get(cfg, "data_dir")) / "text" / documents.key_hash(key)
  pattern_key = {"train": "data.train_pattern", "val": "data.val_pattern"}
  if not get(cfg, "val_pattern"):
    pattern_key["val"] = "data.train_pattern"

  def docs(split: str):
    return lambda: (read_text(p, pattern_key[split]) for p in splits[split])

  recorded = {**key, "files": {s: list(paths) for s, paths in splits.items()}}  # for people
  return documents.prepare(root, {s: docs(s) for s in splits}, tokenizer=tok,
                           bpe_vocab_size=bpe_vocab_size, key=recorded, name="text",
                           separator=separator, bos_token=bos_token)


def check(config: Any) -> None:
  check_data(config.data)


registry.DATA_SOURCES.register("text", registry.DataSource(
    prepare=prepare_source, check_data=check_data, check=check))
