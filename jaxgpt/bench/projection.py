"""Cost of nGPT's projection onto the hypersphere as a share of the train step
(scripts/bench_projection.py).

Times the compiled train step of the config (projection disabled: `optimizer.lazy_proj_freq`
pushed past the timed steps, so `lax.cond` never takes the projecting branch) and the jitted
projection of the same parameters alone, each the median of `reps` calls after a warm-up; the
projection's share of a step with lazy projection every k steps is
`project_ms / (k * step_ms + project_ms)`.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app

from jaxgpt import cli, models
from jaxgpt.bench import output, timing
from jaxgpt.train import run as run_lib
from jaxgpt.train import setup


def bench(config_arg: str, reps: int, ks: list[int]) -> dict:
  """Times the train step (no projection) and the projection alone; returns the table's row."""
  cfg = cli.load_config(config_arg, {"optimizer.lazy_proj_freq": 10**9})  # never projects
  project = models.projection(cfg.model)
  if project is None:
    raise app.UsageError(f"{config_arg}: model.name={cfg.model.name!r} has no projection")
  built = setup.build(cfg)
  program = run_lib.SingleRun(cfg, built)  # the training loop's own compiled step
  program.compile()
  b, t = cfg.train.batch_size, cfg.data.seq_len
  batch = {k: np.zeros((b, t), np.int32) for k in ("inputs", "targets")}
  holder = {"state": built.init_state()}

  def step():
    holder["state"], _ = program.step(holder["state"], batch, 0.5)
    return holder["state"]

  step_s = timing.median_seconds(step, reps)
  params = holder["state"].params
  with built.context():
    proj = jax.jit(project)
    proj_s = timing.median_seconds(lambda: proj(params), reps)
  return {"config": config_arg, "tokens_per_step": b * t, "step_ms": 1e3 * step_s,
          "project_ms": 1e3 * proj_s,
          "share": {str(k): proj_s / (k * step_s + proj_s) for k in ks},
          "num_params": models.count_params(params), "backend": jax.default_backend(),
          "machine": output.machine(), "reps": reps}


def table(ks: list[int]) -> output.Table:
  shares = [output.Column(f"share k={k}", lambda r, k=k: r["share"][str(k)], ".2%", width=13)
            for k in ks]
  return output.Table(output.Column("config", "config", width=35, left=True),
                      output.Column("ms/step (no proj)", "step_ms", ".1f", width=17),
                      output.Column("ms/projection", "project_ms", ".2f", width=14), *shares)


def run(config_arg: str, reps: int, ks: list[int], out: str | None = None) -> dict:
  """`bench`, printed as a table (shares in %) and written to `out`."""
  row = bench(config_arg, reps, ks)
  output.emit(row, out, table(ks), [row])
  return row
