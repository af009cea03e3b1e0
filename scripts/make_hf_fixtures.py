"""Writes tests/fixtures/hf/<name>/: tiny random transformers checkpoints and their logits.

Run with a Python that has torch and transformers (not needed by jaxgpt or its tests):

    python scripts/make_hf_fixtures.py [--out tests/fixtures/hf]

Each fixture is a LlamaForCausalLM or Qwen3ForCausalLM built from a config (nothing is
downloaded), its weights drawn with fixed seeds at scales that make every piece matter (norm
weights around 1, not 1, so w and 1 + w differ; kernels ~ 1/sqrt(fan_in); a large RoPE theta
in one, head_dim != hidden / heads in another, GQA and MQA), saved with `save_pretrained`
(model.safetensors, config.json, generation_config.json), plus input_ids.npy (int32 [2, 16])
and logits.npy (float32 [2, 16, vocab]) from transformers' eager float32 forward.
versions.json records the torch and transformers versions. tests/test_hf_interop.py imports
each fixture into jaxgpt and compares logits, without torch.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
import transformers

BATCH, LENGTH = 2, 16
FIXTURES = {
    # GQA (4 query heads over 2 kv heads), untied head, rope theta 5e5, eps 1e-5
    "llama_untied": ("llama", dict(vocab_size=96, hidden_size=32, intermediate_size=88,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=5e5,
                                   tie_word_embeddings=False)),
    # MHA, tied head
    "llama_tied": ("llama", dict(vocab_size=96, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1e4,
                                 tie_word_embeddings=True)),
    # MQA, head_dim 16 != 32 / 4, tied head, QK-norm
    "qwen3_tied": ("qwen3", dict(vocab_size=96, hidden_size=32, intermediate_size=72,
                                 num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=1, head_dim=16, rms_norm_eps=1e-6,
                                 rope_theta=1e6, tie_word_embeddings=True)),
    # GQA, untied head, QK-norm
    "qwen3_untied": ("qwen3", dict(vocab_size=96, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6,
                                   rope_theta=1e4, tie_word_embeddings=False)),
}
CLASSES = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM)}


def randomize(model: torch.nn.Module, seed: int) -> None:
  """Every weight redrawn: norm weights 1 + 0.3 N(0, 1), embeddings N(0, 1), other matrices
  N(0, 1 / fan_in)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in sorted(model.named_parameters()):
      z = torch.randn(p.shape, generator=gen, dtype=torch.float32)
      if p.ndim == 1:
        p.copy_(1.0 + 0.3 * z)
      elif "embed_tokens" in name:
        p.copy_(z)
      else:
        p.copy_(z / p.shape[1] ** 0.5)


def make(name: str, kind: str, kwargs: dict, out: str, seed: int) -> None:
  config_cls, model_cls = CLASSES[kind]
  config = config_cls(**kwargs, attn_implementation="eager")
  torch.manual_seed(seed)
  model = model_cls(config).to(torch.float32).eval()
  randomize(model, seed)
  ids = np.random.default_rng(seed).integers(0, kwargs["vocab_size"], (BATCH, LENGTH))
  with torch.no_grad():
    logits = model(torch.as_tensor(ids, dtype=torch.long)).logits.float().numpy()
  folder = os.path.join(out, name)
  model.save_pretrained(folder, safe_serialization=True)
  np.save(os.path.join(folder, "input_ids.npy"), ids.astype(np.int32))
  np.save(os.path.join(folder, "logits.npy"), logits.astype(np.float32))
  print(f"{folder}: logits {logits.shape}, |logits| max {np.abs(logits).max():.2f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.path.join("tests", "fixtures", "hf"))
  args = parser.parse_args()
  for seed, (name, (kind, kwargs)) in enumerate(sorted(FIXTURES.items())):
    make(name, kind, kwargs, args.out, seed)
  versions = {"torch": torch.__version__, "transformers": transformers.__version__,
              "batch": BATCH, "length": LENGTH}
  with open(os.path.join(args.out, "versions.json"), "w") as f:
    json.dump(versions, f, indent=2, sort_keys=True)
    f.write("\n")


if __name__ == "__main__":
  main()
