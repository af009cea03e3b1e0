"""Muon+AdamW against AdamW on a config's proxy, each tuned over learning rates and seeds.

  python scripts/compare_optimizers.py --config configs/gpt.py:cpu \
      --out docs/compare_optimizers.json
  python scripts/compare_optimizers.py --seeds=0,1,2 --skip=adamw:0.012 --cache runs.jsonl
  python scripts/compare_optimizers.py --smoke       # tiny, for the tests

Every (optimizer, lr, seed) run trains the config's step budget; the table gives each learning
rate's mean final val_bpb over the seeds and the best one's seed spread (the grid and the
comparison: `jaxgpt/bench/compare_optimizers.py`). Prints a table, writes JSON.
"""

from __future__ import annotations

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import compare_optimizers as compare

_CONFIG = flags.DEFINE_string("config", "configs/gpt.py:cpu", "Config file[:variants].")
_SEEDS = cli.define_int_list("seeds", [0, 1], "Seeds per (optimizer, lr), e.g. --seeds=0,1.")
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run for tests (configs/gpt.py:test, one seed, "
                           "one lr per optimizer).")
_CACHE = flags.DEFINE_string("cache", None, "JSONL of finished runs: rerunning skips them "
                             "(resumable).")
_SKIP = flags.DEFINE_list("skip", [], "OPT:LR grid points not to run, comma-separated (e.g. "
                          "--skip=adamw:0.012 when clearly worse).")


def main(argv):
  cli.no_arguments(argv)
  config_arg, seeds, grid = _CONFIG.value, _SEEDS.value, compare.GRID
  if _SMOKE.value:
    config_arg, seeds = "configs/gpt.py:test", [0]
    grid = {k: dict(v, lrs=v["lrs"][:1]) for k, v in grid.items()}
  compare.run(config_arg, seeds, grid, _SKIP.value, _CACHE.value, _OUT.value)
  return 0


if __name__ == "__main__":
  cli.run(main)
