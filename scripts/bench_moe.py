"""MoE cost: training tokens/s of `configs/moe.py:cpu` per dispatch against the dense GPT of
equal active parameters, and each dispatch's FLOPs from XLA's compiled cost analysis.

  python scripts/bench_moe.py --steps 60 --out moe_bench.json
  python scripts/bench_moe.py --smoke          # tiny, for the tests

Rows: each dispatch of `model.moe.dispatch` and the dense GPT of equal active parameters; columns:
tokens/s of the real training loop, the train step's compiled FLOPs per token, and the MoE
layer's forward FLOPs relative to the active experts' matmuls (what each means:
`jaxgpt/bench/moe.py`). Prints a table and writes JSON.
"""

from __future__ import annotations

from jaxgpt import cli
from jaxgpt.bench import args, moe

_F = args.define("configs/moe.py:cpu", "Tiny run for tests (configs/moe.py:test, 2 steps; every "
                 "FLOP count, only the dense dispatch and the GPT trained).", steps=60)


def main(argv):
  cli.no_arguments(argv)
  config_arg, steps, timed = _F.config.value, _F.steps.value, moe.DISPATCHES
  if _F.smoke.value:  # every FLOP count, but only the dense dispatch and the GPT trained
    config_arg, steps, timed = "configs/moe.py:test", 2, ("dense",)
  moe.run(config_arg, steps, timed, _F.out.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
