"""Training throughput of a config: tokens/s of the real training loop over timed steps
(scripts/bench_train.py). Runs in a temporary workdir with evaluation and checkpoints pushed
past the end, so the figure is the loop's own (data pipeline and per-step host work included,
compile and evaluation excluded).
"""

from __future__ import annotations

import tempfile
from typing import Sequence

import jax

from jaxgpt import cli
from jaxgpt.bench import args, output
from jaxgpt.train.run import train_and_evaluate

TABLE = output.Table(
    output.Column("config", "config", width=47, left=True),
    output.Column("tokens/step", "tokens_per_step", ",", width=11),
    output.Column("tokens/s", "tokens_per_s", ",.0f", width=11),
    output.Column("ms/step", "step_time_ms", ".1f", width=9),
    output.Column("TFLOP/s", "model_tflops_per_s", ".3f", width=8))


def bench(config_arg: str, steps: int, sets: Sequence[str] = ()) -> dict:
  """Trains `config_arg` (with `sets`, KEY=VALUE strings, applied) for `steps` steps; returns
  the table's row."""
  overrides = {**args.parse_sets(config_arg, sets), "train.steps": steps,
               "train.eval_every": 10**9, "train.log_every": max(1, steps // 5),
               "train.checkpoint_every": 10**9, "train.progress_bar": False}
  cfg = cli.load_config(config_arg, overrides)
  with tempfile.TemporaryDirectory() as workdir:
    s = train_and_evaluate(cfg, workdir)
  return {
      "config": config_arg + "".join(f" {o}" for o in sets), "steps": steps,
      "tokens_per_step": s["tokens_per_step"],
      "num_params": s["num_params"], "tokens_per_s": s["tokens_per_s"],
      "step_time_ms": 1e3 * s["train_time_s"] / max(1, steps),
      "compile_time_s": s["compile_time_s"],
      "model_tflops_per_s": s["tokens_per_s"] * s["flops_per_token"] / 1e12,
      "backend": jax.default_backend(), "devices": jax.device_count(),
      "machine": output.machine(),
  }


def run(config_arg: str, steps: int, sets: Sequence[str] = (), out: str | None = None) -> dict:
  """`bench`, printed as a table and written to `out`."""
  row = bench(config_arg, steps, sets)
  output.emit(row, out, TABLE, [row])
  return row
