"""Entry point: parse flags, then dispatch. Nothing else happens here.

  python -m jaxgpt.main --config configs/gpt.py:cpu [--config.train.steps=100] [--workdir DIR]
      [--mode train|eval|sample|export] [--allow_config_change]

Running the same command again with the same workdir resumes from the latest checkpoint.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time

_PROCESS_START = time.time()

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from jaxgpt import cli  # noqa: E402
from jaxgpt.data import ShardError  # noqa: E402
from jaxgpt.errors import ConfigError  # noqa: E402
from jaxgpt.export import folder  # noqa: E402
from jaxgpt.export.exporter import export_workdir  # noqa: E402
from jaxgpt.hf import init as hf_init  # noqa: E402
from jaxgpt.lm_eval import hook as _lm_eval_hook  # noqa: E402, F401  (the "lm_eval" run hook)
from jaxgpt.parallel import distributed  # noqa: E402
from jaxgpt.train.checkpoint import CheckpointError  # noqa: E402
from jaxgpt.train.inference import evaluate_workdir, sample_workdir  # noqa: E402
from jaxgpt.train.run import train_and_evaluate  # noqa: E402
from jaxgpt.train.workdir import WorkdirError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variants].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Run directory (default: checkpoints/<name>[-<variants>]).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "export"], "What to do.")
_ALLOW = flags.DEFINE_bool("allow_config_change", False,
                           "Resume a workdir even though the config differs (e.g. more steps).")


def default_workdir(config) -> str:
  name = config.name
  if config.variants:
    name += "-" + config.variants.replace(",", "-")
  return os.path.join("checkpoints", name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config is required, e.g. --config configs/gpt.py:cpu")
  workdir = _WORKDIR.value or default_workdir(config)
  try:
    return dispatch(config, workdir, _MODE.value)
  # A bad key or value, a missing or damaged checkpoint, a busy or unusable workdir.
  except (ConfigError, FileNotFoundError, CheckpointError, WorkdirError, ShardError) as e:
    cli.fail(str(e))


def dispatch(config, workdir: str, mode: str) -> int:
  """Runs `mode` on `workdir`; returns the exit code."""
  distributed.initialize(config.distributed)  # multi-host: join the job before devices are used
  hf_init.apply(config)  # train.init_from: the folder's model keys, before validation
  if mode == "train":
    summary = train_and_evaluate(config, workdir, allow_config_change=_ALLOW.value,
                                 process_start=_PROCESS_START)
    keys = ("stop_reason", "steps", "final_val_loss", "val_bpb", "val_acc", "train_time_s",
            "wall_time_s", "tokens_per_s")
    if distributed.is_main():  # every process returns the summary; process 0 wrote it
      print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
      print(f"[jaxgpt] wrote {workdir}/summary.json", file=sys.stderr)
    if summary["stop_reason"] == "diverged":
      cli.fail(f"training diverged by step {summary['steps']} (the training loss is not finite); "
               "the checkpoints saved before it are kept: lower optimizer.lr or raise "
               "optimizer.warmup_frac", 1)
    return 130 if summary["stop_reason"] == "interrupted" else 0
  if mode == "eval":
    print(json.dumps(evaluate_workdir(config, workdir), indent=1))
    return 0
  if mode == "sample":
    for text in sample_workdir(config, workdir):
      print(text)
      print("-" * 40)
    return 0
  if config.export.format in folder.FORMATS:  # a transformers or jaxgpt safetensors folder
    print(json.dumps(folder.export_workdir(config, workdir), indent=1))
    return 0
  # export: the int8+zlib artifact, its fresh-process round trip and the budget check
  out = export_workdir(config, workdir)
  print(json.dumps(out, indent=1))
  return 0 if out["artifact_within_budget"] else 3


def _unknown_key(error: Exception, overrides: list[str]) -> str:
  """One line for a misspelt `--config.<key>` (ml_collections' KeyError holds a repr with a
  "Did you mean" on a second line)."""
  text = str(error.args[0]) if error.args else str(error)
  while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a repr inside a repr
    try:
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      break
  text = "; ".join(part.strip() for part in str(text).splitlines() if part.strip())
  return (f"unknown config key {text}; check the overrides {' '.join(overrides)} against the "
          "config file (keys are listed in jaxgpt/config.py)")


_parse_flags = cli.flags_parser(_unknown_key)


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
