"""Scalars an optimizer state asks to log (e.g. a learned optimizer's LR multipliers).

Any node of an optimizer state with a `log_metrics()` method (a NamedTuple state may define
one) contributes its {name: scalar} to the train step's metrics; states without one add
nothing, so the step of every other optimizer is unchanged.
"""

from __future__ import annotations

from typing import Any

import jax


def _logs(x) -> bool:
  return callable(getattr(x, "log_metrics", None)) and not isinstance(x, type)


def state_metrics(opt_state: Any) -> dict:
  out: dict = {}
  for node in jax.tree.leaves(opt_state, is_leaf=_logs):
    if _logs(node):
      out.update(node.log_metrics())
  return out
