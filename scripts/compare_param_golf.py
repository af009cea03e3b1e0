"""parameter-golf baseline against PR #1434's best combination (`best_proxy`), at equal time.

  python scripts/compare_param_golf.py                  # param_golf.py:cpu vs :best_proxy,cpu
  python scripts/compare_param_golf.py --time_s 180 --seeds=0,1 --out docs/param_golf.json
  python scripts/compare_param_golf.py --smoke          # tiny, for the tests

Each (arm, seed) is one `python -m jaxgpt.main` process with the same training-time cap and the
int8+zlib export at the end; the tables give per run and per arm (mean, spread over seeds) the
full-split val_bpb, the artifact's round-trip val_bpb and its bytes. Resumable: finished runs
under --root are reused. What each run does: `jaxgpt/bench/compare_param_golf.py`. Prints a
table, writes JSON.
"""

from __future__ import annotations

import os

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import compare_param_golf as compare

_SIZE = flags.DEFINE_string("size", "cpu", "The size variant both arms use.")
_SEEDS = cli.define_int_list("seeds", [0, 1], "Seeds per arm, e.g. --seeds=0,1.")
_ARMS = flags.DEFINE_list("arms", list(compare.ARMS),
                          f"Arms to run, comma-separated: {', '.join(compare.ARMS)}.")
_TIME_S = flags.DEFINE_float("time_s", None, "Training-time cap for every run (default: the "
                             "config's).")
_ROOT = flags.DEFINE_string("root", os.path.join(compare.ROOT, "checkpoints", "compare_param_golf"),
                            "One workdir per (arm, seed) under this directory.")
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Test variants, one seed, a few steps.")
flags.register_validator("arms", lambda arms: bool(arms) and set(arms) <= set(compare.ARMS),
                         f"give one or more of {', '.join(compare.ARMS)}, comma-separated")


def main(argv):
  cli.no_arguments(argv)
  size, seeds, time_s, extra = _SIZE.value, _SEEDS.value, _TIME_S.value, []
  if _SMOKE.value:
    size, seeds, time_s = "test", seeds[:1], None
    extra = ["--config.train.steps=2", "--config.train.eval_every=2",
             "--config.export.fp16_max_numel=1024"]
  compare.run(size, seeds, _ARMS.value, time_s, _ROOT.value, extra, _OUT.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
