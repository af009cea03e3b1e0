"""Checkpoints written before the Muon chain and the one run driver restore and continue.

tests/data/old_checkpoints/ holds a single run and a cohort of two trials of configs/gpt.py:test
(Muon + AdamW), interrupted at step 6 of 12 by the code of commit 3e57b3c
(`tests/old_checkpoints.py` wrote them). Today's code resumes each to step 12 and must end
bitwise where an uninterrupted run of today's code ends: the optimizer state tree, the
data-iterator state and the checkpoint meta are read as they were written.
"""

import json
import pathlib
import shutil

import jax
import numpy as np

from jaxgpt.sweep import cohort
from jaxgpt.train import run as train_run
from jaxgpt.train.inference import load_params
from tests import old_checkpoints as old

DATA = pathlib.Path(__file__).parent / "data" / "old_checkpoints"


def test_single_run_checkpoint_from_before_resumes(tmp_path):
  resumed = tmp_path / "resumed"
  shutil.copytree(DATA / "single", resumed)
  meta_step = json.loads((resumed / "summary.json").read_text())["steps"]
  assert meta_step == old.STOP_AT
  seen = []
  got = train_run.train_and_evaluate(old.config(), str(resumed),
                                     on_eval=lambda i, step, m: seen.append(step))
  assert seen == [9, 12]  # resumed at step 6 (a fresh start would evaluate at 3 and 6 too)
  want = train_run.train_and_evaluate(old.config(), str(tmp_path / "fresh"))
  assert got["steps"] == want["steps"] == old.STEPS
  assert got["final_val_loss"] == want["final_val_loss"]
  _, p_got, _ = load_params(old.config(), str(resumed))
  _, p_want, _ = load_params(old.config(), str(tmp_path / "fresh"))
  for x, y in zip(jax.tree.leaves(p_got), jax.tree.leaves(p_want)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_cohort_checkpoint_from_before_resumes(tmp_path):
  resumed = tmp_path / "resumed"
  shutil.copytree(DATA / "cohort", resumed)
  configs = [old.config(s) for s in old.SEEDS]
  seen = []
  got = cohort.train_cohort(configs, str(resumed), solo_steps=0,
                            on_eval=lambda i, step, m: seen.append((i, step)))
  assert seen == [(0, 9), (1, 9), (0, 12), (1, 12)]  # resumed at step 6
  want = cohort.train_cohort(configs, str(tmp_path / "fresh"), solo_steps=0)
  for g, w in zip(got, want):
    assert g["steps"] == w["steps"] == old.STEPS
    assert g["final_val_loss"] == w["final_val_loss"]
    assert [p["val_loss"] for p in g["curve"]] == [p["val_loss"] for p in w["curve"]]
