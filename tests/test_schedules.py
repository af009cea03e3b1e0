"""LR schedules against their closed forms, and the one training clock."""

import math

import chex
import numpy as np
import pytest

from jaxgpt.optim import schedules


def _ref_cosine(p, w, f):
  if p < w:
    return p / w
  t = (p - w) / (1 - w)
  return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t))


@pytest.mark.parametrize("p", [0.0, 0.05, 0.1, 0.3, 0.55, 0.999, 1.0])
def test_cosine_closed_form(p):
  fn = schedules.cosine(warmup_frac=0.1, final_lr_frac=0.1)
  chex.assert_trees_all_close(float(fn(p)), _ref_cosine(p, 0.1, 0.1), atol=1e-6)


def test_cosine_landmarks():
  fn = schedules.cosine(warmup_frac=0.2, final_lr_frac=0.0)
  assert float(fn(0.0)) == 0.0
  np.testing.assert_allclose(float(fn(0.2)), 1.0, atol=1e-6)  # end of warm-up
  np.testing.assert_allclose(float(fn(0.6)), 0.5, atol=1e-6)  # middle of the decay
  np.testing.assert_allclose(float(fn(1.0)), 0.0, atol=1e-6)  # end


def test_linear_and_constant():
  lin = schedules.linear(warmup_frac=0.0, final_lr_frac=0.2)
  np.testing.assert_allclose([float(lin(p)) for p in (0, 0.5, 1)], [1.0, 0.6, 0.2], atol=1e-6)
  const = schedules.constant(warmup_frac=0.5)
  np.testing.assert_allclose([float(const(p)) for p in (0, 0.25, 0.5, 1)],
                             [0, 0.5, 1, 1], atol=1e-6)


def test_wsd_trapezoid():
  fn = schedules.wsd(warmup_frac=0.1, decay_frac=0.4, final_lr_frac=0.0)
  np.testing.assert_allclose(
      [float(fn(p)) for p in (0.05, 0.1, 0.5, 0.6, 0.8, 1.0)],
      [0.5, 1.0, 1.0, 1.0, 0.5, 0.0], atol=1e-6)


def test_clock_time_cap_binds():
  # Half the steps but all the time: progress is 1, so the decay is complete.
  assert schedules.progress(50, 100, train_time_s=10.0, max_time_s=10.0) == 1.0
  assert schedules.progress(50, 100, train_time_s=1.0, max_time_s=10.0) == 0.5
  assert schedules.progress(50, 100) == 0.5
  assert schedules.progress(10, 100, train_time_s=30.0, max_time_s=10.0) == 1.0
