"""Benchmark: the training input pipeline alone, pinned to one CPU core.

Measures how many (batch x seq_len) training batches per second `jaxgpt.data.train_iterator`
delivers, with nothing else running, and compares it with two references:
  gather only      the batch function called directly (no Grain): the pipeline's floor cost
  grain per-row    the alternative design, one Grain record per row then `.batch(B)`
The target: at least 12M tokens/s of 32 x 1024 batches on one core (parameter-golf's 8 GPUs on
one host consume about 12M tokens/s).

Data: synthetic token shards (uniform ids below 50257, GPT-2 sized, two shards) written to a
temporary folder, or `--data shakespeare` for the prepared byte-level corpus.

    python scripts/bench_input.py [--out bench_input.json]      # full size, 32 x 1024
    python scripts/bench_input.py --smoke --out /tmp/b.json     # seconds; used by the tests

Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

from absl import flags

from jaxgpt import cli

# numpy, Grain and jaxgpt.data are imported in the functions below, after `pin_to_one_core`:
# importing them starts threads (numpy's BLAS pool), which would escape the pinning.

_SEQ_LEN = flags.DEFINE_integer("seq_len", 1024, "Tokens per row.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Rows per batch.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 2000, "Timed batches per variant.", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 50, "Untimed batches per variant.", lower_bound=0)
_TOKENS = flags.DEFINE_integer("tokens", 50_000_000, "Synthetic tokens in total.", lower_bound=1)
_DATA = flags.DEFINE_enum("data", "synthetic", ["synthetic", "shakespeare"],
                          "Synthetic GPT-2-sized shards, or the prepared byte-level corpus.")
_NUM_THREADS = flags.DEFINE_integer("num_threads", 2, "Grain prefetch threads.", lower_bound=0)
_PREFETCH = flags.DEFINE_integer("prefetch", 8, "Grain prefetch buffer (batches).", lower_bound=0)
_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny sizes, a few seconds (tests).")


def pin_to_one_core() -> list[int] | None:
  """Pins this process (and the threads it starts later) to one CPU; returns the CPU set."""
  if not hasattr(os, "sched_setaffinity"):
    return None
  cpu = min(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {cpu})
  return sorted(os.sched_getaffinity(0))


class Args:
  """The benchmark's sizes: the flags, or the smoke sizes with --smoke."""

  def __init__(self):
    self.seq_len, self.batch_size = _SEQ_LEN.value, _BATCH_SIZE.value
    self.steps, self.warmup, self.tokens = _STEPS.value, _WARMUP.value, _TOKENS.value
    self.data, self.num_threads, self.prefetch = _DATA.value, _NUM_THREADS.value, _PREFETCH.value
    self.out, self.smoke = _OUT.value, _SMOKE.value
    if self.smoke:
      self.seq_len, self.batch_size, self.steps, self.warmup, self.tokens = 64, 4, 20, 2, 20_000


def make_spec(args, tmp: str):
  """A DataSpec over synthetic shards in `tmp`, or over the prepared Shakespeare corpus."""
  # After pin_to_one_core (main), like every numpy/Grain import here: see the top of the file.
  import numpy as np
  from ml_collections import config_dict

  from jaxgpt import data
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
  import grain  # after pin_to_one_core (main): see the top of the file
  import numpy as np

  from jaxgpt.data import pipeline
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


def main(argv) -> int:
  cli.no_arguments(argv)
  args = Args()
  cpus = pin_to_one_core()  # before Grain starts threads: they inherit the affinity
  # Imported only now, pinned: importing them starts threads (see the top of the file).
  from jaxgpt import data
  from jaxgpt.data import pipeline

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

  report = {
      "benchmark": "input_pipeline", "smoke": args.smoke, "data": args.data,
      "seq_len": args.seq_len, "batch_size": args.batch_size, "num_threads": args.num_threads,
      "prefetch": args.prefetch, "train_tokens": spec.split_tokens["train"],
      "pinned_cpus": cpus, "machine": platform.machine(), "processor": platform.processor(),
      "python": platform.python_version(), "command": " ".join([sys.executable, *sys.argv]),
      "results": results,
  }
  print(f"input pipeline, {args.batch_size} x {args.seq_len} batches, "
        f"CPUs {cpus if cpus is not None else 'unpinned'}, {args.data} data")
  print(f"{'variant':<40} {'batches/s':>10} {'Mtokens/s':>10} {'ms/batch':>9}")
  for r in results:
    print(f"{r['variant']:<40} {r['batches_per_s']:>10.1f} {r['tokens_per_s'] / 1e6:>10.2f} "
          f"{r['ms_per_batch']:>9.3f}")
  if args.out:
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  cli.run(main)
