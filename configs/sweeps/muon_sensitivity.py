"""Muon sensitivity: LR x momentum x Newton-Schulz steps, two seeds per configuration.

The sensitivity study's grid (docs/design.md "Sources"), LR [0.001, 0.005, 0.01, 0.02, 0.05] x
momentum [0.90, 0.95, 0.99] x Newton-Schulz steps [3, 5, 7] (45 configurations; x 2 seeds = 90
trials). The study ran it on a MoE; this runs the GPT config until the MoE exists, then switch by
config: `--config.base.config=configs/moe.py`. `ns_steps` is static structure, so the grid is queued
with it varying slowest and each cohort holds the 15 LR x momentum points of one step count (x 2
seeds: K = 30 trials in one vmapped program).
Variants (combine with commas):
  cpu   the same knobs, fewer values, on the `cpu` GPT proxy (half its steps)
  test  a 2 x 1 x 2 grid on the `test` GPT config, used by the tests
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep


def _cpu(c):
  c.base.variants = "cpu"
  c.base.overrides = {"train": {"steps": 170, "eval_every": 34}}
  c.space.lr["values"] = (0.005, 0.015, 0.03)
  c.space.momentum["values"] = (0.9, 0.95)
  c.space.ns_steps["values"] = (3, 5)
  c.cohort_size = 12


def _test(c):
  c.base.variants = "test"
  c.base.overrides = {"train": {"steps": 6, "eval_every": 3}}
  c.space.lr["values"] = (0.01, 0.03)
  c.space.momentum["values"] = (0.95,)
  c.space.ns_steps["values"] = (3, 5)
  c.seeds = (0,)
  c.cohort_size = 4


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "muon_sensitivity"
  c.base.config = "configs/gpt.py"
  c.space.lr = dict(key="optimizer.lr", values=(0.001, 0.005, 0.01, 0.02, 0.05))
  c.space.momentum = dict(key="optimizer.momentum", values=(0.90, 0.95, 0.99))
  c.space.ns_steps = dict(key="optimizer.ns_steps", values=(3, 5, 7))
  c.sampler = "grid"
  c.seeds = (0, 1)
  c.cohort_size = 30
  c.report.heatmap_x, c.report.heatmap_y = "lr", "momentum"
  return apply_variants(c, variants, VARIANTS)
