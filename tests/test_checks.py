"""jaxgpt.checks: each check passes good values through and refuses bad ones with one line
naming the key, the value and the rule; bools are never integers or numbers."""

import re

import pytest

from jaxgpt import checks
from jaxgpt.errors import ConfigError


def refused(fn, *args, **kwargs) -> str:
  """The one-line message `fn(*args, **kwargs)` raises."""
  with pytest.raises(ConfigError) as e:
    fn(*args, **kwargs)
  message = str(e.value)
  assert "\n" not in message
  return message


def test_is_integer_and_is_number_refuse_bools():
  assert checks.is_integer(3) and checks.is_integer(-1)
  assert not any(checks.is_integer(v) for v in (True, False, 3.0, "3", None))
  assert checks.is_number(3) and checks.is_number(0.5)
  assert not any(checks.is_number(v) for v in (True, False, "0.5", None))


def test_one_of():
  assert checks.one_of("k.x", "b", ("a", "b")) == "b"
  assert checks.one_of("k.x", None, (None, "a")) is None
  assert checks.one_of("k.x", "a", iter(["a"])) == "a"  # any iterable
  assert refused(checks.one_of, "k.x", "c", ["a", "b"]) == (
      "k.x='c' is not allowed; choose one of ('a', 'b')")


def test_integer():
  assert checks.integer("k.n", 0, 0) == 0
  assert checks.integer("k.n", 5, 1, 5) == 5
  assert checks.integer("k.n", -7) == -7  # no bounds
  assert checks.integer("k.n", None, 1, allow_none=True) is None
  assert refused(checks.integer, "k.n", 0, 1) == "k.n=0 must be an integer >= 1"
  assert refused(checks.integer, "k.n", True, 0) == "k.n=True must be an integer >= 0"
  assert refused(checks.integer, "k.n", 2.0, 1) == "k.n=2.0 must be an integer >= 1"
  assert refused(checks.integer, "k.n", 6, 1, 5) == "k.n=6 must be an integer in [1, 5]"
  assert refused(checks.integer, "k.n", 6, None, 5) == "k.n=6 must be an integer <= 5"
  assert refused(checks.integer, "k.n", "1") == "k.n='1' must be an integer"
  assert refused(checks.integer, "k.n", None, 1) == "k.n=None must be an integer >= 1"
  assert refused(checks.integer, "k.n", 0, 1, allow_none=True) == (
      "k.n=0 must be an integer >= 1 or None")


def test_number():
  assert checks.number("k.v", 0.0, 0.0) == 0.0
  assert checks.number("k.v", 1, 0, 1) == 1
  assert checks.number("k.v", -3.5) == -3.5
  assert checks.number("k.v", None, 0, allow_none=True) is None
  assert refused(checks.number, "k.v", 0.0, 0.0, low_open=True) == "k.v=0.0 must be a number > 0.0"
  assert refused(checks.number, "k.v", 1.0, 0.0, 1.0, low_open=True, high_open=True) == (
      "k.v=1.0 must be a number > 0.0 and < 1.0")
  assert refused(checks.number, "k.v", 2, None, 1) == "k.v=2 must be a number <= 1"
  assert refused(checks.number, "k.v", True) == "k.v=True must be a number"
  assert refused(checks.number, "k.v", "x", 0, allow_none=True) == (
      "k.v='x' must be a number >= 0 or None")


def test_positive():
  assert checks.positive("k.lr", 1e-9) == 1e-9
  assert checks.positive("k.wd", 0, allow_zero=True) == 0
  assert checks.positive("k.lr", None, allow_none=True) is None
  assert refused(checks.positive, "k.lr", 0) == "k.lr=0 must be a number > 0"
  assert refused(checks.positive, "k.wd", -0.1, allow_zero=True) == (
      "k.wd=-0.1 must be a number >= 0")
  assert refused(checks.positive, "k.lr", True) == "k.lr=True must be a number > 0"
  assert refused(checks.positive, "k.lr", None) == "k.lr=None must be a number > 0"
  assert re.search(r"or None$", refused(checks.positive, "k.lr", -1, allow_none=True))


def test_fraction():
  assert checks.fraction("k.f", 0) == 0 and checks.fraction("k.f", 1.0) == 1.0
  for bad in (-0.01, 1.01, True, None, "0.5"):
    assert refused(checks.fraction, "k.f", bad) == f"k.f={bad!r} must be a fraction in [0, 1]"


def test_boolean():
  assert checks.boolean("k.b", True) is True and checks.boolean("k.b", False) is False
  for bad in (0, 1, "True", None):
    assert refused(checks.boolean, "k.b", bad) == f"k.b={bad!r} must be True or False"
