"""MoE + Muon sensitivity, one factor at a time: LR, momentum, Newton-Schulz steps; 3 seeds.

The sensitivity study's protocol ("Hyperparameter Sensitivity", experiment 3 in
codewithdark-git/analysis-of-muon-optimizer-in-llms; docs/design.md "Sources") on the MoE of
`configs/moe.py` (6 x 384, 8 experts top-2, 250 optimizer updates of 24 x 4 sequences of 512
tokens): LR in {0.001, 0.005, 0.01, 0.02, 0.05} at momentum 0.95 and 5 steps; momentum in {0.9,
0.95, 0.99} at LR 0.01; Newton-Schulz steps in {3, 5, 7} at LR 0.01, momentum 0.95. Adam (embedding,
norms) runs at 0.1 x the Muon LR, as in the study. 9 distinct points (the baseline shared by the
three axes) x 3 seeds = 27 trials, where the study ran each of its 11 runs once.

What differs on purpose: validation is whole held-out works (a document-level split) scored on
non-overlapping windows; the study's stride-1 windows with a random 90/10 split let validation
windows overlap training ones, which is how it reached val loss 0.33 at LR 0.05. With 3 seeds
per point the report gives mean +- std and compares each point with the baseline (paired
t-test over the seeds, Holm over each table, 95% intervals; `jaxgpt.stats`).
`ns_steps` is static structure, so the points form one cohort per step count.
Variants (combine with commas):
  cpu   the same 27 trials on a 2 x 64 MoE proxy (8 experts of width 64, top-2), 250 updates
        of 16 x 64 tokens: about ten minutes on 2 CPU cores (docs/benchmarks.md)
  test  a 2 + 1 point OAT on the `test` MoE, used by the tests
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep

ADAM_LR_RATIO = 0.1  # Adam lr = 0.1 x Muon lr (the sensitivity study's coupling)
_TIED = tuple((f"optimizer.{k}", ADAM_LR_RATIO) for k in ("embed_lr", "scalar_lr", "head_lr"))


def _cpu(c):
  c.base.variants = "cpu"
  c.base.overrides = {
      "model": {"num_layers": 2, "d_model": 64, "num_heads": 2},
      "train": {"steps": 250, "batch_size": 16, "eval_every": 50, "eval_tokens": 16384}}
  c.cohort_size = 21


def _test(c):
  c.base.variants = "test"
  c.base.overrides = {"train": {"steps": 4, "eval_every": 2}}
  c.space.lr.update(values=(0.01, 0.02), baseline=0.01)
  c.space.momentum.update(values=(0.95,), baseline=0.95)
  c.space.ns_steps.update(values=(3, 5), baseline=5)
  c.seeds = (0,)
  c.cohort_size = 4


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "moe_muon_sensitivity"
  c.base.config = "configs/moe.py"
  c.space.lr = dict(key="optimizer.lr", values=(0.001, 0.005, 0.01, 0.02, 0.05),
                    baseline=0.01, tied=_TIED)
  c.space.momentum = dict(key="optimizer.momentum", values=(0.90, 0.95, 0.99), baseline=0.95)
  c.space.ns_steps = dict(key="optimizer.ns_steps", values=(3, 5, 7), baseline=5)
  c.sampler = "oat"
  c.seeds = (0, 1, 2)
  c.cohort_size = 7  # 7 GPU-size trials vmapped at once (the 5-step cohort is 7 x 3 trials)
  return apply_variants(c, variants, VARIANTS)
