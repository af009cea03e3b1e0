"""The data cache: where prepared data lives, and how it is written safely.

Prepared data (the Shakespeare corpus, its token shards, trained tokenizers) is cached under
`$JAXGPT_DATA_DIR` (default `~/.cache/jaxgpt`), or under `data.data_dir` when a config sets it.

Two rules make the cache safe when several processes prepare it at once (one per host, or two
test workers on one machine), both from `jaxgpt.files`:
- every file is written atomically (`files.atomic_write`), so a reader never sees half a file;
- whole preparations run under `files.file_lock` on a lock file, so the second process waits
  for the first and then finds the work done.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "JAXGPT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/jaxgpt"


def data_dir(override: str | os.PathLike | None = None) -> Path:
  """The cache root: `override` (config `data.data_dir`), else $JAXGPT_DATA_DIR, else default."""
  root = override or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
  return Path(root).expanduser()
