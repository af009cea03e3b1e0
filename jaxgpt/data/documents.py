"""Documents -> cached token shards: the shared back end of the `text` and `tfds` sources.

A source hands over, per split, a function that yields the split's documents (strings) in a
fixed order, plus a `key` (JSON) that identifies everything they depend on. `prepare` then

1. picks the tokenizer: `byte`, a byte-level BPE of `data.bpe_vocab_size` ids trained on the
   *train* documents only, or a `tokenizer.json` path (byte-level, metaspace or WordPiece;
   copied into the cache as jaxgpt encodes with it, see `tokenizer.py`);
2. encodes every document on its own and concatenates the ids, the documents separated as
   `data.document_separator` says (`layout`; empty documents are skipped):
   - "newline" (the default): `document_text(doc)`, the text plus "\\n" when it does not
     already end with one;
   - "bos": the boundary token, then the text as it is (`[bos] + encode(doc)`, the layout of
     modded-nanogpt and parameter-golf); the token is the tokenizer's own
     (`tokenizer.boundary_tokenizer`: byte 256, "<|endoftext|>" in a BPE trained here, a
     tokenizer.json's special token, `data.bos_token` naming it) and stands for no bytes;
3. writes `<split>_<k>.bin` token shards (the `shards.py` format: uint16, or uint32 for a
   vocabulary above 65,536 ids) and `meta.json` (tokens, exact UTF-8 bytes, the bytes the
   tokens stand for and documents per split, the key, and `lossy`: why the tokenizer does not
   stand for the raw text, or null; with "bos" also `document_separator`, `bos_id` and
   `bos_token`), `meta.json` last. A lossy tokenizer is logged as a warning whenever the data
   is prepared or reused: val_bpb then divides by the split's raw bytes (`meta.json`),
   `val_bpb_tokens` by the bytes its tokens stand for.

Everything lives in `root` = `<cache>/<source>/<hash of the key>`, so a changed input or
setting is a new folder and a finished folder is reused as is ("newline" adds nothing to the
key, so caches made before the separator existed are still found). The work runs under a file
lock and every file is written atomically (`jaxgpt.files`), so several processes may prepare
at once. The result is an ordinary `DataSpec` (`spec.bos_id`: the boundary token or None):
training windows, their order as a function of (seed, step), and evaluation come from
`pipeline.py` as for every other source.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from jaxgpt import checks, files
from jaxgpt.data import shards, spm
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.data.spec import DataSpec, get, spec_from_meta
from jaxgpt.errors import ConfigError

FORMAT = 1  # bump when the document layout or the meta format changes: caches then rebuild
MAX_SHARD_TOKENS = 1 << 24  # 32 MB per shard
ENCODE_BATCH = 1024  # documents per tokenizer call
SAMPLE_CHARS = 1 << 16  # the start of the train split on which decode(encode(text)) is checked

SEPARATORS = ("newline", "bos")  # data.document_separator

Documents = Callable[[], Iterable[str]]  # called once per pass; yields the split in order


def document_text(doc: str) -> str:
  """The text a document contributes: itself, ending in exactly one added "\\n" if it had none."""
  return doc if doc.endswith("\n") else doc + "\n"


def check_boundary(cfg: Any) -> str:
  """Checks `data.document_separator` and `data.bos_token` (a tokenizer.json's special token,
  with "bos" only); returns the separator."""
  separator = checks.one_of("data.document_separator",
                            get(cfg, "document_separator", "newline"), SEPARATORS)
  bos_token = get(cfg, "bos_token")
  if bos_token is None:
    return separator
  if not (isinstance(bos_token, str) and bos_token):
    raise ConfigError(f"data.bos_token={bos_token!r} must be a non-empty string (a special "
                      "token of the tokenizer.json) or unset")
  if separator != "bos":
    raise ConfigError(f"data.bos_token={bos_token!r} is only used with "
                      f"data.document_separator='bos' (it is {separator!r})")
  tok = get(cfg, "tokenizer", "byte")
  if tok in tokenizer_lib.NAMES:
    raise ConfigError(f"data.bos_token={bos_token!r} names a token of a tokenizer.json; "
                      f"data.tokenizer={tok!r} has its own boundary token")
  return separator


def separator_key(separator: str, bos_token: str | None) -> dict:
  """What the document separator contributes to a cache key ("newline": nothing)."""
  return {} if separator == "newline" else {"document_separator": separator,
                                            "bos_token": bos_token}


def layout(text: str, separator: str) -> str:
  """The text a document is encoded as: `document_text` for "newline", itself for "bos"."""
  return document_text(text) if separator == "newline" else text


def prefix_boundary(ids: np.ndarray, bos_id: int | None) -> np.ndarray:
  """`[bos_id] + ids` (as `ids`' dtype), or `ids` when there is no boundary token."""
  if bos_id is None:
    return ids
  return np.concatenate([np.asarray([bos_id], dtype=ids.dtype), ids])


def boundary_meta(tok) -> dict:
  """The meta.json entries of a tokenizer's boundary token ({} without one)."""
  if getattr(tok, "bos_id", None) is None:
    return {}
  return {"document_separator": "bos", "bos_id": int(tok.bos_id),
          "bos_token": getattr(tok, "bos_token", None)}


def key_hash(key: Mapping) -> str:
  """16 hex digits of the sha256 of the key's canonical JSON."""
  blob = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def tokenizer_key(name: str, bpe_vocab_size: int) -> dict:
  """What the tokenizer setting contributes to a cache key."""
  if name == "byte":
    return {"tokenizer": "byte"}
  if name == "bpe":
    return {"tokenizer": "bpe", "bpe_vocab_size": int(bpe_vocab_size)}
  if spm.vocab_of(name) is not None:  # a SentencePiece BPE trained here ("spm1024")
    return {"tokenizer": name, "spm_settings": spm.SETTINGS}
  return {"tokenizer": "file", "sha256": file_sha256(name)}


def _texts(docs: Documents, separator: str = "newline") -> Iterator[str]:
  for doc in docs():
    if doc:
      yield layout(doc, separator)


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
  batch = []
  for t in texts:
    batch.append(t)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def make_tokenizer(name: str, bpe_vocab_size: int, train: Iterable[str], separator: str,
                   bos_token: str | None = None):
  """The tokenizer `name` ("byte"; "bpe" or "spm<V>": trained on the texts `train`; a
  tokenizer.json or SentencePiece .model path), with its boundary token when `separator` is
  "bos"; errors name data.tokenizer."""
  boundary = separator == "bos"
  try:
    if name == "byte":
      return tokenizer_lib.ByteTokenizer(boundary=boundary)
    if name == "bpe":
      return tokenizer_lib.train_bpe(train, bpe_vocab_size, boundary=boundary)
    if spm.vocab_of(name) is not None:
      return spm.train_spm(train, spm.vocab_of(name), boundary=boundary)
    tok = tokenizer_lib.load_tokenizer(name)
    return tok.with_boundary(bos_token) if boundary else tok
  except ValueError as e:
    raise ConfigError(f"data.tokenizer={name!r}: {e}") from None


def _make_tokenizer(root: Path, name: str, bpe_vocab_size: int, train: Documents,
                    separator: str, bos_token: str | None):
  trains = name == "bpe" or spm.vocab_of(name) is not None
  tok = make_tokenizer(name, bpe_vocab_size, _texts(train, separator) if trains else (),
                       separator, bos_token)
  if name != "byte":
    tok.save(root / tokenizer_lib.saved_file(tok.name))
  return tok


def _write_split(root: Path, split: str, docs: Documents, tok, max_shard_tokens: int,
                 separator: str = "newline") -> dict:
  """Encodes one split into shards of at most `max_shard_tokens`; returns its meta entry."""
  names, pending, num_pending = [], [], 0
  counts = {"tokens": 0, "bytes": 0, "token_bytes": 0, "documents": 0}

  def flush(final: bool) -> None:
    nonlocal pending, num_pending
    while num_pending >= max_shard_tokens or (final and (num_pending or not names)):
      ids = np.concatenate(pending) if pending else np.zeros(0, np.int32)
      take = min(len(ids), max_shard_tokens)
      name = f"{split}_{len(names):06d}.bin"
      shards.write_shard(root / name, ids[:take], tok.vocab_size)
      names.append(name)
      pending, num_pending = [ids[take:]], len(ids) - take

  bos_id = tok.bos_id if separator == "bos" else None
  for batch in _batches(_texts(docs, separator), ENCODE_BATCH):
    for text, ids in zip(batch, tok.encode_batch(batch)):
      ids = prefix_boundary(ids, bos_id)
      pending.append(ids)
      num_pending += len(ids)
      counts["tokens"] += len(ids)
      counts["bytes"] += len(text.encode("utf-8"))
      counts["token_bytes"] += int(tok.token_bytes[ids].sum())
      counts["documents"] += 1
    flush(final=False)
  flush(final=True)
  return {"files": names, **counts}


def sample_text(docs: Documents, chars: int = SAMPLE_CHARS, separator: str = "newline") -> str:
  """The first documents of `docs` (as `layout`), about `chars` characters of them."""
  out, size = [], 0
  for text in _texts(docs, separator):
    out.append(text)
    size += len(text)
    if size >= chars:
      break
  return "".join(out)


def lossy_reason(tok, sample: str, splits: Mapping[str, dict]) -> str | None:
  """Why `tok` does not stand for the raw text: on `sample` (`tokenizer.lossy_reason`), else
  where a split's tokens stand for other than its UTF-8 bytes; None when it does."""
  reason = tokenizer_lib.lossy_reason(tok, sample)
  for split, m in splits.items():
    if reason is None and m["token_bytes"] != m["bytes"]:
      reason = (f"the {split} split's tokens stand for {m['token_bytes']:,} bytes of a text of "
                f"{m['bytes']:,} bytes")
  return reason


def read_meta(root: Path) -> dict | None:
  """meta.json of a finished preparation in `root`, or None when absent, stale or incomplete."""
  meta = files.read_json(root / "meta.json", None)
  if meta is None or meta.get("format") != FORMAT:
    return None
  needed = [root / f for s in meta["splits"].values() for f in s["files"]]
  if meta["tokenizer"] != "byte":
    needed.append(root / tokenizer_lib.saved_file(meta["tokenizer"]))
  return meta if all(p.exists() for p in needed) else None


def prepare(root: str | Path, docs: Mapping[str, Documents], *, tokenizer: str,
            bpe_vocab_size: int, key: Mapping, name: str,
            max_shard_tokens: int = MAX_SHARD_TOKENS, separator: str = "newline",
            bos_token: str | None = None) -> DataSpec:
  """The DataSpec of the documents `docs` (split -> documents; needs "train" and "val"),
  tokenized into `root` unless a finished preparation is there already; `separator` and
  `bos_token` as `data.document_separator` / `data.bos_token` (the key must include
  `separator_key(separator, bos_token)`)."""
  root = Path(root)
  root.mkdir(parents=True, exist_ok=True)
  with files.file_lock(root / ".lock"):
    meta = read_meta(root)
    if meta is None:
      for stale in root.glob("*.bin"):
        stale.unlink()
      tok = _make_tokenizer(root, tokenizer, bpe_vocab_size, docs["train"], separator,
                            bos_token)
      splits = {s: _write_split(root, s, d, tok, max_shard_tokens, separator)
                for s, d in docs.items()}
      meta = {"format": FORMAT, "source": name, "key": dict(key),
              "tokenizer": tok.name, "tokenizer_kind": tok.kind,
              "vocab_size": tok.vocab_size, "splits": splits,
              "lossy": lossy_reason(tok, sample_text(docs["train"], separator=separator),
                                    splits), **boundary_meta(tok)}
      files.atomic_write_json(root / "meta.json", meta)
  return spec_from_meta(root, meta, name)
