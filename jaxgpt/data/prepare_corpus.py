"""`python -m jaxgpt.data.prepare`: a corpus -> token shards a run trains on.

    python -m jaxgpt.data.prepare --hf_dataset HuggingFaceFW/fineweb-edu --hf_config sample-10BT \\
        --tokenizer gpt2/tokenizer.json --val_docs 50000 --output data/fineweb-edu
    python -m jaxgpt.data.prepare --input 'corpus/*.parquet' --text_field text --output DIR
    python -m jaxgpt.data.prepare --input 'dump/**/*.jsonl.zst' --tokenizer bpe --output DIR
    python -m jaxgpt.data.prepare --input 'docs/*.jsonl' --tokenizer spm1024 --output DIR
    python -m jaxgpt.data.prepare --fetch_pg sp1024 --output data/pg  # parameter-golf's shards
    # then: --config.data.name=shards --config.data.prepared_dir=DIR

Input (`corpus.py`): `--input` globs of parquet (the `--text_field` column, batch by batch),
jsonl (plain, .gz, .zst; the `--text_field` of each line) and text files (one document each),
or a Hugging Face dataset streamed through `datasets` (`--hf_dataset`, `--hf_config`,
`--hf_split`, `--hf_data_files`). Every non-empty text is one document.

Documents (`--document_separator`): "bos" (the default) writes the tokenizer's boundary token,
then the document's tokens, as modded-nanogpt and parameter-golf do; "newline" ends each
document with "\\n" and has no boundary token. The tokenizer (`--tokenizer`): `byte` (the
boundary is id 256: vocabulary 257), `bpe` (a byte-level BPE of `--bpe_vocab_size` ids trained
on the first `--bpe_train_bytes` of the train documents, "<|endoftext|>" reserved as the
boundary), `spm<V>` (a SentencePiece BPE of V ids with parameter-golf's settings, trained on the
same documents, `spm.py`; its boundary is its BOS, id 1), a SentencePiece `.model` or a
tokenizer.json (its special token `--bos_token`, else the first of
`tokenizer.BOS_TOKENS` it has; none is an error). The boundary token stands for no bytes.

Validation split: whole documents, chosen by a hash of their text: a document whose sha256
(its first 8 bytes as a fraction of 2^64) is below `--val_fraction` is a candidate; with
`--val_docs N` only the first N candidates in corpus order go to val, the rest to train. The
choice depends on the texts and their order only, so a streamed corpus splits the same way
every time (equal texts share a split).

Output (`--output DIR`): `train_<k>.bin` / `val_<k>.bin` shards of `--shard_tokens` tokens
(the last one smaller; the `shards.py` format: uint16, or uint32 above 65,536 ids, `--dtype`
to force one), `tokenizer.json` (not for byte), and `meta.json`, written last: per split the
documents, tokens, exact UTF-8 bytes and the bytes the tokens stand for, the tokenizer, vocab
size, bos id and token, `lossy` (why the tokenizer's tokens do not stand for the text, or
null), the records read, bad lines skipped, and the key of everything the output depends on.
`data.prepared_dir=DIR` (with `data.name=shards`) trains on it: `shards.prepared_spec`.

Work: this process reads; `--workers` processes (spawned; TOKENIZERS_PARALLELISM=false)
tokenize batches of documents; results are written in corpus order, so the output does not
depend on the number of workers. A tqdm bar shows documents/s and tokens/s.

Resuming (`writer.py`): `progress.json` is saved every few seconds and soon after a shard
finishes. A killed run, started again with the same arguments, goes on from it: finished
shards are kept, the one being filled is redone from its checkpoint, no document is lost or
written twice. A folder with `meta.json` is finished: running again prints its summary.

Errors: one line `error: ...` naming the file, line or flag, exit code 2, and no meta.json:
a parquet file without the column, a jsonl line that is not JSON (`--skip_bad_lines` skips
and counts them), an empty corpus or split, a vocabulary that does not fit `--dtype`, a folder
that holds another preparation (`--restart` discards an unfinished one). This module is the
command's code; `prepare.py` runs it (this package never imports `jaxgpt.cli`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, NoReturn

import numpy as np
from tqdm import tqdm

from jaxgpt import checks, files
from jaxgpt.data import corpus, documents, pgolf, shards, spm, writer
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.errors import ConfigError

try:
  import fcntl
except ImportError:  # Windows: no advisory lock; one run per folder is then up to the user.
  fcntl = None

SPLITS = ("train", "val")
META, PROGRESS, TOKENIZER, LOCK = "meta.json", "progress.json", "tokenizer.json", ".lock"
DTYPES = {"auto": None, "uint16": shards.VERSION, "uint32": shards.VERSION_UINT32}
BATCH_DOCS = 256  # documents per worker task
BATCH_CHARS = 1 << 22  # or fewer, when they are long
COMMIT_SECONDS = 5.0  # progress.json at least this often,
SHARD_COMMIT_SECONDS = 0.5  # and after a shard finishes, unless the last one is this recent
SHOWN_BAD = 5  # bad lines named in the log and meta.json


# ------------------------------------------------------------------------------------------
# Flags.

class _Parser(argparse.ArgumentParser):
  """argparse whose errors are one line `error: ...` and exit code 2."""

  def error(self, message: str) -> NoReturn:
    fail(message)


def fail(message: str, code: int = 2) -> NoReturn:
  """Prints `error: message` on stderr and exits with `code`."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def parser() -> argparse.ArgumentParser:
  """The command's flags (`--help` prints this module's docstring)."""
  p = _Parser(prog="python -m jaxgpt.data.prepare", description=__doc__,
              formatter_class=argparse.RawDescriptionHelpFormatter)
  add = p.add_argument
  add("--input", action="append", default=[], help="glob of parquet, jsonl(.gz/.zst) or text "
      "files (repeatable; sorted, ** recursive)")
  add("--format", choices=corpus.FORMATS, default="auto", help="the files' format (auto: by "
      "name)")
  add("--hf_dataset", help="a Hugging Face dataset, streamed (e.g. HuggingFaceFW/fineweb-edu)")
  add("--hf_config", help="its config (e.g. sample-10BT)")
  add("--hf_split", default="train", help="its split")
  add("--hf_data_files", action="append", default=[], help="its data files (repeatable)")
  add("--text_field", default="text", help="the column or JSON field holding the text")
  add("--skip_bad_lines", action="store_true", help="skip (and count) bad jsonl lines")
  add("--output", required=True, help="the folder to write")
  add("--tokenizer", default="byte", help="byte, bpe, or the path of a tokenizer.json")
  add("--bpe_vocab_size", type=int, default=1024, help="bpe: vocabulary size")
  add("--bpe_train_bytes", type=int, default=1 << 30, help="bpe: train on this many bytes of "
      "the train documents")
  add("--bos_token", help="a tokenizer.json: its special token that starts each document")
  add("--document_separator", choices=documents.SEPARATORS, default="bos")
  add("--val_fraction", type=float, default=0.01, help="documents whose hash is below it are "
      "validation candidates")
  add("--val_docs", type=int, help="at most this many validation documents (the first "
      "candidates in corpus order)")
  add("--shard_tokens", type=int, default=10**8, help="tokens per shard")
  add("--dtype", choices=list(DTYPES), default="auto", help="shard token type")
  add("--workers", type=int, default=os.cpu_count() or 1, help="tokenizer processes")
  add("--restart", action="store_true", help="discard an unfinished preparation of other "
      "inputs or settings in --output")
  add("--fetch_pg", metavar="VARIANT", help="instead: fetch parameter-golf's published FineWeb "
      "shards of this variant (e.g. sp1024) into --output (pgolf.py)")
  add("--train_shards", type=int, default=pgolf.DEFAULT_TRAIN_SHARDS, help="--fetch_pg: the "
      "first this many train shards (100M tokens each)")
  add("--pg_repo", default=pgolf.REPO_ID, help="--fetch_pg: the Hugging Face dataset repo")
  add("--pg_root", default=pgolf.REMOTE_ROOT, help="--fetch_pg: the export's folder in it")
  return p


