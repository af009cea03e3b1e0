"""`train.init_from = DIR`: start training from the weights (and tokenizer) of a checkpoint folder.

DIR is a transformers Llama / Qwen3 folder (config.json + safetensors) or a jaxgpt folder
(`export.format = "safetensors"`). `apply(config)` builds the model the folder holds into the
config: every model key the folder determines is set from it (one log line lists what changed),
the keys that only say how to compute (compute_dtype, remat, scan_layers, init, ...) stay the
run's own; a config of another model family is refused, naming model.name. The folder's
tokenizer.json becomes the data's tokenizer: jaxgpt's byte tokenizer as `data.tokenizer =
"byte"`, any other as its path (sources that take a tokenizer.json: shards, text, tfds); a
data source that cannot take it is one error line. `load_params` reads the weights into the
run's parameter tree (names and shapes checked first, each mismatch one error line naming the
file and tensor). A workdir that already holds a checkpoint resumes from it instead
(`train/run.py` says so in one line); the folder's config.json is still read, so the config
compares equal to the checkpoint's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from jaxgpt import config as config_lib
from jaxgpt import files, models
from jaxgpt.data import tokenizer as tokenizer_lib
from jaxgpt.errors import ConfigError
from jaxgpt.hf import arch as arch_lib
from jaxgpt.hf import store, weights
from jaxgpt.hf.tokenizer import TOKENIZER_JSON, is_byte_tokenizer
from jaxgpt.keypath import path_str
from jaxgpt.models import gpt

# Model keys of a jaxgpt folder that say how to compute or train, not which function the
# weights are: the run keeps its own.
FREE_MODEL_KEYS = ("compute_dtype", "remat", "attention_impl", "init", "init_std",
                   "head_diversity", "document_mask", "document_positions", "lazy_proj_freq",
                   "moe.aux_weight", "moe.aux_normalization", "moe.router_noise",
                   "moe.router_z_loss", "moe.dispatch", "moe.capacity_factor")
# Sources whose data.tokenizer may be the path of a tokenizer.json.
TOKENIZER_PATH_SOURCES = ("shards", "text", "tfds", "mixture")


def folder_model(folder: str) -> tuple[str, dict[str, Any]]:
  """(what the folder holds: "llama" | "qwen3" | "jaxgpt", {model key: value})."""
  meta = store.read_config(folder)
  source = str(Path(folder) / store.CONFIG)
  if store.is_jaxgpt(meta):
    flat = config_lib.flatten(meta["config"]["model"])
    keys = {k: v for k, v in flat.items() if k not in FREE_MODEL_KEYS}
    keys["vocab_size"] = meta["vocab_size"]
    return "jaxgpt", keys
  return arch_lib.model_keys(meta, source)


SHAPED_KEYS = ("num_kv_heads", "head_dim", "mlp_mult")  # read under d_model and num_heads


def _resolved(m: Mapping[str, Any], key: str) -> Any:
  """A model key's value as the model reads it: None defaults resolved, mlp_mult as the width
  it gives."""
  value = m.get(key)
  if key == "num_kv_heads" and value is None:
    return m.get("num_heads")
  if key == "head_dim" and value is None:
    return m["d_model"] // m["num_heads"]
  if key == "mlp_mult" and value is not None:
    return int(value * m["d_model"])
  return value


def model_changes(cfg_model: Any, keys: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{model key: (config value, folder value)} for the keys where the model differs. The keys
  read under the shape (SHAPED_KEYS) compare under the folder's d_model and num_heads, so a
  default that already gives the folder's value is left alone."""
  have = config_lib.flatten(config_lib.to_dict(cfg_model))
  want = {**have, **keys}
  shape = {"d_model": want["d_model"], "num_heads": want["num_heads"]}
  out = {}
  for key, value in keys.items():
    if key not in have:
      continue  # a key this jaxgpt does not have (an older or newer folder): shapes decide
    ctx = have | shape if key in SHAPED_KEYS else have
    if _resolved(ctx, key) != _resolved(want, key):
      out[key] = (have[key], value)
  return out


def _same_vocabulary(a: str, b: str) -> bool:
  """Whether two tokenizer.json files map the same tokens to the same ids."""
  try:
    return (tokenizer_lib.load_tokenizer(a).hf.get_vocab()
            == tokenizer_lib.load_tokenizer(b).hf.get_vocab())
  except (ValueError, AttributeError):
    return False


