"""Metrics writers: metrics.jsonl (one JSON object per event), TensorBoard events, curves.png.

A writer also hands each row to its sinks (`sinks=`: objects with `log(step, values)`,
`summarize(summary, images)` and `close(failed)`; `jaxgpt.train.tracking`'s W&B run with
`log.wandb`), and at the end of the run the run's summary and pictures (`summarize`).

Only process 0 writes. Each JSON line is flushed as it is written, so a crash loses nothing
logged before it; on resume, lines logged after the restored step are dropped first, so the
file reads as if the run had never been interrupted.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

from jaxgpt import checks, files

CURVES = "curves.png"


class MetricsWriter:
  """Appends events to `workdir/metrics.jsonl` and TensorBoard event files."""

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True,
               sinks: Sequence[Any] = ()):
    self.enabled = enabled
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.sinks = list(sinks) if enabled else []
    self._file = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      from tensorboardX import SummaryWriter  # imported lazily: slow to import
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops events logged after `step` (they will be logged again by the resumed run)."""
    if not self.enabled or not os.path.exists(self.path):
      return
    self._file.close()
    kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
    files.atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
    self._file = open(self.path, "a", encoding="utf-8")

  def write(self, step: int, **values: Any) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: files.finite_or_none(v) for k, v in values.items()}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in values.items():
        if checks.is_number(v) and k != "step":
          self._tb.add_scalar(k, v, int(step))
    for sink in self.sinks:
      sink.log(int(step), record)

  def summarize(self, summary: dict) -> None:
    """Hands the run's (or trial's) summary and curves.png, where drawn, to the sinks."""
    images = {"curves": os.path.join(os.path.dirname(self.path), CURVES)}
    for sink in self.sinks:
      sink.summarize(summary, images)

  def close(self, failed: bool = False) -> None:
    """Closes the files and the sinks (`failed`: the run ended by an exception)."""
    for sink in self.sinks:
      sink.close(failed)
    self.sinks = []
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def read_jsonl(path: str) -> list[dict]:
  """Records of a metrics.jsonl; a torn last line (crash mid-write) is skipped."""
  out = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return out


def plot_curves(records: Iterable[dict], path: str, title: str = "") -> None:
  """curves.png: train and validation loss against step."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = list(records)
  train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
  val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
  fig, ax = plt.subplots(figsize=(7, 4.5))
  if train:
    ax.plot(*zip(*train), label="train loss", lw=1, alpha=0.8)
  if val:
    ax.plot(*zip(*val), "o-", label="val loss", lw=1.5, ms=3)
  ax.set_xlabel("step")
  ax.set_ylabel("loss (nats / token)")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)