def check_args(args: argparse.Namespace) -> None:
  """One-line errors naming the flag."""
  if bool(args.input) == bool(args.hf_dataset):
    raise ConfigError("give --input GLOB (files) or --hf_dataset NAME, one of them")
  if args.hf_dataset is None and (args.hf_config or args.hf_data_files):
    raise ConfigError("--hf_config and --hf_data_files go with --hf_dataset")
  checks.number("--val_fraction", args.val_fraction, 0, 1, low_open=True)
  checks.integer("--val_docs", args.val_docs, 1, allow_none=True)
  checks.integer("--shard_tokens", args.shard_tokens, 1)
  checks.integer("--workers", args.workers, 1)
  checks.integer("--bpe_train_bytes", args.bpe_train_bytes, 1)
  if args.tokenizer == "bpe":
    checks.integer("--bpe_vocab_size", args.bpe_vocab_size, tokenizer_lib.MIN_BPE_VOCAB,
                   tokenizer_lib.MAX_BPE_VOCAB)
  elif trains_spm(args):
    spm.check_name("--tokenizer", args.tokenizer)
  elif args.tokenizer != "byte" and not os.path.isfile(os.path.expanduser(args.tokenizer)):
    raise ConfigError(f"--tokenizer={args.tokenizer!r} must be byte, bpe, spm<V> or the path "
                      "of a tokenizer.json or SentencePiece .model (no such file)")
  if args.bos_token is not None and (args.tokenizer in tokenizer_lib.NAMES
                                     or args.document_separator != "bos"):
    raise ConfigError(f"--bos_token={args.bos_token!r} names a special token of a "
                      "tokenizer.json, with --document_separator bos")


