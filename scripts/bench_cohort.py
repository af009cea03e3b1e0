"""Vmapped cohort vs the same trials one after another: training time of K proxies.

  python scripts/bench_cohort.py --config configs/gpt.py:cpu --steps 30 --out bench_cohort.json
  python scripts/bench_cohort.py --config configs/gpt.py:test --steps 100 --ks=1,2,4,8,16,32
  python scripts/bench_cohort.py --smoke --out /tmp/bench_cohort.json   # tiny, for the tests

K trials of one config that differ in traced hyperparameters, trained for the same --steps as
one vmapped cohort program and one after another on one compiled K=1 program (what each side
runs: `jaxgpt/bench/cohort.py`). Prints a table (compile and training seconds, speedup, the K at
which the gain stops growing) and writes JSON (with the compiled cohort step's memory analysis).
"""

from __future__ import annotations

from jaxgpt import cli
from jaxgpt.bench import args, cohort

_F = args.define("configs/gpt.py:cpu", "Tiny run for tests (configs/gpt.py:test, 3 steps, "
                 "K = 1, 2).", steps=30, steps_help="Timed training steps per run.")
_KS = cli.define_int_list("ks", [1, 2, 4, 8, 16], "Cohort sizes K to time, e.g. --ks=1,2,4.")


def main(argv):
  cli.no_arguments(argv)
  config_arg, steps, ks = _F.config.value, _F.steps.value, _KS.value
  if _F.smoke.value:
    config_arg, steps, ks = "configs/gpt.py:test", 3, [1, 2]
  cohort.run(config_arg, steps, ks, _F.smoke.value, _F.out.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
