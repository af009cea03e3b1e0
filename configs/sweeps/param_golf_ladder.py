"""parameter-golf PR #1434's ladder, its matched leave-one-out ablations and a 4x horizon, as one
groups study on `configs/param_golf.py:cpu` (docs/studies/param_golf.md).

Groups (3 seeds each; every point is the PR's baseline with the overrides listed):
  ladder   the PR's progression, each step adding to the one before (published val_bpb on its
           RTX 4000 Ada proxy in LADDER): cosine baseline; + Tidal LR; + soft-cap 20 and RoPE
           base 5000; + parallel blocks; + SiLU^2; + an asymmetric encoder split (1 encoder
           layer); + soft-cap 15 and matrix LR 0.10; + matrix LR 0.11; + 2 KV heads; + untied
           embeddings (embedding LR 0.8, head LR 0.008); + pure decoder (no encoder layers) and
           HEAD_DIVERSITY 1e-4: the final configuration. The PR's penalty never ran, so its last
           step was the pure decoder alone; here the penalty acts from L10 on (LOO_head_div
           measures it)
  loo      from the final configuration, each ladder knob alone back to the baseline's value
           (Tidal, soft-cap, RoPE base, parallel blocks, SiLU^2, the encoder split, matrix LR,
           KV heads, tied embeddings, embedding LR), and head diversity at 0 and at 0.01 (a
           weight the head_div scan tests). A knob that two ladder steps moved goes back to the
           baseline's value, undoing both (soft-cap 15 -> 30, matrix LR 0.11 -> 0.04, no encoder
           layers -> 2). parameter-golf gives the token table its own LR when tied
           (TIED_EMBED_LR, 0.05) and another when untied (EMBED_LR, default 0.6; the PR's 0.8);
           jaxgpt's one `optimizer.embed_lr` is whichever table the model has, so "tied
           embeddings" goes back to a tied table at 0.05 and "embedding LR" to an untied one at
           0.6 (LOO_TO)
  horizon  4x the steps and the schedule's horizon: the baseline, the final configuration and
           the leave-one-out arms of the four shape-dependent findings the PR's reviewer
           doubted (matrix LR 0.11, Tidal's 38.2% warm-up, RoPE 5000, no encoder layers)

Data: the Shakespeare in parameter-golf's form (PG_DATA): its tokenizer kind, SentencePiece
BPE 1024 trained with its settings on the train split, and a BOS before each work; every
trial logs both bits per byte (val_bpb on the raw bytes, val_bpb_pg by parameter-golf's count).
Budgets are steps, not a wall-clock cap (a cohort shares one clock, and a time cap gives each
seed its own step count): STEPS = 360, the steps the `cpu` proxy's baseline fits in its 120 s
cap on the quiet 2-core machine (360 and 390 steps for two seeds in the two-seed comparison
the study replaced, docs/benchmarks.md before commit 6f4f92f). The PR's
Tidal runs set ITERATIONS = 400 and their 600 s cap stopped them at about step 276, so Tidal's
horizon here is STEPS x 400 / 276 = TIDAL_HORIZON steps (`optimizer.schedule_steps`; the
multiplier 0.1 -> 1 -> 0.1 as the PR computes it), and the run stops at STEPS: 69% of the
schedule, as the PR's did. The baseline's cosine runs over its STEPS.
Print the plan first (`--plan`: runs x measured time, nothing trained), then run it resumably:

    python -m jaxgpt.sweep --config configs/sweeps/param_golf_ladder.py --workdir DIR --plan
    python -m jaxgpt.sweep --config configs/sweeps/param_golf_ladder.py --workdir DIR
    python -m jaxgpt.report DIR --json docs/studies/param_golf/trials.json

The report judges by val_bpb (the objective), paired over seeds against the PR's baseline,
Holm per group; the ladder's steps are compared each with the one before in
docs/studies/param_golf.md from the same JSON.
Variants:
  head_div  the head-diversity scan instead: the final configuration at head_diversity 0, 1e-4,
            1e-3, 0.01, 0.1 and 1 (HEAD_DIV_WEIGHTS), 3 seeds, every trial logging the heads'
            mean off-diagonal cosine (`metric/head_cos` in its summary)
  artifacts the ladder's two ends again (the PR's baseline, the final configuration), 3 seeds,
            each writing the int8 artifact and its fresh-process round trip (`export.at_end`):
            the artifact bytes and round-trip bpb of each end (the ladder itself writes none)
  loo_embed the final configuration and the two embedding arms as LOO_TO defines them: the
            study that ran at commit 63abd5b had reverted the tie alone (a tied table at 0.8)
            and the embedding LR to 0.05 (an untied table at the tied LR); those six trials
            were skipped there and these run instead, each arm against this study's own final
            configuration
  test  two ladder steps and one leave-one-out arm on the `test` shape, 2 seeds (the tests)
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep, overrides_of

# parameter-golf's tokenizer kind and its BOS-prefixed documents: a SentencePiece BPE of 1024
# ids trained with its settings on the Shakespeare's train split, a BOS before each work.
PG_DATA = {"tokenizer": "spm1024", "document_separator": "bos"}
STEPS = 360
TIDAL_HORIZON = round(STEPS * 400 / 276)

# knob: (dotted key, the PR's baseline value on the cpu proxy)
KNOBS = {
    "schedule": ("optimizer.schedule", "cosine"),
    "lr_frac": ("optimizer.initial_lr_frac", 0.0),  # tied: final_lr_frac the same
    "horizon": ("optimizer.schedule_steps", STEPS),
    "steps": ("train.steps", STEPS),
    "softcap": ("model.logit_softcap", 30.0),
    "rope": ("model.rope_base", 10000.0),
    "parallel": ("model.parallel_block", False),
    "act": ("model.mlp_act", "relu2"),
    "encoder": ("model.encoder_layers", 2),  # the cpu proxy's 5 layers: at most 5 // 2
    "lr": ("optimizer.lr", 0.04),
    "kv": ("model.num_kv_heads", 4),
    "tie": ("model.tie_embeddings", True),
    "embed_lr": ("optimizer.embed_lr", 0.05),  # parameter-golf's TIED_EMBED_LR: a tied table
    "head_div": ("model.head_diversity", 0.0),
}

TIDAL = dict(schedule="tidal", lr_frac=0.1, horizon=TIDAL_HORIZON)
# (label, what the step adds, the PR's published val_bpb after it)
LADDER = (
    ("L00_baseline", {}, 1.6117),
    ("L01_tidal", TIDAL, 1.5906),
    ("L02_softcap20_rope5000", dict(softcap=20.0, rope=5000.0), 1.5744),
    ("L03_parallel", dict(parallel=True), 1.5600),
    ("L04_silu2", dict(act="silu2"), 1.5527),
    ("L05_encoder1", dict(encoder=1), 1.5377),
    ("L06_softcap15_lr0.10", dict(softcap=15.0, lr=0.10), 1.5354),
    ("L07_lr0.11", dict(lr=0.11), 1.5341),
    ("L08_kv2", dict(kv=2), 1.5329),
    ("L09_untied", dict(tie=False, embed_lr=0.8), 1.5211),
    ("L10_decoder_final", dict(encoder=0, head_div=1e-4), 1.5207),
)


def ladder_points() -> list[dict]:
  """The ladder's cumulative points, each with its label."""
  out, acc = [], {}
  for label, adds, _ in LADDER:
    acc = {**acc, **adds}
    out.append(dict(label=label, **acc))
  return out


