"""Files that survive crashes and concurrent writers: atomic writes, JSON, locks, JSON floats.

- Every write goes to a temporary file in the target's folder, is fsynced, then renamed into
  place (`os.replace` is atomic on POSIX): a reader never sees half a file, and a crash leaves
  the previous version intact.
- `file_lock` holds an exclusive `fcntl` lock on a lock file for a block (processes on one
  host; where `fcntl` is missing, as on Windows, it is a no-op).
- `finite_or_none` maps floats to what strict JSON can hold (NaN -> None, +-inf -> +-1e308).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

try:
  import fcntl
except ImportError:  # Windows: no advisory locks; atomic renames still hold.
  fcntl = None


def atomic_write(path: str | os.PathLike, *parts: bytes | memoryview, mode: int = 0o644) -> None:
  """Writes the concatenation of `parts` to `path` atomically (temp file + fsync + rename)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      for part in parts:
        f.write(part)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, mode)  # mkstemp makes files private; caches and run dirs may be shared
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  atomic_write(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON, atomically."""
  atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, default: Any = ...) -> Any:
  """The JSON in `path`; `default` (when given) if the file does not exist."""
  try:
    return json.loads(Path(path).read_text(encoding="utf-8"))
  except FileNotFoundError:
    if default is ...:
      raise
    return default


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


def finite_or_none(x: Any) -> Any:
  """A float strict JSON can hold: None for NaN, +-1e308 for infinities; other values as they
  are (numpy scalars become Python floats)."""
  if x is None or isinstance(x, (bool, int, str)):
    return x
  try:
    x = float(x)
  except (TypeError, ValueError):
    return x
  if math.isnan(x):
    return None
  return x if math.isfinite(x) else math.copysign(1e308, x)
