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

Prints a table and writes JSON (`--out`). The benchmark: `jaxgpt/bench/input_pipeline.py`.
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import input_pipeline

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


def main(argv) -> int:
  cli.no_arguments(argv)
  sizes = input_pipeline.Sizes(
      seq_len=_SEQ_LEN.value, batch_size=_BATCH_SIZE.value, steps=_STEPS.value,
      warmup=_WARMUP.value, tokens=_TOKENS.value, data=_DATA.value, num_threads=_NUM_THREADS.value,
      prefetch=_PREFETCH.value, smoke=_SMOKE.value)
  input_pipeline.run(sizes, _OUT.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
