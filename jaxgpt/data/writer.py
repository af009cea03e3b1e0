"""Token shards written so that a killed preparation resumes exactly (`python -m
jaxgpt.data.prepare`).

Each split has a `SplitWriter`. Tokens are appended to the *part* of the shard being filled,
`.<split>_<k>.part` (the shard's raw tokens, a hidden file); when it holds `max_tokens`, it is
copied into `<split>_<k>.bin` (the `shards.py` header, then the tokens; written to a temporary
file and renamed, so no half shard ever has a shard's name) and filling moves on to part k + 1.
The last shard of a split holds what is left (`close`).

A checkpoint is `state()`: it fsyncs the current part and returns the finished shards and the
tokens of the current part, which the caller saves (atomically, with its position in the
input) before it calls `committed()`, which deletes the parts of finished shards. A writer made
from a saved state truncates the current part to the saved length and deletes what came after
the checkpoint (later parts, shards numbered from the current one on, temporary files), so a
resumed preparation writes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from jaxgpt.data import shards


def shard_name(split: str, k: int) -> str:
  """`<split>_<k>.bin`, as `shards.write_split` and documents.py name shards."""
  return f"{split}_{k:06d}.bin"


def part_path(root: Path, split: str, k: int) -> Path:
  """The hidden file that holds shard k's tokens while it fills."""
  return root / f".{split}_{k:06d}.part"


def _index(path: Path, split: str) -> int | None:
  """k of `<split>_<k>.bin` or `.<split>_<k>.part`, None for other names."""
  found = re.fullmatch(rf"\.?{re.escape(split)}_(\d+)\.(bin|part)", path.name)
  return int(found.group(1)) if found else None


def clean_after(root: Path, split: str, k: int) -> None:
  """Deletes the split's shards numbered k or more, its parts other than k, and temporary
  files: what a run killed after the checkpoint at shard k left behind."""
  for path in root.iterdir():
    index = _index(path, split)
    stale_bin = path.suffix == ".bin" and index is not None and index >= k
    stale_part = path.suffix == ".part" and index is not None and index != k
    temp = path.name.startswith(f".{split}_") and path.name.endswith(".tmp")
    if stale_bin or stale_part or temp:
      path.unlink()


def write_from_part(part: Path, dest: Path, num_tokens: int, version: int) -> None:
  """`dest` = the shard header for `num_tokens` tokens, then the part's bytes; atomic."""
  header = np.zeros(shards.HEADER_INTS, dtype="<i4")
  header[:3] = (shards.MAGIC, version, num_tokens)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as out, open(part, "rb") as src:
      out.write(header.tobytes())
      shutil.copyfileobj(src, out, 1 << 22)
      out.flush()
      os.fsync(out.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


class SplitWriter:
  """Appends one split's tokens to shards of `max_tokens` (see the module docstring)."""

  def __init__(self, root: Path, split: str, version: int, max_tokens: int,
               state: dict | None = None):
    self.root, self.split, self.version, self.max_tokens = Path(root), split, version, max_tokens
    self.dtype = shards.DTYPES[version]
    self.shards = list(state["shards"]) if state else []
    self.part_tokens = int(state["part_tokens"]) if state else 0
    self.finished_since_commit = False
    k = len(self.shards)
    clean_after(self.root, split, k)
    path = part_path(self.root, split, k)
    size = path.stat().st_size if path.exists() else 0
    if size < self.part_tokens * self.dtype.itemsize:
      raise shards.ShardError(f"{path}: {size} bytes, but progress.json says it holds "
                              f"{self.part_tokens} tokens (rerun with --restart)")
    self._file = open(path, "r+b" if path.exists() else "wb")
    self._file.truncate(self.part_tokens * self.dtype.itemsize)
    self._file.seek(0, os.SEEK_END)

  def append(self, ids: np.ndarray) -> None:
    """Appends `ids` (ids must fit the dtype), finishing shards as they fill."""
    ids = np.asarray(ids)
    pos = 0
    while pos < len(ids):
      take = min(len(ids) - pos, self.max_tokens - self.part_tokens)
      self._file.write(ids[pos:pos + take].astype(self.dtype).tobytes())
      self.part_tokens += take
      pos += take
      if self.part_tokens == self.max_tokens:
        self._finish_shard()

  def _finish_shard(self) -> None:
    k = len(self.shards)
    self._file.close()
    write_from_part(part_path(self.root, self.split, k), self.root / shard_name(self.split, k),
                    self.part_tokens, self.version)
    self.shards.append(shard_name(self.split, k))
    self.part_tokens = 0
    self.finished_since_commit = True
    self._file = open(part_path(self.root, self.split, k + 1), "wb")

  def state(self) -> dict:
    """The checkpoint: the current part fsynced, the finished shards and the part's tokens."""
    self._file.flush()
    os.fsync(self._file.fileno())
    return {"shards": list(self.shards), "part_tokens": self.part_tokens}

  def committed(self) -> None:
    """After the caller saved `state()`: the parts of finished shards are no longer needed."""
    self.finished_since_commit = False
    for k in range(len(self.shards)):
      with contextlib.suppress(FileNotFoundError):
        part_path(self.root, self.split, k).unlink()

  def close(self) -> list[str]:
    """Finishes the last shard (an empty one if the split has none) and returns the names."""
    if self.part_tokens or not self.shards:
      self._finish_shard()
    self._file.close()
    return list(self.shards)

  def abandon(self) -> None:
    """Closes the part file without finishing anything (an error or an interrupt)."""
    self._file.close()

  def remove_parts(self) -> None:
    """Deletes every part of the split (after the preparation is finished)."""
    for path in self.root.glob(f".{self.split}_*.part"):
      path.unlink()
