"""Vmapped cohort vs the same trials one after another: training time of K proxies.

  python scripts/bench_cohort.py --config configs/gpt.py:cpu --steps 30 --out bench_cohort.json
  python scripts/bench_cohort.py --smoke --out /tmp/bench_cohort.json   # tiny, for the tests

K trials of one config that differ in traced hyperparameters (learning rates spread over 4x,
momenta, seeds; one shared data order) are trained for the same --steps:
  cohort      one vmapped program of K trials (`jaxgpt.sweep.cohort.CohortProgram`)
  sequential  the K trials one after another in this process, reusing ONE compiled K=1 program
              of the same code (each trial only swaps its hyperparameter arrays and state)
Compile time is reported apart; each timed run is preceded by one untimed warm-up step, and the
training batches are on the device before timing starts, so both sides time the steps alone.
Trials are a fixed list, so the sequential time for K is the sum over its first K trials.
The speedup is sequential / cohort training time; the table names the K at which it stops
growing (the K with the largest speedup). Prints a table and writes JSON (with the compiled
cohort step's memory analysis).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))


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
  import jax
  import numpy as np
  from jaxgpt.sweep import cohort

  k = len(configs)
  hp = prog.put(cohort.stack_hparams(configs))
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


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/gpt.py:cpu")
  ap.add_argument("--steps", type=int, default=30)
  ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
  ap.add_argument("--out", default=None, help="JSON output path")
  ap.add_argument("--smoke", action="store_true", help="tiny run for tests")
  args = ap.parse_args(argv)
  if args.smoke:
    args.config, args.steps, args.ks = "configs/gpt.py:test", 3, [1, 2]

  import jax
  from bench_train import load_config
  from jaxgpt import data
  from jaxgpt.sweep import cohort

  base = load_config(args.config)
  devices = jax.devices()[:1]
  trials = trial_configs(base, max(args.ks))
  solo = cohort.cohort_program(trials[0], 1, True, devices)
  it = data.train_iterator(solo.run.spec, seq_len=base.data.seq_len,
                           global_batch_size=base.train.batch_size, seed=0)
  host_batches = [next(it) for _ in range(args.steps)]
  it.close()
  batches = [solo.put(b, solo.repl) for b in host_batches]
  train1, _, solo_compile = solo.compile(with_eval=False)
  seq_times = [time_steps(solo, train1, [c], batches) for c in trials]

  tokens_per_step = base.train.batch_size * base.data.seq_len
  rows = []
  for k in args.ks:
    prog = cohort.cohort_program(trials[0], k, True, devices)
    train_k, _, compile_s = prog.compile(with_eval=False)
    if k == 1:  # the very program the sequential runs compiled
      compile_s = solo_compile
    cohort_s = time_steps(prog, train_k, trials[:k], batches)
    seq_s = sum(seq_times[:k])
    mem = train_k.memory_analysis()
    rows.append({
        "k": k, "cohort_compile_s": compile_s, "cohort_train_s": cohort_s,
        "sequential_train_s": seq_s, "speedup": seq_s / cohort_s,
        "cohort_tokens_per_s": k * args.steps * tokens_per_step / cohort_s,
        "sequential_tokens_per_s": k * args.steps * tokens_per_step / seq_s,
        "cohort_temp_bytes": getattr(mem, "temp_size_in_bytes", None),
        "cohort_argument_bytes": getattr(mem, "argument_size_in_bytes", None),
    })
  plateau = max(rows, key=lambda r: r["speedup"])["k"]  # the K with the largest gain

  print(f"cohort vs sequential: {args.config}, {args.steps} steps, {tokens_per_step} tokens/step "
        f"per trial, {jax.default_backend()}; sequential K=1 compile {solo_compile:.1f}s (once)")
  print(f"{'K':>3} {'compile s':>10} {'cohort s':>9} {'sequential s':>13} {'speedup':>8} "
        f"{'cohort tok/s':>13} {'temp MiB':>9}")
  for r in rows:
    temp = r["cohort_temp_bytes"]
    print(f"{r['k']:>3} {r['cohort_compile_s']:>10.1f} {r['cohort_train_s']:>9.2f} "
          f"{r['sequential_train_s']:>13.2f} {r['speedup']:>7.2f}x "
          f"{r['cohort_tokens_per_s']:>13,.0f} "
          f"{temp / 2**20 if temp is not None else float('nan'):>9.1f}")
  print(f"gain stops growing at K = {plateau}")
  result = {
      "meta": {"config": args.config, "steps": args.steps, "smoke": args.smoke,
               "tokens_per_step_per_trial": tokens_per_step, "backend": jax.default_backend(),
               "devices": [str(d) for d in devices], "jax": jax.__version__,
               "machine": platform.platform(), "cpu_count": os.cpu_count(),
               "sequential_compile_s": solo_compile},
      "rows": rows, "sequential_per_trial_s": seq_times, "plateau_k": plateau,
  }
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main()
