"""Gated nGPT + Muon, time to target: the time-to-target study's groups, searched by TPE.

Knobs: orthogonalization (Newton-Schulz vs Polar Express), variance reduction (NorMuon) and
cautious weight decay on/off, lazy projection every [3, 5, 7, 10, 15, 20] steps, Muon LR in
[0.0005, 0.02] (log), batch [16, 32, 64, 128] with the LR scaled by sqrt(batch / 32) (the
study's batch; the LR knob is the value at batch 32), momentum [0.85, 0.90, 0.95, 0.98]. The
objective is the time to `train.target_loss` (steps to target x the configuration's measured
solo step time; a trial that never reaches it scores +inf), and trials that lag the median at
the same step are pruned. TPE asks K trials at once with a constant liar; trials of one static
structure (orthogonalization, variance reduction, batch) train as one vmapped cohort.

Cautious weight decay only matters with weight decay, and nGPT trains without it: this sweep
sets `optimizer.weight_decay = 0.01` for every trial (a choice, not a measured optimum). The
target losses are choices too: the default `target_loss` is unset for the 11 x 768 model (set
it for your data: `--config.base.overrides.train.target_loss=...`); the `cpu` proxy's 2.0
nats per byte (2.9 bits per byte) sits between its start (5.5) and what a tuned 4 x 128 proxy
reaches (about 1.7), so most trials reach it part-way.
Variants (combine with commas):
  cpu   the gated nGPT `cpu` proxy with byte tokens, 200 steps, 32 trials, K = 8
  test  the `test` config: 4 trials of traced knobs only, used by the tests
"""

from ml_collections import config_dict

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep


def _cpu(c):
  c.base.variants = "cpu"
  c.base.overrides = {"data": {"tokenizer": "byte"}, "optimizer": {"weight_decay": 0.01},
                      "train": {"steps": 200, "eval_every": 20, "target_loss": 2.0}}
  c.space.batch["values"] = (16, 32, 64)
  c.n_trials = 32
  c.cohort_size = 8


def _test(c):
  c.base.variants = "test"
  c.base.overrides = {"optimizer": {"weight_decay": 0.01},
                      "train": {"steps": 6, "eval_every": 2, "target_loss": 5.4}}
  for knob in ("orthogonalize", "variance_reduction", "cautious_wd", "batch", "lazy_proj"):
    del c.space[knob]
  c.n_trials = 4
  c.cohort_size = 4
  c.pruner.startup_trials = 2


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "gated_ngpt_ttt"
  c.base.config = "configs/gated_ngpt.py"
  c.base.overrides = {"optimizer": {"weight_decay": 0.01},
                      "train": {"target_loss": config_dict.placeholder(float)}}
  c.space.orthogonalize = dict(key="optimizer.orthogonalize",
                               values=("newton_schulz", "polar_express"))
  c.space.variance_reduction = dict(key="optimizer.variance_reduction",
                                    values=("none", "normuon"))
  c.space.cautious_wd = dict(key="optimizer.cautious_wd", values=(False, True))
  c.space.lazy_proj = dict(key="optimizer.lazy_proj_freq", values=(3, 5, 7, 10, 15, 20))
  c.space.lr = dict(key="optimizer.lr", low=0.0005, high=0.02, log=True)
  c.space.batch = dict(key="train.batch_size", values=(16, 32, 64, 128))
  c.space.momentum = dict(key="optimizer.momentum", values=(0.85, 0.90, 0.95, 0.98))
  c.sampler = "tpe"
  c.n_trials = 128
  c.cohort_size = 8
  c.objective = "time_to_target_s"
  c.pruner.name = "median"
  c.lr_scaling.rule, c.lr_scaling.ref_batch = "sqrt", 32
  return apply_variants(c, variants, VARIANTS)
