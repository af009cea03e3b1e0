"""Raw corpora for `python -m jaxgpt.data.prepare`: documents streamed, in a fixed order, from
files or a Hugging Face dataset, never a whole file in memory.

A corpus is a sequence of *records*, numbered from 0 over the whole corpus; `records(source,
skip=n)` starts after the first n (a resumed preparation). A record is a document (a str; ""
for an empty or null text, which the command skips) or a `BadRecord` (a line that is not
JSON, or whose text field is missing or not a string, passed on only with `skip_bad`).

Sources (`Source`):
- files matching a glob (sorted, `**` recursive); the format from the name, or `fmt`:
  - `parquet` (`*.parquet`): the column `text_field`, read batch by batch (pyarrow
    `ParquetFile.iter_batches` on that column only); every file's schema is checked before
    anything is read (`check_parquet`); a record is a row;
  - `jsonl` (`*.jsonl`, `*.ndjson`, plain or `.gz` / `.zst`): one JSON object per line, its
    field `text_field`; a record is a line (a blank line is an empty record);
  - `text` (anything else, plain or `.gz` / `.zst`): one UTF-8 document per file;
- a Hugging Face dataset, streamed: `datasets.load_dataset(name, config, split=split,
  streaming=True, data_files=...)`, the column `text_field` of each row (e.g.
  HuggingFaceFW/fineweb-edu, config sample-10BT, column "text"); a record is a row.

Errors are one line (`CorpusError`, a ValueError) naming the file and line or row, and the
flag (`--input`, `--text_field`, `--hf_dataset`) that chose it.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import gzip
import io
import json
import os
from typing import Any, Iterator

FORMATS = ("auto", "parquet", "jsonl", "text")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
COMPRESSED = (".gz", ".zst")
PARQUET_BATCH_ROWS = 1024  # rows per pyarrow batch: a batch of FineWeb text is a few MB


class CorpusError(ValueError):
  """Bad input: a missing column or field, a line that is not JSON, no files, not UTF-8."""


@dataclasses.dataclass(frozen=True)
class BadRecord:
  """A record that is not a document (`skip_bad` passes it on instead of raising)."""
  where: str  # "path:line"
  reason: str


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the documents come from: `files` (with their format), or a Hugging Face dataset."""
  text_field: str = "text"
  files: tuple[str, ...] = ()
  fmt: str = "auto"
  hf_dataset: str | None = None
  hf_config: str | None = None
  hf_split: str = "train"
  hf_data_files: tuple[str, ...] = ()
  skip_bad: bool = False


def _import(name: str):
  """An optional dependency (the `corpora` extra), or a one-line error naming the install."""
  try:
    return __import__(name, fromlist=["_"])
  except ImportError:
    raise CorpusError(f"reading this corpus needs {name.split('.')[0]}: pip install "
                      "'jaxgpt[corpora]'") from None


def input_files(patterns: list[str] | tuple[str, ...]) -> tuple[str, ...]:
  """The sorted files matching the `--input` globs (`**` recursive), each once; a glob that
  matches no file is an error naming it."""
  found: list[str] = []
  for pattern in patterns:
    expanded = os.path.expanduser(pattern)
    paths = sorted(p for p in globlib.glob(expanded, recursive=True) if os.path.isfile(p))
    if not paths:
      hint = f" (a folder: use '{pattern.rstrip('/')}/*')" if os.path.isdir(expanded) else ""
      raise CorpusError(f"--input={pattern!r} matches no files{hint}")
    found += [p for p in paths if p not in found]
  return tuple(found)


def file_format(path: str, fmt: str = "auto") -> str:
  """`fmt`, or with "auto" the format the file's name says: parquet, jsonl, else text."""
  if fmt != "auto":
    return fmt
  name = path.lower()
  for suffix in COMPRESSED:
    name = name.removesuffix(suffix)
  if name.endswith(".parquet"):
    return "parquet"
  return "jsonl" if name.endswith(JSONL_SUFFIXES) else "text"


def open_binary(path: str):
  """A binary stream of the file, decompressed for `.gz` (gzip) and `.zst` (zstandard)."""
  if path.endswith(".gz"):
    return gzip.open(path, "rb")
  if path.endswith(".zst"):
    zstandard = _import("zstandard")
    raw = open(path, "rb")
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
  return open(path, "rb")


def check_parquet(path: str, field: str) -> int:
  """The row count of a parquet file whose column `field` holds strings; else an error."""
  pq = _import("pyarrow.parquet")
  pa = _import("pyarrow")
  try:
    meta = pq.ParquetFile(path).metadata
    schema = pq.read_schema(path)
  except (OSError, pa.ArrowException) as e:
    raise CorpusError(f"{path}: not a readable parquet file ({_line(e)})") from None
  if field not in schema.names:
    raise CorpusError(f"{path}: no column {field!r} (--text_field; its columns: "
                      f"{', '.join(schema.names)})")
  kind = schema.field(field).type
  if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
          or str(kind) == "string_view"):
    raise CorpusError(f"{path}: column {field!r} (--text_field) holds {kind}, not strings")
  return meta.num_rows


def _line(e: BaseException) -> str:
  """The first line of an exception's message (its type when it has none)."""
  text = str(e).strip()
  return text.splitlines()[0] if text else type(e).__name__


