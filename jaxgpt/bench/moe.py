"""MoE cost (scripts/bench_moe.py): training tokens/s of `configs/moe.py:cpu` per dispatch
against the dense GPT of equal active parameters, and each dispatch's FLOPs from XLA's compiled
cost analysis.

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

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import cli, models
from jaxgpt.bench import output, timing, train
from jaxgpt.models import gpt, moe
from jaxgpt.train import setup
from jaxgpt.train import step as step_lib

DISPATCHES = ("dense", "capacity", "ragged")


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
  return timing.compiled_flops(compiled) / (t.batch_size * config.data.seq_len)


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
  return timing.compiled_flops(compiled) / active


def rows(config_arg: str, steps: int, timed: tuple[str, ...] = DISPATCHES) -> list[dict]:
  """One row per dispatch (trained and timed if in `timed`) and the dense GPT's."""
  base = cli.load_config(config_arg)
  out = []
  for name in DISPATCHES:
    cfg = cli.load_config(config_arg, {"model.moe.dispatch": name})
    row = (train.bench(config_arg, steps, [f"model.moe.dispatch={name}"])
           if name in timed else {"tokens_per_s": float("nan"), "num_params": None})
    row.update(name=f"moe/{name}", step_flops_per_token=step_flops_per_token(cfg),
               layer_flops_vs_active=layer_waste(cfg))
    out.append(row)
  mult = base.model.moe.top_k * base.model.mlp_mult
  act = base.model.moe.act or base.model.mlp_act
  sets = ["model.name=gpt", f"model.mlp_mult={mult}", f"model.mlp_act={act}"]
  row = train.bench(config_arg, steps, sets)
  cfg = cli.load_config(config_arg, {"model.name": "gpt", "model.mlp_mult": mult,
                                     "model.mlp_act": act})
  row.update(name="gpt dense (equal active)", step_flops_per_token=step_flops_per_token(cfg),
             layer_flops_vs_active=None)
  out.append(row)
  dense_tps = out[-1]["tokens_per_s"]
  for r in out:
    r["tokens_per_s_vs_dense_gpt"] = r["tokens_per_s"] / dense_tps
  return out


TABLE = output.Table(
    output.Column("row", "name", width=25, left=True),
    output.Column("params", "num_params", ",", width=10),
    output.Column("tokens/s", "tokens_per_s", ",.0f", width=9),
    output.Column("vs gpt", "tokens_per_s_vs_dense_gpt", ".2f", width=7),
    output.Column("step GFLOP/tok", lambda r: r["step_flops_per_token"] / 1e9, ".4f", width=15),
    output.Column("layer/active", "layer_flops_vs_active", ".2f", width=13))


def run(config_arg: str, steps: int, timed: tuple[str, ...] = DISPATCHES,
        out: str | None = None) -> dict:
  """`rows`, printed as a table and written to `out` with the machine."""
  table = rows(config_arg, steps, timed)
  result = {"config": config_arg, "steps": steps, "rows": table, "machine": output.machine(),
            "backend": jax.default_backend(), "numpy": np.__version__, "jax": jax.__version__}
  output.emit(result, out, TABLE, table)
  return result
