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

import argparse
import json
import os
import platform
import sys
import tempfile
import time


def pin_to_one_core() -> list[int] | None:
  """Pins this process (and the threads it starts later) to one CPU; returns the CPU set."""
  if not hasattr(os, "sched_setaffinity"):
    return None
  cpu = min(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {cpu})
  return sorted(os.sched_getaffinity(0))


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seq_len", type=int, default=1024)
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--steps", type=int, default=2000, help="timed batches per variant")
  p.add_argument("--warmup", type=int, default=50, help="untimed batches per variant")
  p.add_argument("--tokens", type=int, default=50_000_000, help="synthetic tokens in total")
  p.add_argument("--data", choices=("synthetic", "shakespeare"), default="synthetic")
  p.add_argument("--num_threads", type=int, default=2, help="Grain prefetch threads")
  p.add_argument("--prefetch", type=int, default=8, help="Grain prefetch buffer (batches)")
  p.add_argument("--out", default=None, help="write the results as JSON here")
  p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (tests)")
  args = p.parse_args(argv)
  if args.smoke:
    args.seq_len, args.batch_size, args.steps, args.warmup, args.tokens = 64, 4, 20, 2, 20_000
  return args


def make_spec(args, tmp: str):
  """A DataSpec over synthetic shards in `tmp`, or over the prepared Shakespeare corpus."""
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
  import grain
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


def main(argv=None) -> dict:
  args = parse_args(argv)
  cpus = pin_to_one_core()  # before Grain starts threads: they inherit the affinity
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
  return report


if __name__ == "__main__":
  main()
