"""PR #141's systematic search, and its int6 claim as a 2 x 2 per QAT form, on the CPU proxy
(docs/studies/param_golf.md).

PR #141 reports that int6 STE quantization-aware training "conflicts with Muon" (its run 0.007
bpb worse). Whether the cost belongs to Muon is an interaction: STE's effect under Muon against
its effect under Adam. Each QAT form gets its own 2 x 2 (3 seeds per arm):

  optimizer  Muon with PR #141's settings (lr 0.02, momentum 0.99), or AdamW on every parameter
             at its own tuned LR (ADAM_LR, picked by the `tune` variant)
  STE        none, or the form's int6 QAT: `int6_quantile` (always on, per-row clip at the
             0.9999984 quantile) or `int6_late` (on once the LR multiplier is below 0.15,
             scale max|w| / 31 floored at 1/31)

Every arm writes the int6 artifact when it ends (`export.at_end`, `export.format = "int6"`) and
is judged on its fresh-process round trip, `val_bpb_roundtrip` (the objective). A form's no-STE
arms export with that form's artifact settings (the late form's scale floor 1/31 in both), so
the two forms' no-STE arms train the same model and differ in the export alone. The interaction,
(Muon + STE - Muon) - (AdamW + STE - AdamW), per seed and paired over the seeds
(`jaxgpt.stats.interaction`): above 0, STE costs Muon more than it costs AdamW.

The base is `configs/param_golf.py:cpu,systematic_search` (PR #141's hyperparameters on the `cpu`
proxy: sequence 256 with batch 8, RoPE base 200,000, warm-down over the last half; the fp16
limit scaled to the proxy's width, FP16_MAX_NUMEL, so that its block matrices are int6), on the
Shakespeare in parameter-golf's form (SentencePiece 1024, a BOS per work; every trial logs both
bits per byte), for STEPS steps as the ladder (`param_golf_ladder.py`), no time cap. Muon's
no-STE arm is PR #141's systematic search itself.

    python -m jaxgpt.sweep --config configs/sweeps/param_golf_int6.py:tune --workdir DIR --plan
    python -m jaxgpt.sweep --config configs/sweeps/param_golf_int6.py --workdir DIR
    python -m jaxgpt.report DIR --json docs/studies/param_golf/int6/trials.json

Variants:
  tune  each optimizer's LR, no QAT, no artifact, 2 seeds: Muon 0.01 / 0.02 / 0.04, AdamW
        0.001 / 0.002 / 0.004 / 0.008, judged on val_bpb (ADAM_LR is the best AdamW mean)
  test  the late form's Muon + STE arm on the `test` shape, 1 seed (the tests)
"""

from jaxgpt.config import apply_variants
from jaxgpt.errors import ConfigError
from jaxgpt.sweep.spec import base_sweep, overrides_of

PG_DATA = {"tokenizer": "spm1024", "document_separator": "bos"}  # as param_golf_ladder.py
STEPS = 360  # the ladder's step budget (param_golf_ladder.py)
MUON_LR = 0.02  # PR #141's
# AdamW's LR: the `tune` variant's best mean val_bpb (docs/studies/param_golf.md, int6_tune/:
# 0.001 2.5330, 0.002 2.4926, 0.004 2.6089, 0.008 2.6879 over seeds 0 and 1; commit 91477c5).
# The 2 x 2 refuses to start while it is None.
ADAM_LR = 0.002
LATE_FLOOR = 1.0 / 31
# Which matrices QAT and the artifact quantize: those above export.fp16_max_numel elements.
# parameter-golf's 65,536 at width 512 quantizes every block matrix; at the proxy's width 128 no
# block matrix is that large (128 x 256 at most), so the limit is scaled with the width squared,
# 65,536 x (128 / 512)^2, and every block matrix is int6 as at full size.
FP16_MAX_NUMEL = 65_536 * 128 * 128 // (512 * 512)

KNOBS = {
    "opt": ("optimizer.name", "muon"),
    "lr": ("optimizer.lr", MUON_LR),
    "qat": ("model.qat", "none"),
    "floor": ("model.qat_scale_floor", 0.0),  # tied: export.int6_scale_floor the same
}
FORMS = {"quantile": dict(qat="int6_quantile", floor=0.0),
         "late": dict(qat="int6_late", floor=LATE_FLOOR)}


def two_by_two(form: str, adam_lr: float | None = None) -> tuple[dict, ...]:
  """One form's four arms: Muon, Muon + STE, AdamW, AdamW + STE (labels name them)."""
  f = FORMS[form]
  adam_lr = ADAM_LR if adam_lr is None else adam_lr
  if adam_lr is None:
    raise ConfigError("param_golf_int6.py: ADAM_LR is unset; run the `tune` variant first and "
                     "set ADAM_LR to its best AdamW learning rate")
  adam = dict(opt="adamw", lr=adam_lr)
  return (dict(label=f"{form}_muon", floor=f["floor"]),
          dict(label=f"{form}_muon_ste", **f),
          dict(label=f"{form}_adamw", floor=f["floor"], **adam),
          dict(label=f"{form}_adamw_ste", **f, **adam))


def _space(c):
  for name, (key, baseline) in KNOBS.items():
    c.space[name] = dict(key=key, baseline=baseline)
  c.space.floor["tied"] = (("export.int6_scale_floor", 1.0),)


def _tune(c):
  c.name = "param_golf_int6_tune"
  c.base.overrides = {**overrides_of(c), "export": {"at_end": False}}
  c.groups = {"muon_lr": ({"grid": {"lr": (0.01, 0.02, 0.04)}},),
              "adamw_lr": tuple(dict(opt="adamw", lr=lr) for lr in (0.001, 0.002, 0.004, 0.008))}
  c.objective = "val_bpb"
  c.seeds = (0, 1)


def _test(c):
  c.base.variants = "test,systematic_search"
  c.base.overrides = {"train": {"max_time_s": None, "steps": 6, "eval_every": 6,
                                "final_eval_tokens": 1024},
                      "data": PG_DATA, "model": {"qat_threshold": 0.9},
                      "export": {"at_end": True, "format": "int6", "fp16_max_numel": 0}}
  c.groups = {"late": (dict(label="late_muon_ste", **FORMS["late"]),)}
  c.seeds = (0,)
  c.cohort_size = 1
  c.report.statistics = False  # one seed: a smoke run of the pipeline, no verdicts


VARIANTS = {"tune": _tune, "test": _test}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "param_golf_int6"
  c.base.config = "configs/param_golf.py"
  c.base.variants = "cpu,systematic_search"
  c.base.overrides = {"train": {"max_time_s": None, "steps": STEPS}, "data": PG_DATA,
                      "export": {"at_end": True, "format": "int6",
                                 "fp16_max_numel": FP16_MAX_NUMEL}}
  _space(c)
  c.sampler = "groups"
  c.objective = "val_bpb_roundtrip"
  c.seeds = (0, 1, 2)
  c.cohort_size = 3
  names = [v for v in variants.split(",") if v]
  if not {"tune", "test"} & set(names):  # the 2 x 2 itself
    c.groups = {form: two_by_two(form) for form in FORMS}
  return apply_variants(c, variants, VARIANTS)