def final_point() -> dict:
  return {k: v for k, v in ladder_points()[-1].items() if k != "label"}


# leave-one-out: the final configuration with these knobs at the baseline's values
LOO = {
    "tidal": ("schedule", "lr_frac", "horizon"), "softcap": ("softcap",), "rope": ("rope",),
    "parallel": ("parallel",), "silu2": ("act",), "decoder": ("encoder",), "lr": ("lr",),
    "kv": ("kv",), "untied": ("tie", "embed_lr"), "embed_lr": ("embed_lr",),
    "head_div": ("head_div",),
}
# where an arm's knob goes back to other than KNOBS' baseline: the untied table's LR to
# parameter-golf's default EMBED_LR (KNOBS' 0.05 is the tied table's)
UNTIED_EMBED_LR = 0.6
LOO_TO = {"embed_lr": {"embed_lr": UNTIED_EMBED_LR}}
SHAPE_DEPENDENT = ("lr", "tidal", "rope", "decoder")


def loo_points() -> list[dict]:
  final = final_point()
  out = [dict(label=f"LOO_{name}", **{**final, **{k: KNOBS[k][1] for k in knobs},
                                       **LOO_TO.get(name, {})})
         for name, knobs in LOO.items()]
  out.append(dict(label="LOO_head_div0.01", **{**final, "head_div": 0.01}))
  return out


