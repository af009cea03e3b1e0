"""Optimizer-state memory per optimizer and deep_nested mode, from the state pytree (bytes)
(scripts/nested_memory.py).

No training and no timing: the abstract train state (`jax.eval_shape`) of each config under
AdamW, Muon+AdamW, deep_nested seed, deep_nested dmgd and dmgd with Newton-Schulz, its
optimizer state's bytes in all, the parameter-sized part and the learned nets' part.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxgpt import cli
from jaxgpt.bench import output
from jaxgpt.optim import nested
from jaxgpt.train import setup

CONFIGS = ("configs/gpt.py:cpu", "configs/gpt.py")
OPTIMIZERS = {
    "adamw": {"optimizer.name": "adamw"},
    "muon": {"optimizer.name": "muon"},
    "deep_nested/seed": {"optimizer.name": "deep_nested", "optimizer.grad_clip": 0.0,
                         "optimizer.nested.mode": "seed"},
    "deep_nested/dmgd": {"optimizer.name": "deep_nested", "optimizer.nested.mode": "dmgd"},
    "deep_nested/dmgd+ns": {"optimizer.name": "deep_nested", "optimizer.nested.mode": "dmgd",
                            "optimizer.nested.newton_schulz": True},
}


def _bytes(tree) -> int:
  """Bytes of every leaf of `tree` (arrays or abstract shapes)."""
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def measure(configs) -> list[dict]:
  """One row per (config, optimizer): parameter bytes and the optimizer state's parts."""
  rows = []
  for config_arg in configs:
    for name, overrides in OPTIMIZERS.items():
      cfg = cli.load_config(config_arg, {"train.eval_every": 50, **overrides})
      state = setup.build(cfg).abstract_state
      parts = nested.state_bytes(state.opt_state)
      p = _bytes(state.params)
      rows.append({"config": config_arg, "optimizer": name, "param_bytes": p,
                   "state_bytes": parts["total"], "state_over_params": parts["total"] / p,
                   "param_sized_bytes": parts.get("param_sized"),
                   "net_bytes": parts.get("nets")})
  return rows


TABLE = output.Table(
    output.Column("config", "config", width=22, left=True),
    output.Column("optimizer", "optimizer", width=20, left=True),
    output.Column("params MB", lambda r: r["param_bytes"] / 1e6, ".3f", width=10),
    output.Column("state MB", lambda r: r["state_bytes"] / 1e6, ".3f", width=10),
    output.Column("state/params", "state_over_params", ".3f", width=12),
    output.Column("nets kB", lambda r: None if r["net_bytes"] is None else r["net_bytes"] / 1e3,
                  ".1f", width=8))


def run(smoke: bool = False, out: str | None = None) -> dict:
  """`measure` on CONFIGS (the gpt test config with `smoke`), printed and written to `out`."""
  rows = measure(["configs/gpt.py:test"] if smoke else CONFIGS)
  result = {"meta": {"smoke": smoke}, "rows": rows}
  output.emit(result, out, TABLE, rows)
  return result
