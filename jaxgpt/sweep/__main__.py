"""Sweep worker entry point: parse flags, then run one worker on the study.

  python -m jaxgpt.sweep --config configs/sweeps/NAME.py[:VARIANTS] --workdir DIR
      [--config.n_trials=64 ...] [--storage postgresql://...] [--max_cohorts N]
  python -m jaxgpt.sweep --config ... --workdir DIR --plan

`--plan` runs the calibration pass (each static structure's solo step time, 3+ repeats, into
DIR/calibration.json; run it with nothing else on the machine) and prints the plan, runs x
measured time per run, without training; `--pilot trials.json[:metric]` adds the smallest
difference a pilot's seed spread lets the sweep's seeds resolve.

Start it several times (on one machine with the default SQLite storage `DIR/study.db`, or on
many with a shared `--storage` URL): the workers share the study and never run the same trial.
Stopping a worker and starting it again loses no finished trial. Then `python -m jaxgpt.report
DIR` writes the report.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxgpt import cli
from jaxgpt.sweep import runner

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file[:variants].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory (study.db, runs/, report/).")
_STORAGE = flags.DEFINE_string("storage", None,
                               "Optuna storage URL (default: sqlite:///WORKDIR/study.db).")
_MAX_COHORTS = flags.DEFINE_integer("max_cohorts", None,
                                    "Stop this worker after this many cohorts.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show the progress bar.")
_PLAN = flags.DEFINE_bool("plan", False, "Calibrate the step times and print the plan; no "
                          "training.")
_PILOT = flags.DEFINE_string("pilot", None, "With --plan: a pilot's trials.json[:metric] "
                             "(python -m jaxgpt.report DIR --json FILE); the plan adds the "
                             "smallest difference its seed spread lets the sweep's seeds "
                             "resolve.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  sweep = _CONFIG.value
  if sweep is None:
    raise app.UsageError("--config is required, e.g. --config configs/sweeps/grid2d.py:cpu")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required (the sweep directory)")
  try:
    if _PLAN.value:
      print(runner.plan(sweep, _WORKDIR.value, progress=_PROGRESS.value, pilot=_PILOT.value))
      return 0
    counts = runner.run_worker(sweep, _WORKDIR.value, storage=_STORAGE.value,
                               max_cohorts=_MAX_COHORTS.value, progress=_PROGRESS.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(counts))
  print(f"[jaxgpt.sweep] report: python -m jaxgpt.report {_WORKDIR.value}", file=sys.stderr)
  return 0


_parse_flags = cli.flags_parser(
    lambda e, bad: f"unknown sweep config key {e}; check the --config.* overrides against the "
                   "sweep file (keys: jaxgpt/sweep/spec.py:base_sweep)")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
