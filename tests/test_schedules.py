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


# ------------------------------------------------------------------------------------------
# Every schedule at start, end of warm-up, middle and end against its closed form.

def _ref(name, p, w=0.1, d=0.4, f=0.1):
  warm = p / w if p < w else None
  if name == "constant":
    return warm if warm is not None else 1.0
  if name == "cosine":
    return _ref_cosine(p, w, f)
  if name == "linear":
    return warm if warm is not None else 1.0 + (f - 1.0) * (p - w) / (1 - w)
  if name == "wsd":
    return warm if warm is not None else 1.0 if p <= 1 - d else 1.0 + (f - 1.0) * (p - 1 + d) / d
  if name == "tidal":  # 38.2% linear warm-up, then cosine over the remaining 61.8%
    return p / 0.382 if p < 0.382 else f + (1 - f) * 0.5 * (1 + math.cos(
        math.pi * (p - 0.382) / 0.618))
  raise KeyError(name)


class _Opt(dict):
  __getattr__ = dict.__getitem__


@pytest.mark.parametrize("name", schedules.SCHEDULES)
def test_schedule_landmarks_closed_form(name):
  opt = _Opt(schedule=name, warmup_frac=0.1, decay_frac=0.4, final_lr_frac=0.1)
  fn = schedules.from_config(opt)
  warm_end = 0.382 if name == "tidal" else 0.1
  middle = (warm_end + 1.0) / 2
  points = (0.0, warm_end / 2, warm_end, middle, 0.8, 1.0)
  got = [float(fn(p)) for p in points]
  np.testing.assert_allclose(got, [_ref(name, p) for p in points], atol=1e-6)
  assert got[0] == 0.0 and abs(got[2] - 1.0) < 1e-6  # starts at 0, peaks at the warm-up's end
  want_end = 1.0 if name == "constant" else 0.1
  np.testing.assert_allclose(got[-1], want_end, atol=1e-6)  # the decay is complete at p = 1


def test_tidal_midpoint_and_unknown_schedule():
  fn = schedules.tidal(final_lr_frac=0.0)
  np.testing.assert_allclose(float(fn(0.382 + 0.618 / 2)), 0.5, atol=1e-6)  # cosine half-way
  np.testing.assert_allclose(float(fn(0.191)), 0.5, atol=1e-6)  # warm-up half-way
  with pytest.raises(ValueError, match=r"optimizer.schedule='tide'.*tidal"):
    schedules.from_config(_Opt(schedule="tide", warmup_frac=0.0, decay_frac=0.2,
                               final_lr_frac=0.0))