def horizon_points(factor: int = 4) -> list[dict]:
  """The baseline, the final configuration and the shape-dependent LOO arms at `factor` x the
  steps and the schedule's horizon."""
  base = {k: v for k, (_, v) in KNOBS.items()}
  loo = {p["label"]: p for p in loo_points()}
  arms = [("baseline", base), ("final", {**base, **final_point()})]
  arms += [(name, {**base, **{k: v for k, v in loo[f"LOO_{name}"].items() if k != "label"}})
           for name in SHAPE_DEPENDENT]
  return [dict(label=f"H{factor}_{name}", **{**p, "steps": p["steps"] * factor,
                                              "horizon": p["horizon"] * factor})
          for name, p in arms]


def _space(c, steps: int):
  for name, (key, baseline) in KNOBS.items():
    c.space[name] = dict(key=key, baseline=steps if name in ("steps", "horizon") else baseline)
  c.space.lr_frac["tied"] = (("optimizer.final_lr_frac", 1.0),)


def _test(c):
  c.base.variants = "test"
  c.base.overrides = {"train": {"max_time_s": None, "eval_every": 4}, "export": {"at_end": False},
                      "optimizer": {"warmup_frac": 0.0, "head_lr": 0.008},
                      "model": {"num_layers": 4}}
  _space(c, 8)
  c.space.encoder["baseline"] = 2
  c.groups = {"ladder": (dict(label="L00_baseline"),
                         dict(label="L01_tidal", schedule="tidal", lr_frac=0.1, horizon=11)),
              "loo": (dict(label="LOO_softcap", softcap=15.0),)}
  c.seeds = (0, 1)
  c.cohort_size = 2


# The head-diversity scan: the final configuration at each weight, the heads' cosine logged at
# every weight (model.log_head_cos), so the table shows where the cosine drops.
HEAD_DIV_WEIGHTS = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0)


def head_div_points() -> list[dict]:
  return [dict(label=f"HD_{w:g}", **{**final_point(), "head_div": w}) for w in HEAD_DIV_WEIGHTS]


def _head_div(c):
  c.name = "param_golf_head_div"
  o = overrides_of(c)
  c.base.overrides = {**o, "model": {**o.get("model", {}), "log_head_cos": True}}
  c.groups = {"head_div": tuple(head_div_points())}


def _artifacts(c):
  c.name = "param_golf_artifacts"
  c.base.overrides = {**overrides_of(c), "export": {"at_end": True}}
  ladder = ladder_points()
  c.groups = {"artifacts": (ladder[0], ladder[-1])}


def _loo_embed(c):
  c.name = "param_golf_loo_embed"
  loo = {p["label"]: p for p in loo_points()}
  c.groups = {"loo_embed": (ladder_points()[-1], loo["LOO_untied"], loo["LOO_embed_lr"])}


VARIANTS = {"test": _test, "head_div": _head_div, "artifacts": _artifacts,
            "loo_embed": _loo_embed}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "param_golf_ladder"
  c.base.config = "configs/param_golf.py"
  c.base.variants = "cpu"
  # step budgets: no time cap; the baseline's cosine has no warm-up (the PR's baseline)
  c.base.overrides = {"train": {"max_time_s": None},
                      "optimizer": {"warmup_frac": 0.0, "head_lr": 0.008},
                      "data": PG_DATA,
                      "export": {"at_end": False}}  # no artifact per trial (as the study ran)
  _space(c, STEPS)
  c.sampler = "groups"
  c.groups = {"ladder": tuple(ladder_points()), "loo": tuple(loo_points()),
              "horizon": tuple(horizon_points())}
  c.objective = "val_bpb"
  c.seeds = (0, 1, 2)
  c.cohort_size = 3
  return apply_variants(c, variants, VARIANTS)
