"""The config checks every module uses: each raises `ConfigError` with one line naming the key,
the bad value and what is allowed (`optimizer.ns_steps=0 must be an integer >= 1`), and returns
the value when it is fine.

A leaf helper: it imports nothing of jaxgpt but `errors`, so any module may use it. `bool` is a
subclass of `int` in Python, but True is never a count or a learning rate: the integer and
number checks refuse bools. Each allowed-value list lives in the module that owns the concept
(`models.dims.COMPUTE_DTYPES`, `parallel.distributed.MODES`, ...), never here.
"""

from __future__ import annotations

from typing import Any, Iterable

from jaxgpt.errors import ConfigError


def is_integer(value: Any) -> bool:
  """An int that is not a bool."""
  return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
  """An int or float that is not a bool."""
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _or_none(rule: str, allow_none: bool) -> str:
  return f"{rule} or None" if allow_none else rule


def one_of(key: str, value: Any, allowed: Iterable[Any]) -> Any:
  """`value` if it is one of `allowed`, else `key=value is not allowed; choose one of (...)`."""
  allowed = tuple(allowed)
  if value not in allowed:
    raise ConfigError(f"{key}={value!r} is not allowed; choose one of {allowed}")
  return value


def integer(key: str, value: Any, minimum: int | None = None, maximum: int | None = None, *,
            allow_none: bool = False) -> Any:
  """`value` if it is an integer (not a bool) in [minimum, maximum] (a None bound: no bound),
  or None when `allow_none`."""
  if value is None and allow_none:
    return value
  if not (is_integer(value) and (minimum is None or value >= minimum)
          and (maximum is None or value <= maximum)):
    if minimum is not None and maximum is not None:
      rule = f"an integer in [{minimum}, {maximum}]"
    elif minimum is not None:
      rule = f"an integer >= {minimum}"
    elif maximum is not None:
      rule = f"an integer <= {maximum}"
    else:
      rule = "an integer"
    raise ConfigError(f"{key}={value!r} must be {_or_none(rule, allow_none)}")
  return value


def number(key: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, allow_none: bool = False) -> Any:
  """`value` if it is an int or float (not a bool) within the bounds (`low_open`: > low, else
  >= low; `high_open`: < high, else <= high; a None bound: no bound), or None when
  `allow_none`."""
  if value is None and allow_none:
    return value
  ok = is_number(value)
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    bounds = []
    if low is not None:
      bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
      bounds.append(f"{'<' if high_open else '<='} {high}")
    rule = " and ".join(bounds)
    rule = f"a number {rule}" if rule else "a number"
    raise ConfigError(f"{key}={value!r} must be {_or_none(rule, allow_none)}")
  return value


def positive(key: str, value: Any, *, allow_zero: bool = False, allow_none: bool = False) -> Any:
  """`value` if it is a number (not a bool) > 0 (>= 0 with `allow_zero`), or None when
  `allow_none`."""
  return number(key, value, 0, low_open=not allow_zero, allow_none=allow_none)


def fraction(key: str, value: Any) -> Any:
  """`value` if it is a number (not a bool) in [0, 1]."""
  if not (is_number(value) and 0 <= value <= 1):
    raise ConfigError(f"{key}={value!r} must be a fraction in [0, 1]")
  return value


def boolean(key: str, value: Any) -> bool:
  """`value` if it is True or False (not 0, 1 or a string)."""
  if not isinstance(value, bool):
    raise ConfigError(f"{key}={value!r} must be True or False")
  return value
