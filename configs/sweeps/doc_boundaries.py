"""Documents kept apart, on many short documents: the Shakespeare cut into scenes.

`configs/gated_ngpt.py:cpu` trained on the embedded corpus's train and val works cut before
every scene heading (`python -m jaxgpt.data.scenes DIR` writes them: 703 train and 77 val
scenes; `data.name = "text"`, one document per file, a byte-level BPE of 1024 ids trained on
the train scenes). Five arms, 3 seeds each, compared by val_bpb with the newline baseline
(paired t-test over seeds, Holm, 95% intervals; docs/formulas.md):
  newline         the scenes joined by a newline (data.document_separator = "newline")
  bos             the boundary token before every scene
  bos_mask        ... and document-masked attention (model.document_mask)
  bos_align       ... and windows aligned to document starts (data.align_to_bos)
  bos_mask_align  both
val_bpb is comparable across arms: its denominator is the validation split's raw UTF-8 bytes
in every arm (the boundary token counts zero bytes; the newline separator's bytes are counted,
a difference of 77 bytes in 492,028).

    python -m jaxgpt.data.scenes runs/shakespeare_scenes
    python -m jaxgpt.sweep --config configs/sweeps/doc_boundaries.py --workdir runs/doc_bounds
    python -m jaxgpt.report runs/doc_bounds

`SCENES` is the folder the first command wrote (override with
`--config.base.overrides.data.train_pattern=...` and `val_pattern`).
Variants:
  test  two arms on the `test` gated nGPT, 2 seeds, used by the tests
"""

from jaxgpt.config import apply_variants
from jaxgpt.sweep.spec import base_sweep

SCENES = "runs/shakespeare_scenes"

ARMS = (dict(label="newline"),
        dict(label="bos", separator="bos"),
        dict(label="bos_mask", separator="bos", mask=True),
        dict(label="bos_align", separator="bos", align=True),
        dict(label="bos_mask_align", separator="bos", mask=True, align=True))


def _data(scenes: str) -> dict:
  return {"name": "text", "tokenizer": "bpe", "bpe_vocab_size": 1024,
          "train_pattern": f"{scenes}/train/*.txt", "val_pattern": f"{scenes}/val/*.txt",
          "val_fraction": None}


def _test(c):
  c.base.variants = "test"
  c.base.overrides = {"data": {**_data(SCENES), "tokenizer": "byte"},
                      "train": {"steps": 4, "eval_every": 2}}
  c.groups = {"boundaries": (ARMS[0], ARMS[2])}
  c.seeds = (0, 1)
  c.cohort_size = 2


VARIANTS = {"test": _test}


def get_config(variants: str = ""):
  c = base_sweep()
  c.name = "doc_boundaries"
  c.base.config = "configs/gated_ngpt.py"
  c.base.variants = "cpu"
  c.base.overrides = {"data": _data(SCENES)}
  c.space.separator = dict(key="data.document_separator", baseline="newline")
  c.space.mask = dict(key="model.document_mask", baseline=False)
  c.space.align = dict(key="data.align_to_bos", baseline=False)
  c.sampler = "groups"
  c.groups = {"boundaries": ARMS}
  c.objective = "val_bpb"
  c.seeds = (0, 1, 2)
  c.cohort_size = 3
  return apply_variants(c, variants, VARIANTS)
