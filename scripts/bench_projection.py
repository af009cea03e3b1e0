"""Cost of nGPT's projection onto the hypersphere as a share of the train step.

  python scripts/bench_projection.py --config configs/gated_ngpt.py:cpu --out proj.json
  python scripts/bench_projection.py --smoke          # tiny, for the tests

Times the compiled train step of the config (projection disabled: `lazy_proj_freq` pushed past
the timed steps, so `lax.cond` never takes the projecting branch) and the jitted projection of
the same parameters alone, each over `--reps` calls after a warm-up; the projection's share of a
step with lazy projection every k steps is `project_ms / (k * step_ms + project_ms)`. Prints a
table and writes JSON.
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


def _time(fn, reps: int) -> float:
  """Median seconds per call of fn() (which must block until its result is ready)."""
  fn()  # warm-up
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  times.sort()
  return times[len(times) // 2]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="configs/gated_ngpt.py:cpu")
  ap.add_argument("--reps", type=int, default=30)
  ap.add_argument("--ks", type=int, nargs="+", default=[1, 7])
  ap.add_argument("--out", default=None, help="JSON output path")
  ap.add_argument("--smoke", action="store_true", help="tiny run for tests")
  args = ap.parse_args(argv)
  if args.smoke:
    args.config, args.reps = "configs/gated_ngpt.py:test", 2

  import jax
  import jax.numpy as jnp
  from bench_train import load_config
  from jaxgpt import models
  from jaxgpt.train import loop, setup

  cfg = load_config(args.config)
  cfg.unlock()
  cfg.model.lazy_proj_freq = 10**9  # the timed steps never project
  project = models.projection(cfg.model)
  if project is None:
    raise SystemExit(f"model.name={cfg.model.name!r} has no projection")
  run = setup.build(cfg)
  state = run.init_state()
  train_step, _, _ = loop._compile(run, None)  # noqa: SLF001 (the loop's own compiled step)
  b, t = cfg.train.batch_size, cfg.data.seq_len
  batch = {k: jnp.zeros((b, t), jnp.int32) for k in ("inputs", "targets")}
  progress = jnp.float32(0.5)
  holder = {"state": state}

  def step():
    holder["state"], m = train_step(holder["state"], batch, progress)
    jax.block_until_ready(holder["state"])

  step_s = _time(step, args.reps)
  params = holder["state"].params
  with run.context():
    proj = jax.jit(project)
    proj_s = _time(lambda: jax.block_until_ready(proj(params)), args.reps)
  row = {"config": args.config, "tokens_per_step": b * t, "step_ms": 1e3 * step_s,
         "project_ms": 1e3 * proj_s,
         "share": {str(k): proj_s / (k * step_s + proj_s) for k in args.ks},
         "num_params": models.count_params(params), "backend": jax.default_backend(),
         "machine": f"{platform.machine()} {os.cpu_count()} cpus", "reps": args.reps}
  print(f"{'config':<36}{'ms/step (no proj)':>18}{'ms/projection':>15}"
        + "".join(f"{'share k=' + str(k):>14}" for k in args.ks))
  print(f"{args.config:<36}{row['step_ms']:>18.1f}{row['project_ms']:>15.2f}"
        + "".join(f"{100 * row['share'][str(k)]:>13.2f}%" for k in args.ks))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(row, f, indent=2)
  return row


if __name__ == "__main__":
  main()
