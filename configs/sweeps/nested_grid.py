"""The nested grid: DeepNestedOptimizer momentum-net depth M x controller depth C.

The TitanMAC / DeepNestedOptimizer grid of bigwolfeman/5-dollar-llm (branch 001-TitanMAC-Testing;
docs/design.md "Sources"), here:

`optimizer.name=deep_nested`, `nested.mode=seed`, with the grid's fixed settings (base lr 3e-4,
AdamW betas 0.9 / 0.999, eps 1e-8, weight decay 0.2, its own clip at 1.0 after the gradient
statistics, no warm-up or schedule, meta lr 1e-4, meta-update every 50 steps from the
validation loss, momentum hidden 64 (capped at 20 as in the grid), controller hidden 32), 500
steps, M and C in 1..6 (36 configurations) x 3 seeds = 108 trials. M and C change the optimizer
state's structure, so each (M, C) is its own cohort of the 3 seeds (K = 3). The report
(`python -m jaxgpt.report DIR`) has the M x C heatmap and the seed-to-seed spread (no knob names
a `baseline`, so no verdicts: the report never tests against the best cell); docs/nested.md has
the grid's published numbers and how to read the grid (M only reseeds the controller).
Variants (combine with commas):
  cpu     the grid on the `cpu` proxy of the MoE (`configs/moe.py:cpu`), the grid's 500 steps,
          at batch 8 x 64 (CPU_TRAIN below); with titans at batch 4 x 64 (CPU_TRAIN_TITANS)
  titans  on TitanMAC instead (`configs/titans.py`; with cpu: `configs/titans.py:cpu`)
  test    a 2 x 1 grid x 2 seeds on the `test` GPT config, 4 steps, used by the tests
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep, overrides_of

# The nested grid's fixed settings (its winning_hyperparameters.md), as config overrides.
SEED_SETTINGS = {
    "optimizer": {
        "name": "deep_nested", "lr": 3e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
        "weight_decay": 0.2, "grad_clip": 0.0, "schedule": "constant", "warmup_frac": 0.0,
        "nested": {"mode": "seed", "meta_lr": 1e-4, "meta_every": 50, "momentum_hidden": 64,
                   "controller_hidden": 32, "max_grad_norm": 1.0, "history": 50},
    },
    "train": {"steps": 500, "eval_every": 50, "grad_accum": 1},
}


# The `cpu` grid's run size: 108 trials must fit a few hours of 2 CPU cores, so each trial uses
# a quarter of the proxy's batch (8 x 64 = 512 tokens per step) and the final evaluation reads
# the first 65,536 validation tokens (the periodic ones, 8,192).
CPU_TRAIN = {"batch_size": 8, "eval_tokens": 8192, "final_eval_tokens": 65536}
# TitanMAC's cpu proxy costs about 2.2x the MoE's per token (its memory branch), so its grid
# trains at half that batch (4 x 64 = 256 tokens per step) and evaluates 4,096 tokens every 50
# steps (the periodic loss only enters the meta-history, which 500 steps never read).
CPU_TRAIN_TITANS = {"batch_size": 4, "eval_tokens": 4096, "final_eval_tokens": 65536}


def _cpu(c):
  c.base.variants = "cpu"
  o = overrides_of(c)
  size = CPU_TRAIN_TITANS if c.base.config == "configs/titans.py" else CPU_TRAIN
  o["train"] = {**o.get("train", {}), **size}
  c.base.overrides = o


def _titans(c):
  c.name = c.name + "-titans"
  c.base.config = "configs/titans.py"


def _test(c):
  c.base.config = "configs/gpt.py"
  c.base.variants = "test"
  c.base.overrides = {**SEED_SETTINGS, "train": {"steps": 4, "eval_every": 2},
                      "optimizer": {**SEED_SETTINGS["optimizer"],
                                    "nested": {**SEED_SETTINGS["optimizer"]["nested"],
                                               "meta_every": 2}}}
  c.space.M["values"] = (1, 2)
  c.space.C["values"] = (1,)
  c.seeds = (0, 1)
  c.cohort_size = 2


VARIANTS = {"cpu": _cpu, "titans": _titans, "test": _test}
ORDER = ("titans", "cpu", "test")  # `cpu` sizes the run for the model `titans` chose


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "nested_grid"
  c.base.config = "configs/moe.py"
  c.base.overrides = SEED_SETTINGS
  c.space.M = dict(key="optimizer.nested.momentum_layers", values=(1, 2, 3, 4, 5, 6))
  c.space.C = dict(key="optimizer.nested.controller_layers", values=(1, 2, 3, 4, 5, 6))
  c.sampler = "grid"
  c.seeds = (0, 1, 2)
  c.cohort_size = 3  # one (M, C) per cohort: M and C are static structure
  c.report.heatmap_x, c.report.heatmap_y = "M", "C"
  return apply_variants(c, variants, VARIANTS, order=ORDER)
