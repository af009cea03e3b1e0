"""Writes tests/data/old_checkpoints/: a single run and a cohort interrupted at step 6 of 12.

They were written once by the code before the Muon chain and the one run driver (commit
3e57b3c, the single-transform `scale_by_muon`, `train/loop.py`'s own driver and
`sweep/cohort.py`'s), so `tests/test_old_checkpoints.py` shows that today's code restores them
and ends bitwise where an uninterrupted run of today's code ends. Regenerate only together with
a deliberate checkpoint-format change:

    PYTHONPATH=<checkout at 3e57b3c> python tests/old_checkpoints.py OUT_DIR
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import signal
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, STOP_AT = 12, 6
OVERRIDES = {"train.steps": STEPS, "train.eval_every": 3, "train.checkpoint_every": 3,
             "train.keep_checkpoints": 1, "train.keep_best": 0, "train.progress_bar": False}
SEEDS = (0, 1)  # the cohort's trials


def config(seed: int = 0):
  """configs/gpt.py:test (Muon + AdamW) with this file's overrides and `train.seed`."""
  spec = importlib.util.spec_from_file_location("cfg_gpt", ROOT / "configs" / "gpt.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config("test")
  for key, value in dict(OVERRIDES, **{"train.seed": seed}).items():
    section, field = key.split(".")
    c[section][field] = value
  return c


def interrupt_at(step_to_stop: int):
  """An on_eval callback that sends this process SIGINT at `step_to_stop`: the loop saves a
  checkpoint there and stops, as Ctrl-C would."""

  def on_eval(trial, step, metrics):
    del metrics
    if step == step_to_stop and trial == 0:
      os.kill(os.getpid(), signal.SIGINT)
    return False

  return on_eval


def main(out: str) -> None:
  from jaxgpt.sweep import cohort
  try:
    from jaxgpt.train.run import train_and_evaluate
  except ImportError:  # the code before the one run driver
    from jaxgpt.train.loop import train_and_evaluate
  out_path = pathlib.Path(out)
  shutil.rmtree(out_path, ignore_errors=True)
  summary = train_and_evaluate(config(), str(out_path / "single"),
                               on_eval=interrupt_at(STOP_AT))
  assert summary["stop_reason"] == "interrupted" and summary["steps"] == STOP_AT, summary
  try:
    cohort.train_cohort([config(s) for s in SEEDS], str(out_path / "cohort"),
                        on_eval=interrupt_at(STOP_AT), solo_steps=0)
  except KeyboardInterrupt:
    pass
  else:
    raise AssertionError("the cohort was not interrupted")
  for junk in out_path.rglob("tensorboard"):
    shutil.rmtree(junk)
  for junk in list(out_path.rglob("*.png")) + list(out_path.rglob(".lock")):
    junk.unlink()


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main(sys.argv[1])
