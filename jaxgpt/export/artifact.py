"""The artifact formats (parameter-golf; docs/formulas.md "Int8 + zlib artifact", "Int6
artifact"): `export.format` = "int8" (the default) or "int6".

Quantization, one leaf at a time, as the exporter plans it (`jaxgpt.optim.qat.int8_axes`):
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
- int6 (format "int6", the planned Muon matrices, `jaxgpt.optim.qat.int6_axes`): int8
  containers holding [-31, 31], one float16 scale per output channel. Each channel's scale is
  `max(clip / 31, floor)` with clip the quantile of |w| from `export.int6_clip_quantiles` whose
  reconstruction has the least squared error on that channel (`quantize_int6`).

int8 file: zlib level 9 of `MAGIC | uint32 header length | header JSON | tensor bytes`.
int6 file: `INT6_MAGIC | compressor tag (b"zstd\n" or b"zlib\n") | compressed(uint32 header
length | header JSON | tensor bytes)`, zstd level 22 when the `zstandard` package is importable,
else zlib level 9; the tag, outside the compressed part, tells the loader which (the header
records it too). The header holds the resolved run config, the vocabulary size and, per tensor,
its path, kind, shape and byte offsets, so the file alone rebuilds the model (`load_model`).
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
INT6_MAGIC = b"JAXGPT-INT6-1\n"
INT6_MAX = 31
ZSTD_LEVEL = 22
COMPRESSORS = ("zstd", "zlib")  # int6: zstd 22 if importable, else zlib 9
INT6_CLIP_QUANTILES = (0.999, 0.9995, 0.9999, 0.99999, 1.0)  # export.int6_clip_quantiles


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


def int6_candidate(w: np.ndarray, reduce_axes: tuple[int, ...], clip_quantile: float,
                   scale_floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(q int8 in [-31, 31], scale float16) at one clip quantile for every output channel:
  clip = quantile(|w|, clip_quantile) (numpy's linear interpolation; 1.0: max|w|),
  scale = max(clip / 31, scale_floor) in float16 (1 where that is 0),
  q = clip(round(w / scale), -31, 31)."""
  w = np.asarray(w, np.float32)
  a = np.abs(w)
  if clip_quantile >= 1.0:
    clip = np.max(a, axis=reduce_axes, keepdims=True)
  else:
    clip = np.quantile(a, clip_quantile, axis=reduce_axes, keepdims=True)
  scale = np.maximum(clip / INT6_MAX, scale_floor).astype(np.float16)
  scale[scale == 0] = 1.0
  q = np.clip(np.rint(w / scale.astype(np.float32)), -INT6_MAX, INT6_MAX).astype(np.int8)
  return q, scale


