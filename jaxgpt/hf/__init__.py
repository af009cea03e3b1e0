"""Hugging Face interop: jaxgpt GPTs <-> transformers' Llama and Qwen3 checkpoint folders.

  arch.py       which GPT configurations have a transformers counterpart (Llama: RMSNorm, RoPE,
                SwiGLU, GQA; Qwen3: the same with QK-norm), config.json both ways
  weights.py    the tensor layouts: (in, out) kernels <-> PyTorch's (out, in), per-head
                projections <-> flat ones, the tensor names
  tokenizer.py  the byte tokenizer as a ByteLevel tokenizer.json (ids = byte values) and the
                tokenizer files a checkpoint folder carries
  store.py      checkpoint folders: safetensors read and written, a folder written whole or
                not at all, the jaxgpt-format folder (`export.format = "safetensors"`)
  init.py       `train.init_from`: the config a folder implies, and its parameters

Needs the `safetensors` package (not torch). docs/interop.md has the commands.
"""
