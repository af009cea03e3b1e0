"""Optimizer-state memory per optimizer and deep_nested mode, from the state pytree (bytes).

  python scripts/nested_memory.py --out runs/nested_memory.json   # gpt cpu proxy and 124M GPT
  python scripts/nested_memory.py --smoke --out /tmp/nested_memory.json   # gpt test (tests)

No training and no timing: the optimizer state's bytes of each config's abstract train state
under AdamW, Muon+AdamW and the deep_nested modes (`jaxgpt/bench/nested_memory.py`). Prints a
table; writes JSON.
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import nested_memory

_SMOKE = flags.DEFINE_bool("smoke", False, "Only the gpt test config (seconds).")
_OUT = flags.DEFINE_string("out", "", "JSON output path.")


def main(argv):
  cli.no_arguments(argv)
  nested_memory.run(_SMOKE.value, _OUT.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
