"""Checkpoint -> a safetensors folder (`--mode export` with `export.format = "hf"` or
`"safetensors"`, and the end of a run when `export.at_end`).

- "hf": a transformers folder (model.safetensors, config.json, generation_config.json,
  tokenizer.json, tokenizer_config.json) that `LlamaForCausalLM` / `Qwen3ForCausalLM` load
  (`jaxgpt.hf.arch` says which GPT configurations have one; others fail in one line naming
  the knob, before the checkpoint is read);
- "safetensors": any model's parameters under jaxgpt's own names, with jaxgpt's config
  (`jaxgpt.hf.store.load_jaxgpt`, or `train.init_from`), plus the tokenizer files.
The folder (`export.out_dir`, default `<workdir>/<format>`) is written whole or not at all,
then read back and compared tensor by tensor with what was meant to be written.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import jax
import numpy as np

from jaxgpt import data, files
from jaxgpt.hf import arch as arch_lib
from jaxgpt.hf import store, weights
from jaxgpt.hf import tokenizer as hf_tokenizer
from jaxgpt.keypath import path_str
from jaxgpt.models import gpt
from jaxgpt.train.inference import load_params

SUMMARY = "summary.json"

FORMATS = ("hf", "safetensors")  # export.format values written as a folder


def out_dir(config, workdir: str) -> str:
  return config.export.get("out_dir") or os.path.join(workdir, config.export.format)


def check_exportable(config) -> str | None:
  """The transformers counterpart ("llama" | "qwen3") for format "hf" (None for
  "safetensors"); a ConfigError naming the knob that has none."""
  if config.export.format != "hf":
    return None
  arch_lib.check_family(config.model.name)
  return arch_lib.counterpart(gpt.gpt_config(config.model, config.model.vocab_size or 64))


def flat_params(params: Any) -> dict[str, np.ndarray]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(params))
  return {path_str(p): np.asarray(x, np.float32) for p, x in leaves}


def generation_config(config, bos_id: int | None) -> dict:
  """generation_config.json: the boundary token as bos and eos, the run's sampling keys."""
  s = config.sample
  out = {"bos_token_id": bos_id, "eos_token_id": bos_id, "do_sample": s.temperature > 0}
  if s.max_new_tokens is not None:  # unset: transformers' own default
    out["max_new_tokens"] = s.max_new_tokens
  if s.temperature > 0:
    out.update(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p)
  return out


def folder_contents(config, params: Any, vocab_size: int, bos_id: int | None,
                    tokenizer: Any) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
  """(architecture, tensors, {file name: text}) of the folder `export.format` asks for."""
  flat = flat_params(params)
  texts = hf_tokenizer.tokenizer_files(tokenizer, config.data.seq_len)
  if config.export.format == "safetensors":
    texts[store.CONFIG] = store.json_text(store.jaxgpt_config(config, vocab_size, bos_id))
    return "jaxgpt", flat, texts
  arch = check_exportable(config)
  cfg = gpt.gpt_config(config.model, vocab_size)
  hf = arch_lib.hf_config(cfg, arch, max_positions=config.data.seq_len, bos_id=bos_id,
                          eos_id=bos_id)
  texts[store.CONFIG] = store.json_text(hf)
  texts[store.GENERATION_CONFIG] = store.json_text(generation_config(config, bos_id))
  return arch_lib.ARCHITECTURES[arch][0], weights.to_hf(flat, cfg), texts


def verify(folder: str, tensors: dict[str, np.ndarray]) -> None:
  """Reads the folder back: the same tensor names, and every tensor bit for bit."""
  back = store.read_tensors(folder)
  if set(back) != set(tensors):
    raise RuntimeError(f"{folder}: the tensors read back differ in names from those written")
  for name, w in tensors.items():
    if back[name].shape != w.shape or not np.array_equal(back[name], w):
      raise RuntimeError(f"{folder}: tensor {name} read back differs from the one written")


def export_workdir(config, workdir: str, params: Any = None, run: Any = None) -> dict:
  """Writes the folder from `params` (default: the latest checkpoint's), reads it back, merges
  the export keys into summary.json and returns them."""
  t0 = time.perf_counter()
  check_exportable(config)  # before the checkpoint is read: a refused knob fails at once
  if params is None:
    run, params, _ = load_params(config, workdir)
  bos_id = data.bos_id(config.data, run.spec)
  arch, tensors, texts = folder_contents(config, params, run.vocab_size, bos_id,
                                         run.spec.tokenizer)
  if run.spec.tokenizer is None:
    print("[jaxgpt] the data has no tokenizer (raw shards): the folder has no tokenizer.json",
          file=sys.stderr, flush=True)
  path = out_dir(config, workdir)
  store.write_folder(path, tensors, texts)
  verify(path, tensors)
  size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
  out = {"export_format": config.export.format, "export_dir": path,
         "export_architecture": arch, "export_tensors": len(tensors), "export_bytes": size,
         "export_time_s": time.perf_counter() - t0}
  summary_path = os.path.join(workdir, SUMMARY)
  summary = files.read_json(summary_path) if os.path.exists(summary_path) else {}
  summary.update(out)
  files.atomic_write_json(summary_path, summary)
  print(f"[jaxgpt] wrote {path} ({arch}, {len(tensors)} tensors, {size:,} bytes)",
        file=sys.stderr, flush=True)
  return out
