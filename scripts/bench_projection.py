"""Cost of nGPT's projection onto the hypersphere as a share of the train step.

  python scripts/bench_projection.py --config configs/gated_ngpt.py:cpu --ks=1,7 --out proj.json
  python scripts/bench_projection.py --smoke          # tiny, for the tests

Times the compiled train step of the config (projection disabled: `optimizer.lazy_proj_freq`
pushed past the timed steps, so `lax.cond` never takes the projecting branch) and the jitted
projection of the same parameters alone, each over `--reps` calls after a warm-up; the
projection's share of a step with lazy projection every k steps is
`project_ms / (k * step_ms + project_ms)`. Prints a table and writes JSON.
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import numpy as np
from absl import app, flags

from jaxgpt import cli, models
from jaxgpt.train import loop, setup

_CONFIG = flags.DEFINE_string("config", "configs/gated_ngpt.py:cpu", "Config file[:variants].")
_REPS = flags.DEFINE_integer("reps", 30, "Timed calls of each, after a warm-up.", lower_bound=1)
_KS = cli.define_int_list("ks", [1, 7], "Lazy projection every k steps: the shares to report, "
                          "e.g. --ks=1,7.")
_OUT = flags.DEFINE_string("out", None, "JSON output path.")
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny run for tests (configs/gated_ngpt.py:test).")


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


def bench(config_arg: str, reps: int, ks: list[int]) -> dict:
  """Times the train step (no projection) and the projection alone; returns the table's row."""
  cfg = cli.load_config(config_arg, {"optimizer.lazy_proj_freq": 10**9})  # never projects
  project = models.projection(cfg.model)
  if project is None:
    raise app.UsageError(f"{config_arg}: model.name={cfg.model.name!r} has no projection")
  run = setup.build(cfg)
  state = run.init_state()
  program = loop.SingleRun(cfg, run)  # the training loop's own compiled step
  program.compile()
  b, t = cfg.train.batch_size, cfg.data.seq_len
  batch = {k: np.zeros((b, t), np.int32) for k in ("inputs", "targets")}
  holder = {"state": state}

  def step():
    holder["state"], m = program.step(holder["state"], batch, 0.5)
    jax.block_until_ready(holder["state"])

  step_s = _time(step, reps)
  params = holder["state"].params
  with run.context():
    proj = jax.jit(project)
    proj_s = _time(lambda: jax.block_until_ready(proj(params)), reps)
  row = {"config": config_arg, "tokens_per_step": b * t, "step_ms": 1e3 * step_s,
         "project_ms": 1e3 * proj_s,
         "share": {str(k): proj_s / (k * step_s + proj_s) for k in ks},
         "num_params": models.count_params(params), "backend": jax.default_backend(),
         "machine": f"{platform.machine()} {os.cpu_count()} cpus", "reps": reps}
  return row


def main(argv):
  cli.no_arguments(argv)
  config_arg, reps, ks = _CONFIG.value, _REPS.value, _KS.value
  if _SMOKE.value:
    config_arg, reps = "configs/gated_ngpt.py:test", 2
  if min(ks, default=0) < 1:
    raise app.UsageError(f"--ks={','.join(map(str, ks))}: give projection intervals >= 1")
  row = bench(config_arg, reps, ks)
  print(f"{'config':<36}{'ms/step (no proj)':>18}{'ms/projection':>15}"
        + "".join(f"{'share k=' + str(k):>14}" for k in ks))
  print(f"{config_arg:<36}{row['step_ms']:>18.1f}{row['project_ms']:>15.2f}"
        + "".join(f"{100 * row['share'][str(k)]:>13.2f}%" for k in ks))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(row, f, indent=2)
  return 0


if __name__ == "__main__":
  cli.run(main)
