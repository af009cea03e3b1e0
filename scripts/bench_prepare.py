"""Benchmark: corpus preparation (`python -m jaxgpt.data.prepare`) against the tokenizer's own
one-thread batch encoding of the same text, and how it scales with worker processes.

    python scripts/bench_prepare.py --out bench_prepare.json          # 200 MB, workers 1 and 2
    python scripts/bench_prepare.py --smoke --out /tmp/p.json         # seconds; used by the tests

Run it with nothing else on the machine. Prints a table and writes JSON (`--out`). The
benchmark, its corpus and what each row measures: `jaxgpt/bench/prepare.py`.
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import prepare

_MEGABYTES = flags.DEFINE_float("megabytes", 200.0, "UTF-8 text in the parquet corpus (MB).",
                                lower_bound=0.1)
_VOCAB = flags.DEFINE_integer("vocab", 8192, "Byte-level BPE vocabulary size.", lower_bound=300)
_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "Worker counts to time.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the temporary corpus and shards.")
_OUT = flags.DEFINE_string("out", None, "Write the results as JSON here.")
_SMOKE = flags.DEFINE_bool("smoke", False, "A 1 MB corpus, vocab 512 (tests).")


def main(argv) -> int:
  cli.no_arguments(argv)
  workers = [int(w) for w in _WORKERS.value]
  if any(w < 1 for w in workers):
    raise ValueError(f"--workers={_WORKERS.value} must be positive integers")
  mb, vocab = (1.0, 512) if _SMOKE.value else (_MEGABYTES.value, _VOCAB.value)
  prepare.run(mb, vocab, workers, _OUT.value, _WORKDIR.value, _SMOKE.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
