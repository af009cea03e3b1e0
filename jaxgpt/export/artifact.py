"""The int8 + zlib artifact format (parameter-golf; docs/formulas.md "Int8 + zlib artifact").

Quantization, one leaf at a time, as the exporter plans it (`int8_axes`):
- a leaf the plan leaves out is stored as float16 (vectors, and matrices of at most
  `export.fp16_max_numel` = 65,536 elements: per layer's matrix, so scanned and unscanned
  models store the same kinds);
- a planned leaf is stored as int8 with one float16 scale per output channel:
  `scale = max|w| / 127` over the leaf's reduce axes (its fan_in axes),
  `q = clip(round(w / scale), -127, 127)`, and `w ~ q * scale`. The scale keeps its axes
  (size 1 on the reduced ones), so dequantization is a broadcast and needs no layout knowledge.
  A 3-D attention kernel (embed, heads, head_dim) is the embed x heads*head_dim matrix: one scale
  per (head, head_dim) column; (heads, head_dim, embed) gets one per embed column; scanned
  layers (a leading layers axis) get their own scales per layer; an embedding table
  (vocab, d_model) gets one per row, which is the output channel of a tied LM head.

File: zlib level 9 of `MAGIC | uint32 header length | header JSON | tensor bytes`. The header
holds the resolved run config, the vocabulary size and, per tensor, its path, kind, shape and
byte offsets, so the file alone rebuilds the model (`load_model`).
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
from ml_collections import config_dict

from jaxgpt import files, models

MAGIC = b"JAXGPT-INT8-ZLIB-1\n"
FILENAME = "model.int8.zlib"
ZLIB_LEVEL = 9
INT8_MAX = 127


def quantize(w: np.ndarray, reduce_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
  """(q int8, scale float16) with one scale per index of the axes not in `reduce_axes`."""
  w = np.asarray(w, np.float32)
  amax = np.max(np.abs(w), axis=reduce_axes, keepdims=True)
  scale = (amax / INT8_MAX).astype(np.float16)
  scale[scale == 0] = 1.0  # an all-zero channel (or one below fp16's range) quantizes to 0
  q = np.clip(np.rint(w / scale.astype(np.float32)), -INT8_MAX, INT8_MAX).astype(np.int8)
  return q, scale


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
  return q.astype(np.float32) * scale.astype(np.float32)


def encode(flat: dict[str, np.ndarray], int8_axes: dict[str, tuple[int, ...]],
           meta: dict[str, Any]) -> bytes:
  """The compressed artifact of `flat` ("a/b/c" path -> float array): int8 with the reduce axes
  `int8_axes[path]` for the leaves it names, float16 for all others; `meta` goes into the
  header."""
  entries, chunks, offset = [], [], 0

  def add(arr: np.ndarray) -> dict:
    nonlocal offset
    data = np.ascontiguousarray(arr).tobytes()
    chunks.append(data)
    ref = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset,
           "nbytes": len(data)}
    offset += len(data)
    return ref

  for path in sorted(flat):
    w = np.asarray(flat[path], np.float32)
    if path not in int8_axes:
      entries.append({"path": path, "kind": "fp16", "data": add(w.astype(np.float16))})
    else:
      q, scale = quantize(w, int8_axes[path])
      entries.append({"path": path, "kind": "int8", "data": add(q), "scale": add(scale)})
  header = json.dumps({"format": 1, "meta": meta, "tensors": entries}).encode("utf-8")
  blob = MAGIC + struct.pack("<I", len(header)) + header + b"".join(chunks)
  return zlib.compress(blob, ZLIB_LEVEL)


def decode(raw: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(meta, flat float32 params) from the artifact's bytes."""
  blob = zlib.decompress(raw)
  if not blob.startswith(MAGIC):
    raise ValueError("not a jaxgpt int8+zlib artifact (bad magic)")
  n = struct.unpack_from("<I", blob, len(MAGIC))[0]
  start = len(MAGIC) + 4
  header = json.loads(blob[start:start + n].decode("utf-8"))
  data = memoryview(blob)[start + n:]

  def read(ref: dict) -> np.ndarray:
    buf = data[ref["offset"]:ref["offset"] + ref["nbytes"]]
    return np.frombuffer(buf, dtype=ref["dtype"]).reshape(ref["shape"])

  flat = {}
  for e in header["tensors"]:
    if e["kind"] == "int8":
      flat[e["path"]] = dequantize(read(e["data"]), read(e["scale"]))
    else:
      flat[e["path"]] = read(e["data"]).astype(np.float32)
  return header["meta"], flat


def write(path: str, raw: bytes) -> None:
  """Writes the artifact atomically (`jaxgpt.files.atomic_write`)."""
  files.atomic_write(path, raw)


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
  """{"a/b": x} -> {"a": {"b": x}}: the parameter tree the Flax model applies."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for key in parents:
      node = node.setdefault(key, {})
    node[leaf] = value
  return tree


def load(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(meta, flat float32 params) from an artifact file."""
  with open(path, "rb") as f:
    return decode(f.read())


def load_model(path: str):
  """(flax module, params tree, meta) from the artifact file alone:
  `module.apply({"params": params}, tokens_bt)` gives float32 logits."""
  meta, flat = load(path)
  model = models.build_model(config_dict.ConfigDict(meta["config"]["model"]), meta["vocab_size"],
                             meta.get("bos_id", meta["config"].get("data", {}).get("bos_id")))
  return model, unflatten(flat), meta
