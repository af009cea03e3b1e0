"""The data cache: where prepared data lives, and how it is written safely.

Prepared data (the Shakespeare corpus, its token shards, trained tokenizers) is cached under
`$JAXGPT_DATA_DIR` (default `~/.cache/jaxgpt`), or under `data.data_dir` when a config sets it.

Two rules make the cache safe when several processes prepare it at once (one per host, or two
test workers on one machine):
- every file is written to a temporary file in the same folder and renamed into place
  (`os.replace` is atomic on POSIX), so a reader never sees half a file;
- whole preparations run under an exclusive `fcntl` lock on a lock file, so the second process
  waits for the first and then finds the work done. Where `fcntl` is missing (Windows) the lock
  is a no-op; the atomic renames of deterministic content keep the cache consistent anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

try:
  import fcntl
except ImportError:  # Windows: atomic renames alone keep the cache consistent.
  fcntl = None

DATA_DIR_ENV = "JAXGPT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/jaxgpt"


def data_dir(override: str | os.PathLike | None = None) -> Path:
  """The cache root: `override` (config `data.data_dir`), else $JAXGPT_DATA_DIR, else default."""
  root = override or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
  return Path(root).expanduser()


def atomic_write(path: str | os.PathLike, *parts: bytes | memoryview) -> None:
  """Writes the concatenation of `parts` to `path` atomically (temp file + `os.replace`)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      for part in parts:
        f.write(part)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes files private; the cache may be shared
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented JSON, atomically."""
  atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any | None:
  """The JSON in `path`, or None when the file does not exist."""
  try:
    return json.loads(Path(path).read_text(encoding="utf-8"))
  except FileNotFoundError:
    return None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
  """Holds an exclusive lock on `path` (created if needed) for the duration of the block."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a+b") as f:
    if fcntl is not None:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      if fcntl is not None:
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
