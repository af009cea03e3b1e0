"""Titans against GPT at equal training time, and the memory branch's cost per token.

  python scripts/bench_titans.py --seconds 150 --out docs/bench_titans.json
  python scripts/bench_titans.py --smoke            # tiny, for the tests

1. Equal time: `titans.py:cpu`, `titans.py:cpu,mag` and `gpt.py:cpu`, each trained for --seconds
   of training clock and scored on the whole validation split.
2. Memory cost: one block's memory branch (forward + backward) against the whole model's, per
   token. What each part runs: `jaxgpt/bench/titans.py`.

Prints a table and writes JSON. Timings need a quiet machine; the smoke size only checks that
the script runs.
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import titans

_SECONDS = flags.DEFINE_float("seconds", 150.0, "Training clock per run (train.max_time_s).")
_REPS = flags.DEFINE_integer("reps", 10, "Timed repetitions of the memory-cost kernels.")
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny: titans.py:test only, 6 steps, 2 reps.")


def main(argv):
  cli.no_arguments(argv)
  smoke = _SMOKE.value
  titans.run(3.0 if smoke else _SECONDS.value, 2 if smoke else _REPS.value, smoke, _OUT.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
