"""Titans (neural long-term memory, MAC by default); docs/titans.md.

Default: close to the "168m" TitanMAC shape of the nested grid (docs/design.md "Sources"): 9 layers
x 1024, 16 heads, GELU MLP x4, sequence 1024, segments / window 512, 16 persistent tokens, a 2-layer
memory per block (16 memory heads x 64), tied embeddings; Muon on the matrices (the memory's initial
weights included, per memory head), Adam on embeddings, persistent tokens, gates and norm scales.
Variants (combine with commas):
  mag   memory as gate (sliding-window attention), the variant the nested grid's 168m config ran
  cpu   a proxy that learns in about 3 minutes on 2 CPU cores (byte tokenizer, fp32)
  test  a few steps in seconds on CPU (used by the tests)
"""

from jaxgpt.config import apply_variants, base_config


def _mag(c):
  c.model.titans.variant = "mag"


def _cpu(c):
  # Unrolled layers: XLA:CPU runs a few layers faster unrolled than as a scan (docs/benchmarks.md
  # "Throughput"), like every `cpu` variant.
  c.model.update(num_layers=4, d_model=128, num_heads=4, mlp_act="relu2",
                 compute_dtype="float32", remat=False, scan_layers=False)
  c.model.titans.update(memory_dim=32, memory_width=32, chunk_size=8, segment_len=32,
                        persistent_tokens=4)
  c.data.update(tokenizer="byte", seq_len=64)
  c.optimizer.update(lr=0.015, embed_lr=0.01, scalar_lr=0.01, head_lr=0.005, warmup_frac=0.02,
                     final_lr_frac=0.0)
  c.train.update(steps=200, batch_size=32, eval_every=50, eval_tokens=16384, log_every=10,
                 eval_batch_size=256)


def _test(c):
  c.model.update(num_layers=2, d_model=32, num_heads=4, mlp_act="relu2",
                 compute_dtype="float32", remat=False)
  c.model.titans.update(memory_heads=2, memory_dim=8, memory_width=8, chunk_size=4,
                        segment_len=16, persistent_tokens=2)
  c.data.update(tokenizer="byte", seq_len=32)
  c.optimizer.update(lr=0.02, embed_lr=0.01, scalar_lr=0.01, head_lr=0.005, warmup_frac=0.1)
  c.train.update(steps=12, batch_size=4, eval_every=6, eval_tokens=512, log_every=2,
                 eval_batch_size=64, progress_bar=False)


VARIANTS = {"mag": _mag, "cpu": _cpu, "test": _test}


def get_config(variants: str = ""):
  c = base_config()
  c.name = "titans"
  c.model.update(name="titans", num_layers=9, d_model=1024, num_heads=16, mlp_mult=4.0,
                 mlp_act="gelu", tie_embeddings=True, remat=True)
  c.model.titans.update(variant="mac", memory_layers=2, memory_residual=True, chunk_size=16,
                        segment_len=512, persistent_tokens=16, theta_max=0.01)
  c.data.update(seq_len=1024)
  c.optimizer.update(name="muon", lr=0.02, update_scale="shape", momentum=0.95, nesterov=True,
                     embed_lr=0.005, head_lr=0.003, scalar_lr=0.01, b1=0.8, b2=0.95, eps=1e-10,
                     weight_decay=0.0, grad_clip=1.0, schedule="cosine", warmup_frac=0.01,
                     final_lr_frac=0.0)
  c.train.update(steps=5000, batch_size=16, eval_every=250, eval_tokens=1 << 20)
  return apply_variants(c, variants, VARIANTS)
