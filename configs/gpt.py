"""GPT (pre-norm, RoPE, ReLU^2 MLP): GPT-2-small shape by default.

Default: 12 layers x 768, 12 heads, tied embeddings, sequence 1024, 124M parameters with the
GPT-2 vocabulary of FineWeb shards (`--config.data.name=shards --config.model.vocab_size=50304`);
Muon on the hidden matrices, Adam on the embedding and norm scales, cosine decay.
`--config.optimizer.name=adamw --config.optimizer.lr=6e-4` gives the AdamW baseline.
Variants (combine with commas):
  cpu   a proxy that learns something real in ~3 minutes on 2 CPU cores (byte tokenizer, fp32)
  test  a few steps in seconds on CPU (used by the tests)
  llama the Llama block (SwiGLU MLP of width 8/3 d, GQA with 4 kv heads, no QK-norm, untied
        head): exports as a transformers LlamaForCausalLM (`--config.export.format=hf`)
  qwen3 the same with QK-norm and a tied head: exports as a Qwen3ForCausalLM
  (llama / qwen3 first, then cpu or test: `configs/gpt.py:llama,test`; docs/interop.md)
"""

from jaxgpt.config import apply_variants, base_config


def _cpu(c):
  # Sized for 2 CPU cores: 5-7k tokens/s, about 2.5 minutes in all, val_bpb 2.48
  # (docs/benchmarks.md); Muon lr 0.015 was the best of 4 (scripts/compare_optimizers.py).
  # XLA:CPU runs these few layers unrolled ~1.6x faster than as a scan (docs/benchmarks.md
  # "Throughput"); GPU sizes keep the scan (one compiled block).
  c.model.update(num_layers=4, d_model=128, num_heads=4, compute_dtype="float32",
                 scan_layers=False)
  c.data.update(tokenizer="byte", seq_len=64)
  c.optimizer.update(lr=0.015, embed_lr=0.01, scalar_lr=0.01, warmup_frac=0.02,
                     final_lr_frac=0.0)
  c.train.update(steps=340, batch_size=32, eval_every=85, eval_tokens=16384, log_every=10,
                 eval_batch_size=256)


def _test(c):
  c.model.update(num_layers=2, d_model=32, num_heads=4, compute_dtype="float32")
  c.data.update(tokenizer="byte", seq_len=32)
  c.optimizer.update(lr=0.02, embed_lr=0.01, scalar_lr=0.01, warmup_frac=0.1)
  c.train.update(steps=12, batch_size=4, eval_every=6, eval_tokens=512, log_every=2,
                 eval_batch_size=256, progress_bar=False)


def _llama(c):
  # No soft-cap, U-net skips or parallel blocks: the base GPT has none (jaxgpt/hf/arch.py).
  c.model.update(mlp_act="swiglu", mlp_mult=8 / 3, num_kv_heads=4, qk_norm=False,
                 tie_embeddings=False, logit_softcap=None, encoder_layers=0,
                 parallel_block=False)


def _qwen3(c):
  _llama(c)
  c.model.update(qk_norm=True, tie_embeddings=True)


VARIANTS = {"cpu": _cpu, "test": _test, "llama": _llama, "qwen3": _qwen3}


def get_config(variants: str = ""):
  c = base_config()
  c.name = "gpt"
  c.model.name = "gpt"
  c.data.update(seq_len=1024)
  # Muon on hidden matrices (update scale pinned: sqrt(max(1, fan_out/fan_in))), Adam on the
  # tied embedding and the norm scales. No weight decay.
  c.optimizer.update(name="muon", lr=0.02, update_scale="shape", momentum=0.95, nesterov=True,
                     embed_lr=0.005, scalar_lr=0.01, b1=0.8, b2=0.95, eps=1e-10,
                     weight_decay=0.0, schedule="cosine", warmup_frac=0.01, final_lr_frac=0.0)
  c.train.update(steps=5000, batch_size=32, eval_every=250, eval_tokens=1 << 20)
  return apply_variants(c, variants, VARIANTS)
