"""MoE GPT: every block's MLP is a routed mixture of 8 experts, top-2 (`model.name = "moe"`).

Default: the blueberry MoE's shape (the MoE + Muon sensitivity study's model): 6 layers x 384,
8 heads, expert width 1536 (mlp_mult 4), SiLU experts, 8 experts top-2 with softmax over the
chosen logits, router noise 0.1, load-balance weight 0.01 (slot fractions summing to 1), no
QK-norm, tied embeddings, N(0, 0.02) init, sequence 512, batch 24 x grad accum 4 for 250
optimizer updates; Muon (momentum 0.95, Nesterov, 5 Newton-Schulz steps, the router included:
`optimizer.router = "muon"`) at lr 0.01 with Adam at 0.1 x that on the embedding and norms.
With the 49,152-token SmolLM vocabulary this shape has 79,059,840 parameters (36.6M active per
token); here the vocabulary is the chosen tokenizer's. What differs from the PyTorch reference
(no dropout, no sqrt(d) embedding scale, no weight decay on the Adam group, the LR schedule's
shape): docs/moe.md.
Variants (combine with commas):
  cpu   a proxy that learns in ~3 minutes on 2 CPU cores (byte tokenizer, fp32)
  test  a few steps in seconds on CPU (used by the tests)
"""

from jaxgpt.config import apply_variants, base_config


def _cpu(c):
  # 4 layers x 128, 8 experts of width 128 (top-2 active: an MLP of width 256), dense dispatch.
  # XLA:CPU runs these few layers unrolled ~1.6x faster than as a scan (docs/benchmarks.md
  # "Throughput"); GPU sizes keep the scan (one compiled block).
  c.model.update(num_layers=4, d_model=128, num_heads=4, mlp_mult=1.0, compute_dtype="float32",
                 scan_layers=False)
  c.data.update(tokenizer="byte", seq_len=64)
  c.optimizer.update(lr=0.015, embed_lr=0.01, scalar_lr=0.01, head_lr=0.01)
  c.train.update(steps=250, batch_size=32, grad_accum=1, eval_every=50, eval_tokens=16384,
                 log_every=10, eval_batch_size=256)


def _test(c):
  c.model.update(num_layers=2, d_model=32, num_heads=4, mlp_mult=1.0, compute_dtype="float32")
  c.model.moe.update(num_experts=4, top_k=2)
  c.data.update(tokenizer="byte", seq_len=32)
  c.optimizer.update(lr=0.02, embed_lr=0.01, scalar_lr=0.01, head_lr=0.01, warmup_frac=0.1)
  c.train.update(steps=12, batch_size=4, grad_accum=1, eval_every=6, eval_tokens=512,
                 log_every=2, eval_batch_size=256, progress_bar=False)


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_config()
  c.name = "moe"
  c.model.update(name="moe", num_layers=6, d_model=384, num_heads=8, mlp_mult=4.0,
                 mlp_act="silu", qk_norm=False, tie_embeddings=True, init="normal",
                 init_std=0.02)
  c.model.moe.update(num_experts=8, top_k=2, aux_weight=0.01, aux_normalization="blueberry",
                     router_noise=0.1, router_z_loss=0.0, dispatch="dense")
  c.data.update(seq_len=512)
  # Muon (no weight decay) on the hidden matrices, the experts one by one and the router;
  # Adam at 0.1 x the Muon lr on the embedding and the norm scales. Warm-up over the first
  # 20% of updates, then a cosine that ends at 0.9 x peak (the reference's schedule reaches
  # only ~0.905 x peak in 250 updates).
  c.optimizer.update(name="muon", lr=0.01, momentum=0.95, nesterov=True, momentum_style="ema",
                     ns_steps=5, update_scale="shape", router="muon", embed_lr=0.001,
                     scalar_lr=0.001, head_lr=0.001, b1=0.9, b2=0.999, eps=1e-8,
                     weight_decay=0.0, grad_clip=1.0, schedule="cosine", warmup_frac=0.2,
                     final_lr_frac=0.9)
  c.train.update(steps=250, batch_size=96, grad_accum=4, eval_every=50, eval_tokens=1 << 20)
  return apply_variants(c, variants, VARIANTS)
