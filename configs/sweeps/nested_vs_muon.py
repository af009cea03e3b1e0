"""The grid's winners against Muon+AdamW, at equal steps and at equal training time.

One arm per study: the default arm is deep_nested (mode "seed", the nested grid's fixed settings,
`configs/sweeps/nested_grid.py`) at the grid's winning depths (MoE M3 C2; TitanMAC M4 C5); the
`muon` variant is the base config's own Muon+AdamW. The knob `budget` is the run length:
`train.steps` (equal steps; the nested grid compared at 4800) or, with `time`, `train.max_time_s`
(equal training time; each trial is its own cohort by default, K = 1; with
`--config.clock=calibrated` each trial's clock is steps x its arm's calibrated step time, so
seeds may share a cohort). 3 seeds per arm by default, the same seeds in both (docs/nested.md's
comparisons ran 5: `--config.seeds='(0,1,2,3,4)' --config.cohort_size=5`); compare the arms
with a paired t-test over the seeds, from the reports' JSON: `python -m jaxgpt.stats
NESTED/trials.json MUON/trials.json`. For equal time, calibrate each arm with `--plan` alone on
the machine and set the budget: `--config.space.budget.values='(T,)'`.
Variants (combine with commas):
  cpu     on the `cpu` MoE proxy (`configs/moe.py:cpu`) at batch 8 x 64, 1000 steps / 600 s;
          with titans on `configs/titans.py:cpu` at batch 4 x 64 (the grid's run sizes)
  titans  TitanMAC (`configs/titans.py`), nested depths M4 C5
  muon    the Muon+AdamW arm (the base config's optimizer, unchanged)
  time    equal training time: budget is train.max_time_s (train.steps raised to 10^6)
  test    both knobs tiny on the `test` GPT config, used by the tests
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep, overrides_of

NESTED = {
    "optimizer": {
        "name": "deep_nested", "lr": 3e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
        "weight_decay": 0.2, "grad_clip": 0.0, "schedule": "constant", "warmup_frac": 0.0,
        "nested": {"mode": "seed", "meta_lr": 1e-4, "meta_every": 50, "momentum_hidden": 64,
                   "controller_hidden": 32, "max_grad_norm": 1.0, "history": 50,
                   "momentum_layers": 3, "controller_layers": 2},
    },
    "train": {"eval_every": 50, "grad_accum": 1},
}


# The `cpu` run sizes of configs/sweeps/nested_grid.py (MoE 8 x 64, TitanMAC 4 x 64 tokens per
# step), so the grid's winners are compared at the size they were picked at. The MoE's final
# evaluation reads the whole validation split; TitanMAC's, the grid's first 65,536 tokens (its
# whole-split evaluation would take minutes per trial on one CPU core).
CPU_TRAIN = {"batch_size": 8, "eval_tokens": 8192}
CPU_TRAIN_TITANS = {"batch_size": 4, "eval_tokens": 4096, "final_eval_tokens": 65536}


def _cpu(c):
  c.base.variants = "cpu"
  c.space.budget["values"] = (1000,) if c.space.budget["key"] == "train.steps" else (600.0,)
  o = overrides_of(c)
  size = CPU_TRAIN_TITANS if c.base.config == "configs/titans.py" else CPU_TRAIN
  o["train"] = {**o.get("train", {}), **size}
  c.base.overrides = o


def _titans(c):
  c.name = c.name + "-titans"
  c.base.config = "configs/titans.py"
  o = overrides_of(c)
  if "optimizer" in o:
    o["optimizer"]["nested"].update(momentum_layers=4, controller_layers=5)
  c.base.overrides = o


def _muon(c):
  c.name = c.name + "-muon"
  o = overrides_of(c)
  o.pop("optimizer", None)
  c.base.overrides = o


def _time(c):
  c.name = c.name + "-time"
  o = overrides_of(c)
  o.setdefault("train", {})["steps"] = 1_000_000
  c.base.overrides = o
  c.space.budget = dict(key="train.max_time_s", values=(3600.0,))
  c.cohort_size = 1


def _test(c):
  c.base.config = "configs/gpt.py"
  c.base.variants = "test"
  o = overrides_of(c)
  o.setdefault("train", {})["eval_every"] = 2
  if "optimizer" in o:
    o["optimizer"]["nested"]["meta_every"] = 2
  if c.space.budget["key"] == "train.steps":
    c.space.budget["values"] = (4,)
  else:
    c.space.budget["values"] = (2.0,)
    o["train"]["steps"] = 6
  c.base.overrides = o
  c.seeds = (0,)


VARIANTS = {"cpu": _cpu, "titans": _titans, "muon": _muon, "time": _time, "test": _test}
ORDER = ("titans", "muon", "time", "cpu", "test")


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "nested_vs_muon"
  c.base.config = "configs/moe.py"
  c.base.overrides = NESTED
  c.space.budget = dict(key="train.steps", values=(4800,))
  c.sampler = "grid"
  c.seeds = (0, 1, 2)
  c.cohort_size = 3
  # Applied in a fixed order whatever the command line's: `cpu` / `test` size the budget
  # that `time` chose.
  return apply_variants(c, variants, VARIANTS, order=ORDER)
