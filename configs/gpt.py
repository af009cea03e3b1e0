"""GPT (pre-norm, RoPE, ReLU^2 MLP): GPT-2-small shape by default.

Default: 12 layers x 768, 12 heads, tied embeddings, sequence 1024, 124M parameters with the
GPT-2 vocabulary of FineWeb shards (`--config.data.name=shards --config.model.vocab_size=50304`).
Variants (combine with commas):
  cpu   a proxy that learns something real in ~3 minutes on 2 CPU cores (byte tokenizer, fp32)
  test  a few steps in seconds on CPU (used by the tests)
"""

from jaxgpt.config import apply_variants, base_config


def _cpu(c):
  c.model.update(num_layers=4, d_model=256, num_heads=4, compute_dtype="float32")
  c.data.update(tokenizer="byte", seq_len=128)
  c.optimizer.update(lr=3e-3, warmup_frac=0.05, weight_decay=0.1, final_lr_frac=0.05)
  c.train.update(steps=700, batch_size=32, eval_every=100, eval_tokens=32768, log_every=10)


def _test(c):
  c.model.update(num_layers=2, d_model=32, num_heads=4, compute_dtype="float32")
  c.data.update(tokenizer="byte", seq_len=32)
  c.optimizer.update(lr=3e-3, warmup_frac=0.1)
  c.train.update(steps=12, batch_size=4, eval_every=6, eval_tokens=512, log_every=2,
                 eval_batch_size=256, progress_bar=False)


VARIANTS = {"cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_config()
  c.name = "gpt"
  c.model.name = "gpt"
  c.data.update(seq_len=1024)
  c.optimizer.update(name="adamw", lr=6e-4, schedule="cosine", warmup_frac=0.02)
  c.train.update(steps=5000, batch_size=32, eval_every=250, eval_tokens=1 << 20)
  return apply_variants(c, variants, VARIANTS)
