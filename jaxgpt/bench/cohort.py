"""Vmapped cohort against the same trials one after another: training time of K proxies
(scripts/bench_cohort.py).

K trials of one config that differ in traced hyperparameters (learning rates spread over 4x,
momenta, seeds; one shared data order) are trained for the same number of steps:
  cohort      one vmapped program of K trials (`jaxgpt.sweep.cohort.CohortProgram`)
  sequential  the K trials one after another in this process, reusing ONE compiled K=1 program
              of the same code (each trial only swaps its hyperparameter arrays and state)
Compile time is reported apart; each timed run is preceded by one untimed warm-up step, and the
training batches are on the device before timing starts, so both sides time the steps alone.
Trials are a fixed list, so the sequential time for K is the sum over its first K trials. The
speedup is sequential / cohort training time; `plateau_k` is the K with the largest speedup.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import numpy as np
from absl import app

from jaxgpt import cli, data
from jaxgpt.bench import output
from jaxgpt.sweep import cohort as cohort_lib


def trial_configs(base, k: int) -> list:
  """K copies of `base` with distinct lr (0.5x .. 2x), momentum, seed; one data order."""
  out = []
  for i in range(k):
    c = base.copy_and_resolve_references()
    scale = 2.0 ** (2.0 * i / max(k - 1, 1) - 1.0)
    c.optimizer.lr = base.optimizer.lr * scale
    c.optimizer.momentum = (0.90, 0.95, 0.85, 0.98)[i % 4]
    c.train.update(seed=i, data_seed=0)
    out.append(c)
  return out


def time_steps(prog, train, configs, batches) -> float:
  """Seconds for len(batches) steps of `configs` on `prog` (init and one warm-up apart)."""
  k = len(configs)
  hp = prog.put(cohort_lib.stack_hparams(configs))
  state = prog.init([c.train.seed for c in configs], hp)
  alive = prog.put(np.ones((k,), bool))
  n = len(batches)
  progress = [prog.put(np.float32(s / n), prog.repl) for s in range(n)]
  state, alive, _ = train(state, hp, alive, batches[0], progress[0])  # warm-up
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for batch, p in zip(batches, progress):
    state, alive, m = train(state, hp, alive, batch, p)
  jax.block_until_ready((state, m))
  return time.perf_counter() - t0


def bench(config_arg: str, steps: int, ks: list[int], smoke: bool = False) -> dict:
  """Times cohorts of each K in `ks` against sequential runs; returns the JSON."""
  base = cli.load_config(config_arg)
  devices = jax.devices()[:1]
  trials = trial_configs(base, max(ks))
  solo = cohort_lib.cohort_program(trials[0], 1, True, devices)
  it = data.train_iterator(solo.run.spec, seq_len=base.data.seq_len,
                           global_batch_size=base.train.batch_size, seed=0)
  host_batches = [next(it) for _ in range(steps)]
  it.close()
  batches = [solo.put(b, solo.repl) for b in host_batches]
  train1, _, solo_compile = solo.compile(with_eval=False)
  seq_times = [time_steps(solo, train1, [c], batches) for c in trials]

  tokens_per_step = base.train.batch_size * base.data.seq_len
  rows = []
  for k in ks:
    prog = cohort_lib.cohort_program(trials[0], k, True, devices)
    train_k, _, compile_s = prog.compile(with_eval=False)
    if k == 1:  # the very program the sequential runs compiled
      compile_s = solo_compile
    cohort_s = time_steps(prog, train_k, trials[:k], batches)
    seq_s = sum(seq_times[:k])
    mem = train_k.memory_analysis()
    rows.append({
        "k": k, "cohort_compile_s": compile_s, "cohort_train_s": cohort_s,
        "sequential_train_s": seq_s, "speedup": seq_s / cohort_s,
        "cohort_tokens_per_s": k * steps * tokens_per_step / cohort_s,
        "sequential_tokens_per_s": k * steps * tokens_per_step / seq_s,
        "cohort_temp_bytes": getattr(mem, "temp_size_in_bytes", None),
        "cohort_argument_bytes": getattr(mem, "argument_size_in_bytes", None),
    })
  plateau = max(rows, key=lambda r: r["speedup"])["k"]  # the K with the largest gain

  return {
      "meta": {"config": config_arg, "steps": steps, "smoke": smoke,
               "tokens_per_step_per_trial": tokens_per_step, "backend": jax.default_backend(),
               "devices": [str(d) for d in devices], "jax": jax.__version__,
               "machine": platform.platform(), "cpu_count": os.cpu_count(),
               "sequential_compile_s": solo_compile},
      "rows": rows, "sequential_per_trial_s": seq_times, "plateau_k": plateau,
  }


TABLE = output.Table(
    output.Column("K", "k", width=3),
    output.Column("compile s", "cohort_compile_s", ".1f", width=10),
    output.Column("cohort s", "cohort_train_s", ".2f", width=9),
    output.Column("sequential s", "sequential_train_s", ".2f", width=13),
    output.Column("speedup", lambda r: f"{r['speedup']:.2f}x", width=8),
    output.Column("cohort tok/s", "cohort_tokens_per_s", ",.0f", width=13),
    output.Column("temp MiB", lambda r: None if r["cohort_temp_bytes"] is None
                  else r["cohort_temp_bytes"] / 2**20, ".1f", width=9))


def run(config_arg: str, steps: int, ks: list[int], smoke: bool = False,
        out: str | None = None) -> dict:
  """`bench`, printed as a table (and the K where the gain stops growing), written to `out`."""
  if not ks or min(ks) < 1:
    raise app.UsageError(f"--ks={','.join(map(str, ks))}: give cohort sizes >= 1, e.g. --ks=1,2,4")
  result = bench(config_arg, steps, ks, smoke)
  meta = result["meta"]
  output.emit(result, out, TABLE, result["rows"], title=(
      f"cohort vs sequential: {config_arg}, {steps} steps, {meta['tokens_per_step_per_trial']} "
      f"tokens/step per trial, {meta['backend']}; sequential K=1 compile "
      f"{meta['sequential_compile_s']:.1f}s (once)"))
  print(f"gain stops growing at K = {result['plateau_k']}")
  return result