def make_source(args: argparse.Namespace) -> corpus.Source:
  """The corpus the flags name (the `--input` globs expanded)."""
  files_ = corpus.input_files(args.input) if args.input else ()
  return corpus.Source(text_field=args.text_field, files=files_, fmt=args.format,
                       hf_dataset=args.hf_dataset, hf_config=args.hf_config,
                       hf_split=args.hf_split, hf_data_files=tuple(args.hf_data_files),
                       skip_bad=args.skip_bad_lines)


def make_key(args: argparse.Namespace, source: corpus.Source) -> dict:
  """Everything the output depends on. Not --workers (the output does not), nor
  --skip_bad_lines: a run that stopped at a bad line resumes with it as a fresh run would."""
  tok = os.path.expanduser(args.tokenizer)
  key = {"prepared": shards.PREPARED_FORMAT, "corpus": corpus.describe(source),
         "text_field": args.text_field,
         **documents.tokenizer_key(tok, args.bpe_vocab_size),
         "document_separator": args.document_separator, "bos_token": args.bos_token,
         "val_fraction": args.val_fraction, "val_docs": args.val_docs,
         "shard_tokens": args.shard_tokens, "dtype": args.dtype}
  if tok == "bpe" or trains_spm(args):
    key["bpe_train_bytes"] = args.bpe_train_bytes
  return key