def read_parquet(path: str, field: str, skip: int = 0) -> Iterator[str]:
  """The column `field` of each row after the first `skip`, batch by batch."""
  pq = _import("pyarrow.parquet")
  with pq.ParquetFile(path) as f:
    for batch in f.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[field]):
      if skip >= batch.num_rows:
        skip -= batch.num_rows
        continue
      for text in batch.column(0).to_pylist()[skip:]:
        yield text or ""
      skip = 0


def json_text(line: bytes, field: str, where: str) -> str | BadRecord:
  """The text of one jsonl line (a blank line: ""), or a BadRecord saying what is wrong."""
  if not line.strip():
    return ""
  try:
    obj = json.loads(line)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    return BadRecord(where, f"not JSON ({getattr(e, 'msg', None) or _line(e)})")
  if not isinstance(obj, dict) or field not in obj:
    keys = ", ".join(list(obj)[:10]) if isinstance(obj, dict) else type(obj).__name__
    return BadRecord(where, f"no field {field!r} (--text_field; it has: {keys})")
  text = obj[field]
  if text is not None and not isinstance(text, str):
    return BadRecord(where, f"field {field!r} (--text_field) is {type(text).__name__}, not a "
                     "string")
  return text or ""


def read_jsonl(path: str, field: str, skip: int = 0, skip_bad: bool = False
               ) -> Iterator[str | BadRecord]:
  """The text of each line after the first `skip`; a bad line is an error naming the file
  and line, or with `skip_bad` a BadRecord."""
  with open_binary(path) as f:
    for number, line in enumerate(f, 1):
      if number <= skip:
        continue
      text = json_text(line, field, f"{path}:{number}")
      if isinstance(text, BadRecord) and not skip_bad:
        raise CorpusError(f"{text.where}: {text.reason} (--skip_bad_lines goes on without it)")
      yield text


def read_text_file(path: str) -> str:
  """A whole text file as one document (strict UTF-8)."""
  with open_binary(path) as f:
    raw = f.read()
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise CorpusError(f"{path}: not UTF-8 text ({e}) (--input)") from None


def check_files(source: Source) -> dict[str, int]:
  """{path: rows} of the parquet files (every schema checked before anything is read)."""
  return {p: check_parquet(p, source.text_field) for p in source.files
          if file_format(p, source.fmt) == "parquet"}


def file_records(source: Source, skip: int = 0) -> Iterator[str | BadRecord]:
  """The records of `source.files`, in order, after the first `skip` (parquet and text files
  before that point are skipped unread; jsonl lines are counted)."""
  rows = check_files(source)
  for path in source.files:
    fmt = file_format(path, source.fmt)
    if skip:
      size = rows[path] if fmt == "parquet" else 1 if fmt == "text" else _lines(path)
      if skip >= size:
        skip -= size
        continue
    if fmt == "text":
      yield read_text_file(path)
    elif fmt == "parquet":
      yield from read_parquet(path, source.text_field, skip)
    else:
      yield from read_jsonl(path, source.text_field, skip, source.skip_bad)
    skip = 0


def _lines(path: str) -> int:
  """The number of lines of a jsonl file (what `read_jsonl` counts as records)."""
  with open_binary(path) as f:
    return sum(1 for _ in f)


def open_hf(source: Source):
  """The streamed split of the Hugging Face dataset; its columns are checked when known."""
  datasets = _import("datasets")
  where = f"--hf_dataset={source.hf_dataset!r}" + (
      f" --hf_config={source.hf_config!r}" if source.hf_config else "")
  try:
    ds = datasets.load_dataset(source.hf_dataset, source.hf_config, split=source.hf_split,
                               streaming=True, data_files=list(source.hf_data_files) or None)
  except Exception as e:  # noqa: BLE001 - network, hub, builder errors: one line for any
    raise CorpusError(f"{where}: cannot open split {source.hf_split!r}: "
                      f"{type(e).__name__}: {_line(e)}") from None
  columns = ds.column_names
  if columns is not None and source.text_field not in columns:
    raise CorpusError(f"{where}: no column {source.text_field!r} (--text_field; its columns: "
                      f"{', '.join(columns)})")
  return ds


def hf_records(source: Source, skip: int = 0) -> Iterator[str]:
  """The `text_field` of each row of the streamed dataset, after the first `skip`."""
  ds = open_hf(source)
  if skip:
    ds = ds.skip(skip)
  for number, row in enumerate(ds, skip):
    text = row.get(source.text_field)
    if text is not None and not isinstance(text, str):
      raise CorpusError(f"--hf_dataset={source.hf_dataset!r} row {number}: column "
                        f"{source.text_field!r} (--text_field) holds {type(text).__name__}")
    yield text or ""


def records(source: Source, skip: int = 0) -> Iterator[str | BadRecord]:
  """Every record of the corpus, in order, after the first `skip`."""
  return hf_records(source, skip) if source.hf_dataset else file_records(source, skip)


def describe(source: Source) -> dict[str, Any]:
  """What identifies the corpus (a resumed preparation must read the same one): the files
  with their sizes and modification times, or the dataset, config, split and data files."""
  if source.hf_dataset:
    return {"hf_dataset": source.hf_dataset, "hf_config": source.hf_config,
            "hf_split": source.hf_split, "hf_data_files": list(source.hf_data_files)}
  return {"files": [[p, os.path.getsize(p), os.stat(p).st_mtime_ns] for p in source.files],
          "format": source.fmt}
