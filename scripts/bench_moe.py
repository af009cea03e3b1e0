"""MoE cost: training tokens/s of `configs/moe.py:cpu` per dispatch against the dense GPT of
equal active parameters, and each dispatch's FLOPs from XLA's compiled cost analysis.

  python scripts/bench_moe.py --steps 60 --out moe_bench.json
  python scripts/bench_moe.py --smoke          # tiny, for the tests

Rows:
- `moe/<dispatch>`: the MoE config with `model.moe.dispatch` set (dense, capacity, ragged);
- `gpt dense (equal active)`: the same config as a plain GPT whose MLP is as wide as the k
  active experts together (mlp_mult = top_k x the expert's), i.e. the same per-token matmul
  parameters but the router.
Columns: tokens/s of the real training loop (data pipeline included, compile and eval
excluded), the train step's compiled FLOPs per token, and the MoE layer's forward FLOPs
relative to the active experts' matmuls (2 T k (2 d f) per layer; 1.0 = no waste; dense
dispatch pays E / k, CPU ragged_dot expands to E).
"""

from __future__ import annotations

import json
import os
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_train  # noqa: E402 - sibling script, found through the path set just above

from jaxgpt import cli, models  # noqa: E402
from jaxgpt.models import gpt, moe  # noqa: E402
from jaxgpt.train import setup  # noqa: E402
from jaxgpt.train import step as step_lib  # noqa: E402

# The flags are bench_train's (--config, --steps, --out, --smoke), with this script's defaults.
_CONFIG, _STEPS, _OUT, _SMOKE = (bench_train._CONFIG, bench_train._STEPS, bench_train._OUT,
                                 bench_train._SMOKE)
flags.FLAGS.set_default("config", "configs/moe.py:cpu")
flags.FLAGS.set_default("steps", 60)

DISPATCHES = ("dense", "capacity", "ragged")


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


def step_flops_per_token(config) -> float:
  """Compiled FLOPs of one train step (forward, backward, optimizer) per token."""
  run = setup.build(config)
  fam = models.family(config.model.name)
  fn = step_lib.make_train_step(run.model.apply, run.tx, config.train.grad_accum,
                                fam.collections, fam.rng_streams, 0)
  t = config.train
  batch = {k: jax.ShapeDtypeStruct((t.batch_size, config.data.seq_len), jnp.int32)
           for k in ("inputs", "targets")}
  compiled = jax.jit(fn).lower(run.abstract_state, batch,
                               jax.ShapeDtypeStruct((), jnp.float32)).compile()
  return _flops(compiled) / (t.batch_size * config.data.seq_len)


def layer_waste(config) -> float:
  """The MoE layer's compiled forward FLOPs / the active experts' matmul FLOPs."""
  cfg = gpt.gpt_config(config.model, 256)
  b, t = config.train.batch_size, config.data.seq_len
  x = jax.ShapeDtypeStruct((b, t, cfg.d_model), jnp.float32)
  layer = moe.MoE(cfg)
  params = jax.eval_shape(layer.init, jax.random.PRNGKey(0), x)["params"]
  params = jax.tree.map(lambda p: p.value if hasattr(p, "value") else p, params,
                        is_leaf=lambda p: hasattr(p, "value"))
  compiled = jax.jit(lambda p, x: layer.apply({"params": p}, x)).lower(params, x).compile()
  k, per_expert = cfg.moe.top_k, moe.expert_params(cfg.moe, cfg.d_model, cfg.mlp_dim)
  active = 2 * b * t * k * per_expert / cfg.moe.num_experts
  return _flops(compiled) / active


def rows(config_arg: str, steps: int, timed: tuple[str, ...] = DISPATCHES) -> list[dict]:
  """One row per dispatch (trained and timed if in `timed`) and the dense GPT's."""
  base = cli.load_config(config_arg)
  out = []
  for name in DISPATCHES:
    cfg = cli.load_config(config_arg, {"model.moe.dispatch": name})
    row = (bench_train.bench(config_arg, steps, [f"model.moe.dispatch={name}"])
           if name in timed else {"tokens_per_s": float("nan"), "num_params": None})
    row.update(name=f"moe/{name}", step_flops_per_token=step_flops_per_token(cfg),
               layer_flops_vs_active=layer_waste(cfg))
    out.append(row)
  mult = base.model.moe.top_k * base.model.mlp_mult
  act = base.model.moe.act or base.model.mlp_act
  sets = ["model.name=gpt", f"model.mlp_mult={mult}", f"model.mlp_act={act}"]
  row = bench_train.bench(config_arg, steps, sets)
  cfg = cli.load_config(config_arg, {"model.name": "gpt", "model.mlp_mult": mult,
                                     "model.mlp_act": act})
  row.update(name="gpt dense (equal active)", step_flops_per_token=step_flops_per_token(cfg),
             layer_flops_vs_active=None)
  out.append(row)
  dense_tps = out[-1]["tokens_per_s"]
  for r in out:
    r["tokens_per_s_vs_dense_gpt"] = r["tokens_per_s"] / dense_tps
  return out


def main(argv):
  cli.no_arguments(argv)
  config_arg, steps, timed = _CONFIG.value, _STEPS.value, DISPATCHES
  if _SMOKE.value:  # every FLOP count, but only the dense dispatch and the GPT trained
    config_arg, steps, timed = "configs/moe.py:test", 2, ("dense",)
  table = rows(config_arg, steps, timed)
  print(f"{'row':<26}{'params':>11}{'tokens/s':>10}{'vs gpt':>8}{'step GFLOP/tok':>16}"
        f"{'layer/active':>14}")
  for r in table:
    waste = r["layer_flops_vs_active"]
    params = "-" if r["num_params"] is None else f"{r['num_params']:,}"
    print(f"{r['name']:<26}{params:>11}{r['tokens_per_s']:>10,.0f}"
          f"{r['tokens_per_s_vs_dense_gpt']:>8.2f}{r['step_flops_per_token'] / 1e9:>16.4f}"
          f"{'-' if waste is None else f'{waste:.2f}':>14}")
  result = {"config": config_arg, "steps": steps, "rows": table,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "backend": jax.default_backend(), "numpy": np.__version__, "jax": jax.__version__}
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  cli.run(main)