def differences(old: dict, new: dict, shown: int = 3) -> str:
  """The keys whose values differ, as `key: old -> new` (for the error message)."""
  diff = [f"{k}: {str(old.get(k))[:60]} -> {str(new.get(k))[:60]}"
          for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
  return "; ".join(diff[:shown]) + ("; ..." if len(diff) > shown else "")


# ------------------------------------------------------------------------------------------
# The split and the documents.

def doc_hash(text: str) -> float:
  """The first 8 bytes of the sha256 of the UTF-8 text, as a fraction of 2^64."""
  return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0**64


@dataclasses.dataclass
class Splitter:
  """Assigns documents, in corpus order, to train or val (see the module docstring)."""
  fraction: float
  cap: int | None
  taken: int = 0

  def split(self, h: float) -> str:
    """"val" or "train" for the next document, whose hash is `h`."""
    if h < self.fraction and (self.cap is None or self.taken < self.cap):
      self.taken += 1
      return "val"
    return "train"


@dataclasses.dataclass
class Batch:
  """A run of records: the documents to tokenize, and what else was read."""
  end: int  # the position after its last record
  texts: list[str]
  empty: int = 0
  bad: list[corpus.BadRecord] = dataclasses.field(default_factory=list)


def batches(records: Iterable[Any], start: int) -> Iterator[Batch]:
  """The records from position `start` on, grouped into batches for the workers."""
  batch, chars, pos = Batch(start, []), 0, start
  for record in records:
    pos += 1
    if isinstance(record, corpus.BadRecord):
      batch.bad.append(record)
    elif record:
      batch.texts.append(record)
      chars += len(record)
    else:
      batch.empty += 1
    batch.end = pos
    if len(batch.texts) >= BATCH_DOCS or chars >= BATCH_CHARS:
      yield batch
      batch, chars = Batch(pos, []), 0
  if batch.texts or batch.empty or batch.bad:
    yield batch


# ------------------------------------------------------------------------------------------
# The tokenizer, here and in the workers.

def shard_version(vocab_size: int, dtype: str, what: str) -> int:
  """The shard version for `--dtype`; a vocabulary that does not fit it is an error."""
  if DTYPES[dtype] is None:
    return shards.shard_version(vocab_size)
  if vocab_size > shards.MAX_VOCABS[DTYPES[dtype]]:
    raise ConfigError(f"--dtype={dtype}: {what} has {vocab_size:,} ids, but {dtype} shards "
                      f"hold ids below {shards.MAX_VOCABS[DTYPES[dtype]]:,} (use --dtype "
                      "uint32, or auto)")
  return DTYPES[dtype]


def load_file_tokenizer(args: argparse.Namespace):
  """The tokenizer.json of `--tokenizer`, with its boundary token for "bos"."""
  try:
    tok = tokenizer_lib.load_tokenizer(os.path.expanduser(args.tokenizer))
    if args.document_separator == "bos":
      tok = tok.with_boundary(args.bos_token)
  except ValueError as e:
    raise ConfigError(f"--tokenizer={args.tokenizer!r}: {e}") from None
  return tok


def trains_spm(args: argparse.Namespace) -> bool:
  """Whether `--tokenizer` is "spm<V>" (a SentencePiece BPE trained here), not a file."""
  return (args.tokenizer.startswith("spm")
          and not tokenizer_lib.is_tokenizer_file(args.tokenizer))


def train_tokenizer(args: argparse.Namespace, source: corpus.Source):
  """A BPE (byte-level, or SentencePiece for "spm<V>") trained on the first
  `--bpe_train_bytes` of the train documents."""
  splitter = Splitter(args.val_fraction, args.val_docs)

  def train_texts() -> Iterator[str]:
    seen = 0
    for record in corpus.records(source):
      if isinstance(record, str) and record and splitter.split(doc_hash(record)) == "train":
        text = documents.layout(record, args.document_separator)
        yield text
        seen += len(text.encode("utf-8"))
        if seen >= args.bpe_train_bytes:
          return

  boundary = args.document_separator == "bos"
  vocab = spm.vocab_of(args.tokenizer) if trains_spm(args) else args.bpe_vocab_size
  print(f"training a {vocab}-id {'SentencePiece ' if trains_spm(args) else ''}BPE on up to "
        f"{args.bpe_train_bytes:,} bytes of the train documents ...", file=sys.stderr,
        flush=True)
  if trains_spm(args):
    return spm.train_spm(train_texts(), vocab, boundary=boundary)
  return tokenizer_lib.train_bpe(train_texts(), vocab, boundary=boundary)


def worker_spec(args: argparse.Namespace, out: Path, tok, version: int) -> dict:
  """What a worker needs to rebuild the tokenizer (it reads tokenizer.json from `out`)."""
  saved = tokenizer_lib.saved_file(tok.name)
  return {"byte": args.tokenizer == "byte", "path": str(out / saved) if saved else None,
          "boundary": tok.bos_id is not None, "bos_token": getattr(tok, "bos_token", None),
          "separator": args.document_separator, "version": version}


def spec_tokenizer(spec: dict):
  """The tokenizer `worker_spec` describes."""
  if spec["byte"]:
    return tokenizer_lib.ByteTokenizer(boundary=spec["boundary"])
  tok = tokenizer_lib.load_tokenizer(spec["path"])
  return tok.with_boundary(spec["bos_token"]) if spec["boundary"] else tok


_WORKER: dict = {}


def init_worker(spec: dict) -> None:
  """A worker process: no thread pool inside the tokenizer, then the tokenizer."""
  os.environ["TOKENIZERS_PARALLELISM"] = "false"
  _WORKER.update(spec=spec, tok=spec_tokenizer(spec))


def encode_documents(texts: list[str]) -> list[tuple[np.ndarray, int, int, float]]:
  """Per document: (ids as the shard dtype, UTF-8 bytes, bytes its tokens stand for, hash)."""
  spec, tok = _WORKER["spec"], _WORKER["tok"]
  laid = [documents.layout(t, spec["separator"]) for t in texts]
  dtype = shards.DTYPES[spec["version"]]
  return [(ids.astype(dtype), len(text.encode("utf-8")), int(tok.token_bytes[ids].sum()),
           doc_hash(raw)) for raw, text, ids in zip(texts, laid, tok.encode_batch(laid))]


# ------------------------------------------------------------------------------------------
# Progress and the output folder.

def new_counts() -> dict:
  """Per split: documents, tokens, UTF-8 bytes, bytes the tokens stand for."""
  return {s: {"documents": 0, "tokens": 0, "bytes": 0, "token_bytes": 0} for s in SPLITS}


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
  """One preparation per folder at a time (released when the process dies, even by a kill)."""
  with open(out / LOCK, "a+b") as f:
    if fcntl is not None:
      try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        raise ConfigError(f"--output={str(out)!r}: another preparation is running there") \
            from None
    yield


def discard(out: Path) -> None:
  """Deletes what an unfinished preparation wrote (--restart)."""
  for split in SPLITS:
    writer.clean_after(out, split, 0)
    for path in out.glob(f".{split}_*.part"):
      path.unlink()
  for name in (PROGRESS, *tokenizer_lib.SAVED_FILES.values()):
    with contextlib.suppress(FileNotFoundError):
      (out / name).unlink()


class Run:
  """The state of one preparation: the writers, counts and position, saved as progress.json."""

  def __init__(self, out: Path, key: dict, version: int, shard_tokens: int, splitter: Splitter,
               progress: dict | None, bos_id: int | None):
    p = progress or {}
    self.out, self.key, self.bos_id = out, key, bos_id
    self.position = p.get("position", 0)
    self.counts = p.get("counts", new_counts())
    self.bad, self.empty = p.get("bad_lines", 0), p.get("empty", 0)
    self.bad_examples = p.get("bad_examples", [])
    self.splitter = splitter
    splitter.taken = p.get("val_taken", 0)
    self.writers = {s: writer.SplitWriter(out, s, version, shard_tokens,
                                          p.get("splits", {}).get(s)) for s in SPLITS}
    self.last_commit = time.monotonic()

  def add(self, batch: Batch, encoded: list) -> int:
    """Writes one batch's documents, in order; returns its tokens."""
    tokens = 0
    for ids, nbytes, tbytes, h in encoded:
      split = self.splitter.split(h)
      ids = documents.prefix_boundary(ids, self.bos_id)
      self.writers[split].append(ids)
      c = self.counts[split]
      c["documents"] += 1
      c["tokens"] += len(ids)
      c["bytes"] += nbytes
      c["token_bytes"] += tbytes
      tokens += len(ids)
    self.empty += batch.empty
    self.bad += len(batch.bad)
    self.bad_examples += [f"{b.where}: {b.reason}" for b in batch.bad][:SHOWN_BAD -
                                                                        len(self.bad_examples)]
    self.position = batch.end
    return tokens

  def maybe_commit(self) -> None:
    """Commits every COMMIT_SECONDS, and soon after a shard finishes (a shard finished after
    the last commit is redone by a resumed run)."""
    since = time.monotonic() - self.last_commit
    finished = any(w.finished_since_commit for w in self.writers.values())
    if since >= COMMIT_SECONDS or (finished and since >= SHARD_COMMIT_SECONDS):
      self.commit()

  def commit(self) -> None:
    """Saves progress.json (after fsyncing the parts), then drops finished parts."""
    state = {"key": self.key, "position": self.position, "counts": self.counts,
             "bad_lines": self.bad, "empty": self.empty, "bad_examples": self.bad_examples,
             "val_taken": self.splitter.taken,
             "splits": {s: w.state() for s, w in self.writers.items()}}
    files.atomic_write_json(self.out / PROGRESS, state)
    for w in self.writers.values():
      w.committed()
    self.last_commit = time.monotonic()

  def abandon(self) -> None:
    """Closes the part files (an error or an interrupt: progress.json stays as committed)."""
    for w in self.writers.values():
      w.abandon()


def tokenize_all(run: Run, source: corpus.Source, spec: dict, workers: int) -> None:
  """Reads the corpus from `run.position`, tokenizes it in `workers` processes and writes it
  in corpus order, committing progress as it goes."""
  docs_before = sum(c["documents"] for c in run.counts.values())
  bar = tqdm(desc="prepare", unit="doc", unit_scale=True, initial=docs_before,
             mininterval=0.5, smoothing=0.05, dynamic_ncols=True)
  start, tokens = time.monotonic(), 0
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(workers, initializer=init_worker, initargs=(spec,)) as pool, bar:
    pending: collections.deque = collections.deque()

    def drain_one() -> None:
      nonlocal tokens
      batch, result = pending.popleft()
      tokens += run.add(batch, result.get())
      bar.update(len(batch.texts))
      rate = tokens / max(time.monotonic() - start, 1e-9)
      bar.set_postfix_str(f"{rate:,.0f} tok/s", refresh=False)
      run.maybe_commit()

    for batch in batches(corpus.records(source, run.position), run.position):
      pending.append((batch, pool.apply_async(encode_documents, (batch.texts,))))
      while len(pending) > 2 * workers:
        drain_one()
    while pending:
      drain_one()


def check_counts(counts: dict, run: Run, args: argparse.Namespace, where: str) -> None:
  """An empty corpus or an empty split is an error."""
  if not any(c["documents"] for c in counts.values()):
    raise corpus.CorpusError(f"{where}: empty corpus: no documents in {run.position:,} "
                             f"records ({run.empty:,} empty, {run.bad:,} bad; --text_field="
                             f"{args.text_field!r})")
  for split, flag in (("val", "raise --val_fraction"), ("train", "lower --val_fraction or "
                                                        "set --val_docs")):
    if not counts[split]["documents"]:
      raise corpus.CorpusError(f"{where}: no {split} documents among the "
                               f"{sum(c['documents'] for c in counts.values()):,} ({flag})")


def describe_input(args: argparse.Namespace) -> str:
  """The flag that names the corpus, for messages."""
  return (f"--hf_dataset={args.hf_dataset!r}" if args.hf_dataset
          else f"--input={','.join(args.input)!r}")


def finish(run: Run, args: argparse.Namespace, tok, version: int,
           records: Iterable[Any]) -> dict:
  """Closes the shards and writes meta.json (last); returns it. An empty corpus or split is
  an error that discards the work (the same run would end the same way)."""
  try:
    check_counts(run.counts, run, args, describe_input(args))
  except corpus.CorpusError:
    run.abandon()
    discard(run.out)
    raise
  run.commit()
  names = {s: w.close() for s, w in run.writers.items()}
  splits = {s: {"files": names[s], **run.counts[s]} for s in SPLITS}
  sample = documents.sample_text(lambda: (r for r in records if isinstance(r, str)),
                                 separator=args.document_separator)
  meta = {"prepared": shards.PREPARED_FORMAT, "key": run.key,
          "tokenizer": tok.name,
          "tokenizer_kind": tok.kind, "tokenizer_source": args.tokenizer,
          "vocab_size": tok.vocab_size, "shard_version": version,
          "document_separator": args.document_separator, "bos_id": tok.bos_id,
          "bos_token": getattr(tok, "bos_token", None), "splits": splits,
          "lossy": documents.lossy_reason(tok, sample, splits),
          "records": run.position, "empty_documents": run.empty, "bad_lines": run.bad,
          "bad_line_examples": run.bad_examples, "skip_bad_lines": args.skip_bad_lines,
          "val_fraction": args.val_fraction,
          "val_docs": args.val_docs, "val_hash": "sha256 of the UTF-8 text, first 8 bytes"}
  files.atomic_write_json(run.out / META, meta)
  (run.out / PROGRESS).unlink()
  for w in run.writers.values():
    w.remove_parts()
  return meta


def summary(out: Path, meta: dict) -> str:
  """What was written, and how to train on it."""
  lines = [f"{out}: {meta['tokenizer_source']} tokenizer, vocabulary {meta['vocab_size']:,}, "
           f"bos id {meta['bos_id']}, {meta['records']:,} records"
           + (f", {meta['bad_lines']:,} bad lines skipped" if meta["bad_lines"] else "")]
  lines.append(f"{'split':<6} {'documents':>11} {'tokens':>15} {'bytes':>15} "
               f"{'bytes/tok':>9} {'shards':>6}")
  for split, m in meta["splits"].items():
    lines.append(f"{split:<6} {m['documents']:>11,} {m['tokens']:>15,} {m['bytes']:>15,} "
                 f"{m['bytes'] / max(m['tokens'], 1):>9.3f} {len(m['files']):>6}")
  if meta["lossy"]:
    lines.append(f"lossy tokenizer: {meta['lossy']}")
  lines.append(f"train with --config.data.name=shards --config.data.prepared_dir={out}")
  return "\n".join(lines)


def check_input(args: argparse.Namespace, source: corpus.Source) -> None:
  """Errors found before anything is written: a parquet file without the column, a dataset
  without it, a tokenizer without a boundary token, a vocabulary that does not fit --dtype."""
  if source.files:
    corpus.check_files(source)
  else:
    corpus.open_hf(source)
  if args.tokenizer == "byte":
    vocab_size = tokenizer_lib.ByteTokenizer(boundary=args.document_separator == "bos").vocab_size
  elif args.tokenizer == "bpe":
    vocab_size = args.bpe_vocab_size
  elif trains_spm(args):
    vocab_size = spm.vocab_of(args.tokenizer)
  else:
    vocab_size = load_file_tokenizer(args).vocab_size
  shard_version(vocab_size, args.dtype, f"--tokenizer={args.tokenizer}")


def prepare(args: argparse.Namespace) -> dict:
  """Runs (or resumes, or finds finished) the preparation `args` describes; returns meta."""
  check_args(args)
  source = make_source(args)
  key = make_key(args, source)
  check_input(args, source)
  out = Path(args.output).expanduser()
  out.mkdir(parents=True, exist_ok=True)
  with exclusive(out):
    meta = files.read_json(out / META, None)
    if meta is not None:
      if meta.get("key") != key:
        raise ConfigError(f"{out / META}: the folder holds a finished preparation of other "
                          f"inputs or settings ({differences(meta.get('key') or {}, key)}); "
                          "choose another --output")
      discard_leftovers(out)
      return meta
    progress = files.read_json(out / PROGRESS, None)
    if progress is not None and progress.get("key") != key:
      if not args.restart:
        raise ConfigError(f"{out / PROGRESS}: the folder holds an unfinished preparation of "
                          f"other inputs or settings ({differences(progress['key'], key)}); "
                          "--restart discards it")
      discard(out)
      progress = None
    return _prepare(args, source, key, out, progress)


def discard_leftovers(out: Path) -> None:
  """A finished folder: what a run killed after writing meta.json left (progress, parts)."""
  with contextlib.suppress(FileNotFoundError):
    (out / PROGRESS).unlink()
  for split in SPLITS:
    for path in out.glob(f".{split}_*.part"):
      path.unlink()


def make_tokenizer(args: argparse.Namespace, source: corpus.Source, out: Path,
                   resumed: bool):
  """The tokenizer, with its boundary token for "bos": byte; a tokenizer.json; a BPE trained
  on the train documents, or when `resumed` the one an earlier run saved in `out`."""
  boundary = args.document_separator == "bos"
  if args.tokenizer == "byte":
    return tokenizer_lib.ByteTokenizer(boundary=boundary)
  if args.tokenizer != "bpe" and not trains_spm(args):
    return load_file_tokenizer(args)
  if not resumed:
    return train_tokenizer(args, source)
  if trains_spm(args):
    return tokenizer_lib.load_saved(out, tokenizer_lib.SentencePieceTokenizer.name, boundary)
  tok = tokenizer_lib.HFTokenizer.from_file(out / TOKENIZER)
  return tok.with_boundary(tokenizer_lib.BOS_TOKEN) if boundary else tok


def _prepare(args: argparse.Namespace, source: corpus.Source, key: dict, out: Path,
             progress: dict | None) -> dict:
  """Makes the tokenizer (and saves it), then tokenizes and writes, from `progress` if any."""
  tok = make_tokenizer(args, source, out, resumed=progress is not None)
  version = shard_version(tok.vocab_size, args.dtype, f"--tokenizer={args.tokenizer}")
  if args.tokenizer != "byte" and progress is None:
    tok.save(out / tokenizer_lib.saved_file(tok.name))
  run = Run(out, key, version, args.shard_tokens, Splitter(args.val_fraction, args.val_docs),
            progress, tok.bos_id)
  try:
    if progress is None:
      run.commit()
    tokenize_all(run, source, worker_spec(args, out, tok, version), args.workers)
    return finish(run, args, tok, version, corpus.records(source))
  finally:
    run.abandon()


def fetch_pg(args: argparse.Namespace) -> int:
  """--fetch_pg: parameter-golf's shards of a variant (`pgolf.fetch`); errors as `main`."""
  try:
    if args.input or args.hf_dataset:
      raise ConfigError("--fetch_pg fetches a published corpus: give no --input or --hf_dataset")
    checks.integer("--train_shards", args.train_shards, 0)
    result = pgolf.fetch(args.fetch_pg, args.output, args.train_shards, args.pg_repo,
                         args.pg_root)
  except ValueError as e:  # ConfigError, ShardError
    fail(str(e))
  print(pgolf.summary(result))
  return 0


def main(argv: list[str] | None = None) -> int:
  """The command: `error: ...` and exit code 2 for bad flags or input."""
  args = parser().parse_args(argv)
  if args.fetch_pg is not None:
    return fetch_pg(args)
  try:
    meta = prepare(args)
  except ValueError as e:  # ConfigError, CorpusError, ShardError, a tokenizer's ValueError
    fail(str(e))
  except KeyboardInterrupt:
    print("interrupted: run the same command again to resume", file=sys.stderr)
    return 130
  print(summary(Path(args.output).expanduser(), meta))
  return 0
