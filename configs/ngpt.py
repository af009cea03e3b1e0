"""nGPT, the normalized Transformer, in NVIDIA's form (Loshchilov et al. 2024; NVIDIA/ngpt).

Default: 12 layers x 768, 12 heads, untied unit-norm embeddings, SwiGLU MLP (u, v scaled by
s_uv * sqrt(d)), eigen learning rates alpha_A / alpha_M, logits s_z * (lm_head h); every matrix
re-normalized along d_model after every step (`optimizer.lazy_proj_freq = 1`). AdamW with betas
(0.9, 0.95), no weight decay, no warm-up, cosine decay to 0, as in NVIDIA's reference.
Variants (combine with commas): cpu, test.
"""

from jaxgpt.config import apply_variants, base_config


def _cpu(c):
  # XLA:CPU runs these few layers unrolled ~1.6x faster than as a scan (docs/benchmarks.md
  # "Throughput"); GPU sizes keep the scan (one compiled block).
  c.model.update(num_layers=4, d_model=128, num_heads=4, compute_dtype="float32",
                 scan_layers=False)
  c.data.update(tokenizer="byte", seq_len=64)
  c.optimizer.update(lr=5e-3)
  c.train.update(steps=300, batch_size=32, eval_every=100, eval_tokens=16384, log_every=10,
                 eval_batch_size=256)


def _test(c):
  c.model.update(num_layers=2, d_model=32, num_heads=4, compute_dtype="float32")
  c.data.update(tokenizer="byte", seq_len=32)
  c.optimizer.update(lr=5e-3)
  c.train.update(steps=12, batch_size=4, eval_every=6, eval_tokens=512, log_every=2,
                 eval_batch_size=256, progress_bar=False)


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_config()
  c.name = "ngpt"
  c.model.update(name="ngpt", num_layers=12, d_model=768, num_heads=12, qk_norm=False,
                 tie_embeddings=False, mlp_act="swiglu", mlp_sqrt_d="uv")
  c.data.update(seq_len=1024)
  c.optimizer.update(name="adamw", lr=1.5e-3, b1=0.9, b2=0.95, weight_decay=0.0, grad_clip=0.0,
                     schedule="cosine", warmup_frac=0.0, final_lr_frac=0.0, lazy_proj_freq=1)
  c.train.update(steps=5000, batch_size=32, eval_every=250, eval_tokens=1 << 20)
  return apply_variants(c, variants, VARIANTS)
