"""Titans against GPT (scripts/bench_titans.py) at equal training time,
and the memory branch's cost per token.

1. Equal time: `titans.py:cpu` (and `titans.py:cpu,mag`) and `gpt.py:cpu`, each trained until
   `train.max_time_s = --seconds` of training clock (the schedule follows the clock, so each
   run completes its decay), then scored on the whole validation split: val_bpb, tokens/s,
   steps, and the process time each run took (compile and evaluation included).
2. Memory cost: for the titans cpu shapes, the jitted forward + backward of one block's memory
   branch alone (projections, chunked writes, reads, read-out; gradients w.r.t. its parameters)
   against the whole model's forward + backward, both per token.

Timings need a quiet machine; the smoke size only checks that the code runs.
"""

from __future__ import annotations

import platform
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.bench import output, timing
from jaxgpt.models.titans import model as titans
from jaxgpt.train.run import train_and_evaluate

RUNS = (("titans_mac", "configs/titans.py:cpu"), ("titans_mag", "configs/titans.py:cpu,mag"),
        ("gpt", "configs/gpt.py:cpu"))
KEYS = ("val_bpb", "final_val_loss", "tokens_per_s", "steps", "train_time_s", "wall_time_s",
        "num_params")


def equal_time(seconds: float, smoke: bool, on_row=lambda rows: None) -> list[dict]:
  """One row per run; `on_row(rows so far)` after each (the long runs are saved as they end)."""
  rows = []
  # Smoke: one run (each run ends with a whole-validation-split evaluation, the slow part).
  for name, arg in RUNS[:1] if smoke else RUNS:
    c = config_lib.load(arg.replace(":cpu", ":test") if smoke else arg)
    c.train.update(steps=6 if smoke else 1_000_000, max_time_s=seconds, progress_bar=False)
    if not smoke:
      c.train.update(eval_every=1_000_000)  # only the final evaluation: time goes to training
    with tempfile.TemporaryDirectory() as workdir:
      start = time.perf_counter()
      summary = train_and_evaluate(c, workdir)
      process_s = time.perf_counter() - start
    rows.append({"run": name, "config": arg, **{k: summary.get(k) for k in KEYS},
                 "process_s": process_s})
    on_row(rows)
  return rows


def memory_cost(smoke: bool, reps: int) -> dict:
  """One block's memory branch (forward + backward) against the whole model's, per token."""
  c = config_lib.load("configs/titans.py:test" if smoke else "configs/titans.py:cpu")
  if smoke:  # the cpu variant's layer layout (unrolled), at the test size
    c.model.scan_layers = config_lib.load("configs/titans.py:cpu").model.scan_layers
  cfg = titans.TitansConfig.from_config(c.model, 256)
  b, t = c.train.batch_size, c.data.seq_len
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, 256, (b, t + 1)), jnp.int32)
  model = models.build_model(c.model, 256)
  params = nn.unbox(model.init(jax.random.PRNGKey(0), tokens[:1, :t])["params"])

  def model_loss(p):
    logits = model.apply({"params": p}, tokens[:, :t])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  # One block's memory parameters (layer 0, scanned stack or unrolled) and a normalised input.
  mp = (jax.tree.map(lambda x: x[0], params["blocks"]["memory"]) if "blocks" in params
        else dict(params["blocks_0"]["memory"]))  # a copy: popped below
  mp["init"] = tuple(mp.pop(f"init_{i}") for i in range(cfg.memory.layers))
  mp = {k: (v["kernel"] if isinstance(v, dict) and "kernel" in v else
            v["scale"] if isinstance(v, dict) else v) for k, v in mp.items()}
  u = jnp.asarray(rng.normal(size=(b, t, cfg.d_model)), jnp.float32)

  def memory_loss(mp):
    _, r = titans.write_and_read(mp, titans.initial_state(mp, b), u, cfg)
    return jnp.mean(jnp.square(r))

  step_s = timing.mean_seconds(jax.jit(jax.grad(model_loss)), params, reps=reps)
  mem_s = timing.mean_seconds(jax.jit(jax.grad(memory_loss)), mp, reps=reps)
  n = b * t
  return {"tokens": n, "model_us_per_token": 1e6 * step_s / n,
          "memory_branch_us_per_token_per_layer": 1e6 * mem_s / n,
          "layers": cfg.num_layers,
          "memory_share": cfg.num_layers * mem_s / step_s,
          "flops_per_token_estimate": titans.flops_per_token(cfg, t)}


TABLE = output.Table(
    output.Column("run", "run", width=12, left=True),
    output.Column("val_bpb", "val_bpb", ".3f", width=8),
    output.Column("tokens/s", "tokens_per_s", ".0f", width=9),
    output.Column("steps", "steps", "d", width=6),
    output.Column("process_s", "process_s", ".1f", width=10))


def run(seconds: float, reps: int, smoke: bool = False, out: str | None = None) -> dict:
  """The memory cost (fast: first), then the equal-time runs, the JSON rewritten to `out` after
  each run; prints the table and the memory branch's share."""
  cost = memory_cost(smoke, reps)

  def result(rows):
    return {"seconds": seconds, "smoke": smoke, "backend": jax.default_backend(),
            "machine": platform.machine(), "runs": rows, "memory_cost": cost}

  rows = equal_time(seconds, smoke, lambda rows: output.write_json(out, result(rows)))
  output.emit(result(rows), out, TABLE, rows, title=(
      f"equal training time ({seconds:g} s each; {jax.default_backend()}, "
      f"{platform.processor() or platform.machine()}):"))
  print(f"memory branch: {cost['memory_branch_us_per_token_per_layer']:.1f} us/token/layer "
        f"(fwd+bwd), model {cost['model_us_per_token']:.1f} us/token; "
        f"{cost['layers']} layers x branch = {100 * cost['memory_share']:.0f}% of the step")
  return result(rows)
