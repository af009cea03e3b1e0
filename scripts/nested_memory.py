"""Optimizer-state memory per optimizer and deep_nested mode, from the state pytree (bytes).

  python scripts/nested_memory.py --out runs/nested_memory.json   # gpt cpu proxy and 124M GPT
  python scripts/nested_memory.py --smoke --out /tmp/nested_memory.json   # gpt test (tests)

No training and no timing: the abstract train state (`jax.eval_shape`) of each config under
AdamW, Muon+AdamW, deep_nested seed, deep_nested dmgd and dmgd with Newton-Schulz, its
optimizer state's bytes in all, the parameter-sized part and the learned nets' part. Prints a
table; writes JSON.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from absl import flags

from jaxgpt import cli
from jaxgpt.optim import nested
from jaxgpt.train import setup

_SMOKE = flags.DEFINE_bool("smoke", False, "Only the gpt test config (seconds).")
_OUT = flags.DEFINE_string("out", "", "JSON output path.")

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
  return int(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def measure(configs) -> list[dict]:
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


def main(argv):
  cli.no_arguments(argv)
  rows = measure(["configs/gpt.py:test"] if _SMOKE.value else CONFIGS)
  print(f"{'config':<22} {'optimizer':<20} {'params MB':>10} {'state MB':>10} "
        f"{'state/params':>12} {'nets kB':>8}")
  for r in rows:
    nets = "-" if r["net_bytes"] is None else f"{r['net_bytes'] / 1e3:.1f}"
    print(f"{r['config']:<22} {r['optimizer']:<20} {r['param_bytes'] / 1e6:>10.3f} "
          f"{r['state_bytes'] / 1e6:>10.3f} {r['state_over_params']:>12.3f} {nets:>8}")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"meta": {"smoke": _SMOKE.value}, "rows": rows}, f, indent=2)
  return 0


if __name__ == "__main__":
  cli.run(main)
