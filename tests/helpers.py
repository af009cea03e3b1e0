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


# Hamlet III.1 (public domain): a text the tokenizer tests encode.
HAMLET = """To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die-to sleep,
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to: 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep, perchance to dream-ay, there's the rub:
For in that sleep of death what dreams may come,
When we have shuffled off this mortal coil,
Must give us pause-there's the respect
That makes calamity of so long life.
"""
