"""Checkpoint folders: safetensors weights plus JSON, read and written.

Two kinds of folder:
- a transformers folder (`export.format = "hf"`, or any Llama / Qwen3 checkpoint):
  model.safetensors (or shards listed in model.safetensors.index.json), config.json,
  generation_config.json, tokenizer.json, tokenizer_config.json;
- a jaxgpt folder (`export.format = "safetensors"`, any model family): model.safetensors named
  by jaxgpt's own parameter paths ("blocks/attn/q/kernel"), and a config.json holding
  `{"format": JAXGPT_FORMAT, "config": the resolved run config, "vocab_size", "bos_id"}`;
  `load_jaxgpt(folder)` rebuilds the model from it alone, as `export.artifact.load_model`
  does from the int8 artifact.
A folder is written whole or not at all: into a temporary folder beside it, renamed into place
(a previous folder of that name is replaced only once the new one is complete).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util
from ml_collections import config_dict

from jaxgpt import config as config_lib
from jaxgpt import files, models
from jaxgpt.errors import ConfigError

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
JAXGPT_FORMAT = "jaxgpt-safetensors/1"
# transformers refuses safetensors files whose metadata does not name a framework it knows.
METADATA = {"format": "pt"}


def _safetensors():
  """The safetensors package (imported on first use: training without a folder needs none)."""
  try:
    import safetensors
    import safetensors.numpy
  except ImportError:
    raise ConfigError("Hugging Face folders need the safetensors package (pip install "
                      "safetensors)") from None
  return safetensors


def write_folder(out_dir: str | os.PathLike, tensors: dict[str, np.ndarray],
                 texts: dict[str, str]) -> None:
  """`out_dir` holding model.safetensors (`tensors`) and the text files `texts`, written into a
  temporary folder beside it and renamed into place: nothing half-written on an error."""
  out = Path(out_dir)
  if out.exists() and not out.is_dir():
    raise ConfigError(f"export.out_dir={str(out_dir)!r} is a file, not a folder")
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
  try:
    _safetensors().numpy.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                                   str(tmp / WEIGHTS), metadata=METADATA)
    for name, text in texts.items():
      (tmp / name).write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o755)  # mkdtemp makes folders private
    if out.exists():
      old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
      os.replace(out, old / out.name)
      os.replace(tmp, out)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def json_text(obj: Any) -> str:
  return json.dumps(obj, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------------------
# Reading.

def read_config(folder: str | os.PathLike) -> dict:
  """The folder's config.json; a ConfigError naming the folder when it has none."""
  path = Path(folder) / CONFIG
  if not Path(folder).is_dir():
    raise ConfigError(f"{folder}: no such folder (a checkpoint folder with config.json and "
                      f"{WEIGHTS})")
  try:
    return files.read_json(path)
  except FileNotFoundError:
    raise ConfigError(f"{folder}: no {CONFIG} (a Hugging Face checkpoint folder has one)") \
        from None
  except ValueError as e:
    raise ConfigError(f"{path}: not JSON ({e})") from None


def weight_files(folder: str | os.PathLike) -> list[Path]:
  """model.safetensors, or the shards that model.safetensors.index.json lists."""
  root = Path(folder)
  if (root / WEIGHTS).is_file():
    return [root / WEIGHTS]
  index = files.read_json(root / WEIGHTS_INDEX, None)
  if index is None:
    raise ConfigError(f"{folder}: no {WEIGHTS} nor {WEIGHTS_INDEX} (jaxgpt reads safetensors "
                      "weights only)")
  shards = sorted(set(index.get("weight_map", {}).values()))
  missing = [s for s in shards if not (root / s).is_file()]
  if missing or not shards:
    raise ConfigError(f"{root / WEIGHTS_INDEX}: shard {missing[0] if missing else '(none)'} "
                      "is missing")
  return [root / s for s in shards]


def tensor_shapes(folder: str | os.PathLike) -> dict[str, tuple[int, ...]]:
  """name -> shape of every tensor, read from the headers only."""
  out, safe_open = {}, _safetensors().safe_open
  for path in weight_files(folder):
    with safe_open(str(path), "numpy") as f:
      for name in f.keys():
        out[name] = tuple(f.get_slice(name).get_shape())
  return out


def read_tensors(folder: str | os.PathLike) -> dict[str, np.ndarray]:
  """name -> float32 numpy array (bfloat16 / float16 checkpoints are widened exactly)."""
  out, safe_open = {}, _safetensors().safe_open
  for path in weight_files(folder):
    with safe_open(str(path), "numpy") as f:
      names = list(f.keys())
      bf16 = [n for n in names if f.get_slice(n).get_dtype() == "BF16"]
      out.update({n: f.get_tensor(n).astype(np.float32) for n in names if n not in bf16})
    if bf16:  # numpy has no bfloat16: read those through JAX's (ml_dtypes) arrays
      with safe_open(str(path), "flax") as f:
        out.update({n: np.asarray(f.get_tensor(n)).astype(np.float32) for n in bf16})
  return out


# ------------------------------------------------------------------------------------------
# The jaxgpt folder.

def jaxgpt_config(config: Any, vocab_size: int, bos_id: int | None) -> dict:
  """config.json of a jaxgpt folder: enough to rebuild the model alone."""
  return {"format": JAXGPT_FORMAT, "config": config_lib.to_dict(config),
          "vocab_size": int(vocab_size), "bos_id": bos_id}


def is_jaxgpt(meta: dict) -> bool:
  return isinstance(meta, dict) and meta.get("format") == JAXGPT_FORMAT


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  """{"a/b": x} -> {"a": {"b": x}}: the parameter tree a Flax model applies."""
  return traverse_util.unflatten_dict(flat, sep="/")


def load_jaxgpt(folder: str | os.PathLike):
  """(flax module, params tree, meta) of a jaxgpt folder:
  `module.apply({"params": params}, tokens_bt)` gives float32 logits."""
  meta = read_config(folder)
  if not is_jaxgpt(meta):
    raise ConfigError(f"{Path(folder) / CONFIG}: not a jaxgpt folder (format "
                      f"{meta.get('format')!r}; export.format='safetensors' writes one)")
  model_cfg = config_dict.ConfigDict(meta["config"]["model"])
  model = models.build_model(model_cfg, meta["vocab_size"], meta.get("bos_id"))
  return model, unflatten(read_tensors(folder)), meta
