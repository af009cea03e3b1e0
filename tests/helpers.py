"""Shared test helpers: load a config file by name with variants and overrides; take and compare
batches of a data iterator."""

import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, variants: str = "", **overrides):
  """configs/<name>.py:get_config(variants), then dotted overrides like train__steps=3."""
  spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config(variants)
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c


def take(it, n):
  """The next n batches of an iterator."""
  return [next(it) for _ in range(n)]


def assert_same_batches(batches_a, batches_b):
  """Two lists of batches with equal inputs and targets."""
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    for k in ("inputs", "targets"):
      np.testing.assert_array_equal(a[k], b[k])
