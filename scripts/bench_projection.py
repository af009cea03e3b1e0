"""Cost of nGPT's projection onto the hypersphere as a share of the train step.

  python scripts/bench_projection.py --config configs/gated_ngpt.py:cpu --ks=1,7 --out proj.json
  python scripts/bench_projection.py --smoke          # tiny, for the tests

Times the compiled train step with the projection disabled and the jitted projection alone
(medians over --reps calls after a warm-up; `jaxgpt/bench/projection.py`), and reports the
projection's share of a step with lazy projection every k steps,
`project_ms / (k * step_ms + project_ms)`. Prints a table and writes JSON.
"""

from __future__ import annotations

from absl import app, flags

from jaxgpt import cli
from jaxgpt.bench import args, projection

_F = args.define("configs/gated_ngpt.py:cpu", "Tiny run for tests (configs/gated_ngpt.py:test).")
_REPS = flags.DEFINE_integer("reps", 30, "Timed calls of each, after a warm-up.", lower_bound=1)
_KS = cli.define_int_list("ks", [1, 7], "Lazy projection every k steps: the shares to report, "
                          "e.g. --ks=1,7.")


def main(argv):
  cli.no_arguments(argv)
  config_arg, reps, ks = _F.config.value, _REPS.value, _KS.value
  if _F.smoke.value:
    config_arg, reps = "configs/gated_ngpt.py:test", 2
  if min(ks, default=0) < 1:
    raise app.UsageError(f"--ks={','.join(map(str, ks))}: give projection intervals >= 1")
  projection.run(config_arg, reps, ks, _F.out.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
