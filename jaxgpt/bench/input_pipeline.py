"""The training input pipeline alone, pinned to one CPU core (scripts/bench_input.py).

Measures how many (batch x seq_len) training batches per second `jaxgpt.data.train_iterator`
delivers, and compares it with two references:
  gather only      the batch function called directly (no Grain): the pipeline's floor cost
  grain per-row    the alternative design, one Grain record per row then `.batch(B)`
Data: synthetic token shards (uniform ids below 50257, GPT-2 sized, two shards) written to a
temporary folder, or the prepared byte-level Shakespeare corpus.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time

from jaxgpt.bench import output

# numpy, Grain and jaxgpt.data are imported in the functions below, after `pin_to_one_core`:
# importing them starts threads (numpy's BLAS pool), which would escape the pinning.


@dataclasses.dataclass
class Sizes:
  """The benchmark's sizes and pipeline settings (the flags of scripts/bench_input.py)."""
  seq_len: int = 1024
  batch_size: int = 32
  steps: int = 2000
  warmup: int = 50
  tokens: int = 50_000_000
  data: str = "synthetic"
  num_threads: int = 2
  prefetch: int = 8
  smoke: bool = False

  def __post_init__(self):
    if self.smoke:
      self.seq_len, self.batch_size, self.steps, self.warmup, self.tokens = 64, 4, 20, 2, 20_000


def pin_to_one_core() -> list[int] | None:
  """Pins this process (and the threads it starts later) to one CPU; returns the CPU set."""
  if not hasattr(os, "sched_setaffinity"):
    return None
  cpu = min(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {cpu})
  return sorted(os.sched_getaffinity(0))


def make_spec(args, tmp: str):
  """A DataSpec over synthetic shards in `tmp`, or over the prepared Shakespeare corpus."""
  # After pin_to_one_core (run), like every numpy/Grain import here: see the top of the file.
  import numpy as np
  from ml_collections import config_dict

  from jaxgpt import data  # after the pinning too
  if args.data == "shakespeare":
    return data.prepare(config_dict.ConfigDict(dict(name="shakespeare", tokenizer="byte")))
  rng = np.random.default_rng(0)
  half = args.tokens // 2
  for k, n in enumerate((half, args.tokens - half)):
    data.write_shard(os.path.join(tmp, f"train_{k:06d}.bin"), rng.integers(0, 50257, n))
  data.write_shard(os.path.join(tmp, "val_000000.bin"), rng.integers(0, 50257, 4 * args.seq_len))
  return data.prepare(config_dict.ConfigDict(dict(
      name="shards", tokenizer="byte", train_pattern=os.path.join(tmp, "train_*.bin"),
      val_pattern=os.path.join(tmp, "val_*.bin"), seq_len=args.seq_len)))


def per_row_iterator(spec, args):
  """The alternative design: one Grain record per row, batched by Grain."""
  import grain  # after pin_to_one_core (run): see the top of the file
  import numpy as np

  from jaxgpt.data import pipeline  # after the pinning too
  batches = pipeline.TrainBatches(spec.train_files, args.seq_len, args.batch_size, 0, range(1))
  t = args.seq_len

  def row(i):
    start = pipeline.window_starts([i], 0, batches.num_windows, batches.max_offset, t)[0]
    window = batches.stream.read(start, start + t + 1).astype(np.int32)
    return {"inputs": window[:-1], "targets": window[1:]}

  ds = grain.MapDataset.range(0, 1 << 40).map(row).batch(args.batch_size)
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=args.num_threads,
                                                    prefetch_buffer_size=args.prefetch)))


def time_batches(it, args) -> dict:
  for _ in range(args.warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(args.steps):
    batch = next(it)
  elapsed = time.perf_counter() - start
  assert batch["inputs"].shape == (args.batch_size, args.seq_len), batch["inputs"].shape
  tokens = args.steps * args.batch_size * args.seq_len
  return {"batches_per_s": args.steps / elapsed, "tokens_per_s": tokens / elapsed,
          "ms_per_batch": 1e3 * elapsed / args.steps, "steps": args.steps}


def bench(args: Sizes, cpus: list[int] | None = None) -> dict:
  """Times the three variants on `args`' data; returns the JSON (`cpus`: the pinned CPU set)."""
  # Imported only now, after any pinning: importing them starts threads (see the top).
  from jaxgpt import data
  from jaxgpt.data import pipeline  # after the pinning too

  with tempfile.TemporaryDirectory() as tmp:
    spec = make_spec(args, tmp)
    kw = dict(seq_len=args.seq_len, global_batch_size=args.batch_size, seed=0)
    it = data.train_iterator(spec, **kw, num_threads=args.num_threads, prefetch=args.prefetch)
    gather = pipeline.TrainBatches(spec.train_files, args.seq_len, args.batch_size, 0,
                                   range(args.batch_size))
    steps = iter(range(1 << 40))
    variants = {
        "train_iterator (grain, batch record)": it,
        "gather only (no grain)": (gather(s) for s in steps),
        "grain per-row record + batch": per_row_iterator(spec, args),
    }
    results = []
    for name, iterator in variants.items():
      results.append({"variant": name, **time_batches(iterator, args)})
    it.close()
  return {
      "benchmark": "input_pipeline", "smoke": args.smoke, "data": args.data,
      "seq_len": args.seq_len, "batch_size": args.batch_size, "num_threads": args.num_threads,
      "prefetch": args.prefetch, "train_tokens": spec.split_tokens["train"],
      "pinned_cpus": cpus, "machine": platform.machine(), "processor": platform.processor(),
      "python": platform.python_version(), "command": " ".join([sys.executable, *sys.argv]),
      "results": results,
  }


TABLE = output.Table(
    output.Column("variant", "variant", width=40, left=True),
    output.Column("batches/s", "batches_per_s", ".1f", width=10),
    output.Column("Mtokens/s", lambda r: r["tokens_per_s"] / 1e6, ".2f", width=10),
    output.Column("ms/batch", "ms_per_batch", ".3f", width=9))


def run(args: Sizes, out: str | None = None) -> dict:
  """Pins this process to one core, then `bench`; prints the table and writes `out`."""
  cpus = pin_to_one_core()  # before Grain starts threads: they inherit the affinity
  report = bench(args, cpus)
  output.emit(report, out, TABLE, report["results"], title=(
      f"input pipeline, {args.batch_size} x {args.seq_len} batches, "
      f"CPUs {cpus if cpus is not None else 'unpinned'}, {args.data} data"))
  return report
