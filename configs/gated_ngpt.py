"""Gated nGPT + Muon: the time-to-target study's recommended run (A1_ne), the headline config.

The time-to-target study is dnhkng/nGPT-muon and its report (docs/design.md "Sources"). Default =
A1_ne (docs/formulas.md "Gated nGPT", "Published reference numbers"): 11 layers x 768 (12 heads of
64), gated residuals `x = Norm(x + sigmoid(g) * alpha * out)` with alpha 0.15, logits 15 * cosine;
Muon lr 0.003 with EMA momentum 0.95, no Nesterov, no update scaling (`update_scale = none`: the
study's lr belongs to an unscaled update) and 5 quintic Newton-Schulz steps; lazy projection onto
the hypersphere every 7 steps; batch 32 x 128 tokens, 5000 steps, validation every 50 steps; the
embedded Shakespeare corpus with a 1024-token BPE (FineWeb shards with `data.name=shards`). No
weight decay (nGPT). `train.target_loss` is unset: the study's 5.708 was measured on other data.

Choices the study does not state, made here: Adam (b1 0.9, b2 0.95) at lr 0.003 for the
embeddings, the output embedding and the scalars; cosine decay to 0 without warm-up (nGPT uses
none).

Variants (combine with commas):
  seed_exact  the study's cubic Newton-Schulz X(1.5 I - 0.5 X^T X) with X / (1.1 ||X||_F)
  cpu         a proxy that learns something real in ~3 minutes on 2 CPU cores
  test        a few steps in seconds on CPU (used by the tests)
"""

from jaxgpt.config import apply_variants, base_config


def _seed_exact(c):
  c.optimizer.orthogonalize = "newton_schulz_cubic"


def _cpu(c):
  # Tuned at 150 steps, one seed each (val_bpb on the whole validation split; docs/benchmarks.md):
  #   Muon lr (alpha 0.15): 0.01 -> 2.611, 0.03 -> 2.580, 0.06 -> 2.554, 0.1 -> 2.549;
  #   Adam lr 0.03 instead of 0.01 (Muon 0.03) -> 2.599, worse;
  #   alpha (Muon 0.06): 0.3 -> 2.590, 0.15 -> 2.554, 0.08 -> 2.534, 0.04 -> 2.521,
  #   0.02 -> 2.506, 0.01 -> 2.510; alpha 0.02 with Muon 0.1 -> 2.509;
  #   logit_scale 30 (alpha 0.15, Muon 0.06) -> 2.544 vs 2.554 (kept the study's 15).
  # A small initial alpha (it is learned) works best at this size; why is not measured (perhaps
  # the un-normalised block output is large next to the unit-norm residual). The default keeps
  # the study's 0.15.
  # XLA:CPU runs these few layers unrolled faster than as a scan (docs/benchmarks.md
  # "Throughput"); GPU sizes keep the scan (one compiled block). 285 steps unrolled take the
  # wall time 250 scanned steps took (about 84 s on 2 cores): val_bpb 2.340 against 2.379.
  c.model.update(num_layers=4, d_model=128, num_heads=4, compute_dtype="float32", alpha=0.02,
                 scan_layers=False)
  c.data.update(seq_len=64)
  c.optimizer.update(lr=0.06, embed_lr=0.01, head_lr=0.01, scalar_lr=0.01)
  c.train.update(steps=285, batch_size=32, eval_every=50, eval_tokens=16384, log_every=10,
                 eval_batch_size=256)


def _test(c):
  c.model.update(num_layers=2, d_model=32, num_heads=4, compute_dtype="float32")
  c.data.update(tokenizer="byte", seq_len=32)
  c.optimizer.update(lr=0.02, embed_lr=0.01, head_lr=0.01, scalar_lr=0.01)
  c.optimizer.lazy_proj_freq = 3
  c.train.update(steps=12, batch_size=4, eval_every=6, eval_tokens=512, log_every=2,
                 eval_batch_size=256, progress_bar=False)


VARIANTS = {"seed_exact": _seed_exact, "cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_config()
  c.name = "gated_ngpt"
  c.model.update(name="gated_ngpt", num_layers=11, d_model=768, num_heads=12, alpha=0.15,
                 logit_scale=15.0, qk_norm=False, tie_embeddings=False, mlp_act="swiglu")
  c.data.update(tokenizer="bpe", bpe_vocab_size=1024, seq_len=128)
  c.optimizer.update(name="muon", lr=0.003, momentum=0.95, momentum_style="ema", nesterov=False,
                     update_scale="none", orthogonalize="newton_schulz", ns_steps=5,
                     weight_decay=0.0, embed_lr=0.003, head_lr=0.003, scalar_lr=0.003,
                     b1=0.9, b2=0.95, eps=1e-8, grad_clip=0.0, schedule="cosine",
                     warmup_frac=0.0, final_lr_frac=0.0, lazy_proj_freq=7)
  c.train.update(steps=5000, batch_size=32, eval_every=50, eval_tokens=65536)
  return apply_variants(c, variants, VARIANTS)
