"""Gated nGPT end to end: time-to-target with early stop, resume, and the hypersphere constraint
holding on the trained parameters (lazy projection wired into the optimizer chain)."""

import math

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxgpt.models import ngpt
from jaxgpt.train import run as train_run
from tests.helpers import load_config


def test_reaches_target_and_resumes(tmp_path):
  target = math.log(256) - 0.5  # 0.5 below a fresh model's loss
  cfg = load_config("gated_ngpt", "test", train__target_loss=target, train__steps=200)
  out = train_run.train_and_evaluate(cfg, str(tmp_path))
  assert out["reached_target"] and out["stop_reason"] == "target"
  assert out["step_to_target"] >= cfg.train.eval_every
  assert out["step_to_target"] % cfg.train.eval_every == 0 and out["steps"] < 200
  assert 0 < out["time_to_target_s"] <= out["train_time_s"]
  assert out["best_val_loss"] <= target
  again = train_run.train_and_evaluate(load_config("gated_ngpt", "test", train__target_loss=target,
                                              train__steps=200), str(tmp_path))
  assert again["steps"] == out["steps"] and again["reached_target"]
  assert again["step_to_target"] == out["step_to_target"]
  assert again["final_val_loss"] == out["final_val_loss"]


@pytest.mark.parametrize("name", ["gated_ngpt", "ngpt"])
def test_trained_matrices_on_sphere_at_multiples_of_k(tmp_path, name):
  cfg = load_config(name, "test", train__steps=12)  # lazy_proj_freq 3 (gated) and 1 (ngpt)
  train_run.train_and_evaluate(cfg, str(tmp_path))
  params = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "12" / "state")["params"]
  axes = ngpt.projection_axes(params)
  checked = 0
  for p, ax in zip(jax.tree.leaves(params), jax.tree.leaves(axes, is_leaf=lambda x: x is None)):
    if ax is None:
      continue
    np.testing.assert_allclose(np.linalg.norm(np.asarray(p), axis=ax), 1.0, atol=1e-5)
    checked += 1
  assert checked >= 8
