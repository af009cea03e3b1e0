"""Training throughput of a config: tokens/s over timed steps (compile and eval excluded).

  python scripts/bench_train.py --config configs/gpt.py:cpu --steps 100 --out bench_train.json
  python scripts/bench_train.py --config configs/gated_ngpt.py:cpu --set optimizer.lazy_proj_freq=7
  python scripts/bench_train.py --smoke          # tiny, for the tests

Prints a table and writes JSON. Runs the real training loop in a temporary workdir with
evaluation pushed past the end, so the figure is the loop's own (data pipeline included).
`--set KEY=VALUE` (repeatable) overrides a config key; VALUE is read as the key's type.
"""

from __future__ import annotations

from jaxgpt import cli
from jaxgpt.bench import args, train

_F = args.define("configs/gpt.py:cpu", "Tiny run for tests (configs/gpt.py:test, 6 steps).",
                 steps=100, sets=True)


def main(argv):
  cli.no_arguments(argv)
  config_arg, steps = _F.config.value, _F.steps.value
  if _F.smoke.value:
    config_arg, steps = "configs/gpt.py:test", 6
  train.run(config_arg, steps, _F.sets.value, _F.out.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