def tokenizer_change(folder: str, data_cfg: Any) -> tuple[Any, Any] | None:
  """(old, new) data.tokenizer that the folder's tokenizer.json asks for, or None (no
  tokenizer.json, or the data already tokenizes the same way); a ConfigError when the data
  source cannot take it."""
  path = Path(folder) / TOKENIZER_JSON
  if not path.is_file():
    return None
  spec = json.loads(path.read_text(encoding="utf-8"))
  want = "byte" if is_byte_tokenizer(spec) else str(path)
  have = data_cfg.tokenizer
  prepared = data_cfg.get("prepared_dir")
  if data_cfg.name == "shards" and prepared is not None:
    meta = files.read_json(Path(prepared) / "meta.json", {})
    theirs = meta.get("tokenizer")
    same = (theirs == "byte") if want == "byte" else (
        theirs != "byte" and _same_vocabulary(str(Path(prepared) / TOKENIZER_JSON), want))
    if not same:
      raise ConfigError(f"train.init_from={folder!r}: its tokenizer.json differs from the "
                        f"tokenizer of data.prepared_dir={prepared!r}; prepare the corpus with "
                        "the checkpoint's tokenizer")
    return None
  if want == "byte":
    return None if have == "byte" else (have, want)
  if have == want:
    return None
  if data_cfg.name not in TOKENIZER_PATH_SOURCES:
    raise ConfigError(f"train.init_from={folder!r} holds a tokenizer.json that is not the "
                      f"byte tokenizer, and data.name={data_cfg.name!r} tokenizes with 'byte' "
                      f"or its own 'bpe' only; use data.name in {TOKENIZER_PATH_SOURCES}")
  if str(have).endswith(".json") and _same_vocabulary(str(have), want):
    return None
  return have, want


def apply(config: Any) -> list[str]:
  """Builds the model (and tokenizer) of `train.init_from` into `config` (in place); returns
  the changed keys as "key: old -> new" and logs them in one line. No-op when unset."""
  folder = config.train.get("init_from")
  if folder is None:
    return []
  kind, keys = folder_model(folder)
  if keys.get("name", "gpt") != config.model.name:
    hint = "configs/gpt.py:qwen3" if kind == "qwen3" else "configs/gpt.py:llama"
    raise ConfigError(f"train.init_from={folder!r} holds a model.name={keys.get('name')!r} "
                      f"model but the config has model.name={config.model.name!r}; use a "
                      f"config of that family ({hint} for transformers checkpoints)")
  changes = {f"model.{k}": v for k, v in model_changes(config.model, keys).items()}
  tok = tokenizer_change(folder, config.data)
  if tok is not None:
    changes["data.tokenizer"] = tok
  for key, (_, new) in changes.items():
    config_lib.set_key(config, key, new)
  lines = [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items()]
  if lines and jax.process_index() == 0:  # a second call (the config built) logs nothing
    what = {"jaxgpt": "a jaxgpt folder"}.get(kind) or arch_lib.ARCHITECTURES[kind][0]
    print(f"[jaxgpt] train.init_from={folder} ({what}) sets {'; '.join(lines)}",
          file=sys.stderr, flush=True)
  return lines


def _flat_tree(abstract_params: Any) -> list[tuple[str, Any]]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(abstract_params)
  return [(path_str(p), x) for p, x in leaves]


def load_params(folder: str, cfg_model: Any, vocab_size: int, abstract_params: Any) -> Any:
  """The folder's weights as the run's parameter tree (float32 numpy leaves), after every
  name and shape is checked; each mismatch is one ConfigError naming the file and tensor."""
  meta = store.read_config(folder)
  source = str(store.weight_files(folder)[0])
  shapes = store.tensor_shapes(folder)
  if store.is_jaxgpt(meta):
    want = dict(_flat_tree(abstract_params))
    for name, x in want.items():
      if name not in shapes:
        raise ConfigError(f"{source}: no tensor {name} (the config implies it, shape "
                          f"{tuple(x.shape)})")
      if tuple(shapes[name]) != tuple(x.shape):
        raise ConfigError(f"{source}: {name} has shape {tuple(shapes[name])} but the config "
                          f"implies {tuple(x.shape)}")
    flat = store.read_tensors(folder)
  else:
    gcfg = gpt.gpt_config(cfg_model, vocab_size)
    weights.check_names_and_shapes(shapes, gcfg, source)
    flat = weights.from_hf(store.read_tensors(folder), gcfg, source)
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_params)
  out = []
  for path, x in leaves:
    name = path_str(path)
    if name not in flat or tuple(flat[name].shape) != tuple(x.shape):
      raise ConfigError(f"{source}: parameter {name} {tuple(x.shape)} is not in the folder "
                        "in that shape")
    out.append(np.asarray(flat[name], np.float32))
  return jax.tree_util.tree_unflatten(treedef, out)


def load_model(folder: str, config: Any) -> tuple[Any, Any]:
  """(flax module, params tree) of a checkpoint folder, outside a training run: `config` (a
  GPT config such as configs/gpt.py:llama; its train.init_from is set to `folder`) gets the
  folder's model keys, then the weights are read into the model's parameter tree.
  `module.apply({"params": params}, tokens_bt)` gives float32 logits."""
  config.train.init_from = folder
  apply(config)
  meta = store.read_config(folder)
  vocab = meta["vocab_size"]
  model = models.build_model(config.model, vocab)
  tokens = jax.numpy.zeros((1, 8), jax.numpy.int32)
  boxed = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), tokens))["params"]
  abstract = jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, boxed,
                          is_leaf=lambda x: hasattr(x, "unbox"))
  return model, load_params(folder, config.model, vocab, abstract)
