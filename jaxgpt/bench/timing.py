"""Timers for the benchmarks. Every timed call is waited for (`jax.block_until_ready`); the
first call of a compiled function (compilation, first allocations) is never in a figure.

- `median_seconds`: the median of N single calls after a warm-up.
- `mean_seconds`: N calls back to back (dispatch pipelined), waited for once, per call.
- `interleaved`: several cases timed in rounds, one call of each per round, so that a slow
  spell on a shared machine hits every case alike.
- `time_calls`: calls of a carried function in rounds sized to take a given time (GPU check).
- `compiled_cost`: XLA's cost analysis of a compiled function, as one dict.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax


def seconds(fn: Callable[..., Any], *args) -> float:
  """Seconds of one call of fn(*args), waited for."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def median_seconds(fn: Callable[..., Any], reps: int, warmup: int = 1,
                   setup: Callable[[], tuple] | None = None) -> float:
  """Median seconds of fn(*setup()) over `reps` calls after `warmup` untimed ones; `setup`
  (untimed) makes each call's arguments, e.g. fresh buffers for a donating function."""
  times = [seconds(fn, *(setup() if setup else ())) for _ in range(warmup + reps)]
  return statistics.median(times[warmup:])


def mean_seconds(fn: Callable[..., Any], *args, reps: int) -> float:
  """Seconds per call of fn(*args): one untimed call (compile), then `reps` calls back to back,
  waited for once at the end."""
  jax.block_until_ready(fn(*args))
  t0 = time.perf_counter()
  for _ in range(reps):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t0) / reps


def interleaved(cases: dict[str, Callable[[], Any]], rounds: int
                ) -> tuple[dict[str, float], dict[str, list[float]]]:
  """Times every case once per round, round-robin (case 1, 2, ..., 1, 2, ...), after one untimed
  call of each. Returns ({case: seconds of its first call}, {case: seconds of each round})."""
  first = {name: seconds(fn) for name, fn in cases.items()}
  times: dict[str, list[float]] = {name: [] for name in cases}
  for _ in range(rounds):
    for name, fn in cases.items():
      times[name].append(seconds(fn))
  return first, times


def time_calls(fn: Callable[[Any, int], Any], carry: Any, seconds_total: float, max_calls: int,
               rounds: int = 3) -> tuple[Any, dict]:
  """Seconds per call of `carry = fn(carry, i)`: two untimed calls (the first run's
  allocations and autotuning stay out), then `rounds` rounds of n calls, n sized so that the
  rounds take about `seconds_total` together, each ended by block_until_ready. The median round
  is the figure; min and max show the spread."""
  for i in range(2):
    t0 = time.perf_counter()
    carry = fn(carry, i)
    jax.block_until_ready(carry)
  one = time.perf_counter() - t0
  n = int(min(max_calls, max(2, seconds_total / rounds / max(one, 1e-6))))
  per = []
  for _ in range(rounds):
    t0 = time.perf_counter()
    for i in range(n):
      carry = fn(carry, i)
    jax.block_until_ready(carry)
    per.append((time.perf_counter() - t0) / n)
  return carry, {"s_per_call": statistics.median(per), "s_per_call_min": min(per),
                 "s_per_call_max": max(per), "calls_per_round": n, "rounds": rounds}


def compiled_cost(compiled) -> dict:
  """`compiled.cost_analysis()` as one dict (some jax versions return a list of one)."""
  cost = compiled.cost_analysis()
  return dict((cost[0] if isinstance(cost, (list, tuple)) else cost) or {})


def compiled_flops(compiled) -> float:
  """The compiled program's FLOPs by XLA's cost analysis (NaN where it gives none)."""
  return float(compiled_cost(compiled).get("flops", float("nan")))
