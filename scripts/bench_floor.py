"""The plain-JAX floor: jaxgpt's train step against the same model in a page of jnp + optax.

  python scripts/bench_floor.py                                   # nanoGPT's CPU shape (GPT)
  python scripts/bench_floor.py --config configs/gpt.py:cpu --noshape  # the config as it is
  python scripts/bench_floor.py --config configs/gated_ngpt.py:cpu --noshape  # gated nGPT + Muon
  python scripts/bench_floor.py --smoke                           # tiny, for the tests

jaxgpt's train step (as configured and with `model.scan_layers` flipped) and, with --loop, its
training loop, against the same model in plain jnp + optax (the floor; families `gpt` and
`gated_ngpt`), unrolled and scanned, timed in interleaved rounds from the same initial weights
(the initial losses must agree). Prints a table with each row's ratio to the fastest floor;
writes JSON. What each row runs: `jaxgpt/bench/floor.py`.

`--shape` (default on) applies the nanoGPT CPU recipe's shape to a GPT config: 4 layers x 128,
4 heads, block 64, batch 12 (768 tokens/step), GELU, AdamW lr 1e-3, fp32. It is GPT's only:
a gated nGPT config needs `--noshape` (it runs as configured, `--set` still applies).
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import args, floor

_F = args.define("configs/gpt.py:cpu", "Tiny run for tests (configs/gpt.py:test, 2 steps, 1 "
                 "round, no loop).", steps=20, steps_help="Timed steps per row and round.",
                 sets=True)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved timing rounds.", lower_bound=1)
_SHAPE = flags.DEFINE_bool("shape", True, "Apply the nanoGPT CPU shape to a GPT config (see "
                           "the docstring); --noshape runs the config as it is.")
_LOOP = flags.DEFINE_bool("loop", True, "Also time the real training loop (jaxgpt.main's, data "
                          "pipeline and per-step host work included) on the same config.")


def main(argv):
  cli.no_arguments(argv)
  floor.run(_F.config.value, _F.sets.value, _F.steps.value, _ROUNDS.value, shape=_SHAPE.value,
            loop=_LOOP.value, smoke=_F.smoke.value, out=_F.out.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
