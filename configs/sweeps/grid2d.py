"""Any two knobs as a 2-D grid, reported as a heatmap (`python -m jaxgpt.report DIR`).

The knobs are `space.x` and `space.y`; by default the Muon learning rate against its momentum
on the GPT config. Point them at any other keys and values from the command line, e.g.
  --config.space.x.key=optimizer.weight_decay --config.space.x.values='(0.0, 0.05, 0.1)'
Trials that differ only in traced hyperparameters (learning rates, momentum, weight decay,
betas, schedule fractions, seeds) run as one vmapped cohort; static knobs split the grid into
cohorts by value.
Variants (combine with commas):
  cpu   a 3 x 3 grid on the `cpu` GPT proxy (half its steps), one cohort of 9, two seeds
  test  a 2 x 2 grid on the `test` GPT config, used by the tests
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep


def _cpu(c):
  c.base.variants = "cpu"
  c.base.overrides = {"train": {"steps": 170, "eval_every": 34}}
  c.space.x["values"] = (0.0075, 0.015, 0.03)
  c.space.y["values"] = (0.9, 0.95, 0.98)
  c.seeds = (0, 1)
  c.cohort_size = 9


def _test(c):
  c.base.variants = "test"
  c.space.x["values"] = (0.01, 0.03)
  c.space.y["values"] = (0.9, 0.95)
  c.cohort_size = 4


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "grid2d"
  c.base.config = "configs/gpt.py"
  c.space.x = dict(key="optimizer.lr", values=(0.005, 0.01, 0.02, 0.04))
  c.space.y = dict(key="optimizer.momentum", values=(0.85, 0.9, 0.95, 0.98))
  c.sampler = "grid"
  c.cohort_size = 16
  c.report.heatmap_x, c.report.heatmap_y = "x", "y"
  return apply_variants(c, variants, VARIANTS)