def quantize_int6(w: np.ndarray, reduce_axes: tuple[int, ...],
                  clip_quantiles=INT6_CLIP_QUANTILES, scale_floor: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
  """(q int8 in [-31, 31], scale float16): for each output channel, the candidate of
  `int6_candidate` over `clip_quantiles` with the least squared reconstruction error
  sum((q * scale - w)^2) on that channel (ties: the earlier candidate). parameter-golf's
  export picks one quantile per matrix by its mean squared error; per channel is never worse."""
  w = np.asarray(w, np.float32)
  best_q = best_scale = best_err = None
  for cq in clip_quantiles:
    q, scale = int6_candidate(w, reduce_axes, cq, scale_floor)
    err = np.sum((dequantize(q, scale).astype(np.float64) - w) ** 2, axis=reduce_axes,
                 keepdims=True)
    if best_err is None:
      best_q, best_scale, best_err = q, scale, err
      continue
    better = err < best_err
    best_q = np.where(better, q, best_q)
    best_scale = np.where(better, scale, best_scale)
    best_err = np.where(better, err, best_err)
  return best_q, best_scale


def zstandard_module():
  """The `zstandard` module, or None when it is not installed."""
  try:
    import zstandard
  except ImportError:
    return None
  return zstandard


def default_compressor() -> str:
  """int6 artifacts: "zstd" (level 22) when `zstandard` is importable, else "zlib" (level 9)."""
  return "zstd" if zstandard_module() is not None else "zlib"


def compress(data: bytes, compressor: str) -> bytes:
  if compressor == "zlib":
    return zlib.compress(data, ZLIB_LEVEL)
  if compressor == "zstd":
    zstd = zstandard_module()
    if zstd is None:
      raise ValueError("zstd compression needs the zstandard package (pip install zstandard)")
    return zstd.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
  raise ValueError(f"unknown compressor {compressor!r}; choose one of {COMPRESSORS}")


def decompress(data: bytes, compressor: str) -> bytes:
  if compressor == "zlib":
    return zlib.decompress(data)
  if compressor == "zstd":
    zstd = zstandard_module()
    if zstd is None:
      raise ValueError("this artifact is zstd-compressed: loading it needs the zstandard "
                       "package (pip install zstandard)")
    return zstd.ZstdDecompressor().decompress(data)
  raise ValueError(f"unknown compressor {compressor!r} in the artifact; expected one of "
                   f"{COMPRESSORS}")


def filename(fmt: str, compressor: str | None = None) -> str:
  """The artifact's file name in a workdir: model.int8.zlib, model.int6.zstd, model.int6.zlib."""
  return FILENAME if fmt == "int8" else f"model.int6.{compressor or default_compressor()}"


def encode(flat: dict[str, np.ndarray], int8_axes: dict[str, tuple[int, ...]],
           meta: dict[str, Any], int6_axes: dict[str, tuple[int, ...]] | None = None, *,
           clip_quantiles=INT6_CLIP_QUANTILES, scale_floor: float = 0.0,
           compressor: str | None = None) -> bytes:
  """The compressed artifact of `flat` ("a/b/c" path -> float array): int8 with the reduce axes
  `int8_axes[path]` for the leaves it names, float16 for all others; `meta` goes into the
  header. With `int6_axes` (a dict, possibly empty), the int6 file: the leaves it names are
  int6 (`quantize_int6` with `clip_quantiles`, `scale_floor`; a leaf in both is int6),
  compressed with `compressor` (None: `default_compressor()`)."""
  entries, chunks, offset = [], [], 0

  def add(arr: np.ndarray) -> dict:
    nonlocal offset
    data = np.ascontiguousarray(arr).tobytes()
    chunks.append(data)
    ref = {"dtype": arr.dtype.name, "shape": list(arr.shape), "offset": offset,
           "nbytes": len(data)}
    offset += len(data)
    return ref

  int6 = int6_axes or {}
  for path in sorted(flat):
    w = np.asarray(flat[path], np.float32)
    if path in int6:
      q, scale = quantize_int6(w, int6[path], clip_quantiles, scale_floor)
      entries.append({"path": path, "kind": "int6", "data": add(q), "scale": add(scale)})
    elif path in int8_axes:
      q, scale = quantize(w, int8_axes[path])
      entries.append({"path": path, "kind": "int8", "data": add(q), "scale": add(scale)})
    else:
      entries.append({"path": path, "kind": "fp16", "data": add(w.astype(np.float16))})
  if int6_axes is None:
    header = json.dumps({"format": 1, "meta": meta, "tensors": entries}).encode("utf-8")
    blob = MAGIC + struct.pack("<I", len(header)) + header + b"".join(chunks)
    return zlib.compress(blob, ZLIB_LEVEL)
  compressor = compressor or default_compressor()
  level = ZSTD_LEVEL if compressor == "zstd" else ZLIB_LEVEL
  header = json.dumps({"format": 2, "compression": f"{compressor}-{level}",
                       "clip_quantiles": [float(q) for q in clip_quantiles],
                       "scale_floor": float(scale_floor), "meta": meta,
                       "tensors": entries}).encode("utf-8")
  blob = struct.pack("<I", len(header)) + header + b"".join(chunks)
  return INT6_MAGIC + compressor.encode("ascii") + b"\n" + compress(blob, compressor)


def _payload(raw: bytes) -> bytes:
  """`uint32 header length | header JSON | tensor bytes` of either file format."""
  if raw.startswith(INT6_MAGIC):
    tag_end = raw.find(b"\n", len(INT6_MAGIC))
    compressor = raw[len(INT6_MAGIC):tag_end].decode("ascii", "replace")
    return decompress(raw[tag_end + 1:], compressor)
  try:
    blob = zlib.decompress(raw)
  except zlib.error as e:
    raise ValueError(f"not a jaxgpt artifact (neither int6 nor int8+zlib: {e})") from e
  if not blob.startswith(MAGIC):
    raise ValueError("not a jaxgpt int8+zlib artifact (bad magic)")
  return blob[len(MAGIC):]


def decode(raw: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """(meta, flat float32 params) from the artifact's bytes (int8 or int6 file)."""
  blob = _payload(raw)
  n = struct.unpack_from("<I", blob, 0)[0]
  header = json.loads(blob[4:4 + n].decode("utf-8"))
  data = memoryview(blob)[4 + n:]

  def read(ref: dict) -> np.ndarray:
    buf = data[ref["offset"]:ref["offset"] + ref["nbytes"]]
    return np.frombuffer(buf, dtype=ref["dtype"]).reshape(ref["shape"])

  flat = {}
  for e in header["tensors"]:
    if e["kind"] in ("int8", "int6"):
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
