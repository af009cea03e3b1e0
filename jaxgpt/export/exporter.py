"""Checkpoint -> artifact -> fresh-process round trip -> summary.json (`--mode export`, and the
end of a run when `export.at_end`). `export.format`: "int8" (int8 + zlib) or "int6" (the Muon
matrices int6, zstd 22 or zlib 9; `artifact.py`). Which leaves are quantized is the plan of
`jaxgpt.optim.qat` (`int8_axes`, `int6_axes`), the same one int6 QAT trains with.

artifact_bytes = the compressed model file's size on disk + the raw bytes of the Python files
that loading and running it imports (`artifact_code_files`, listed by the fresh process itself),
checked against `export.budget_bytes` (16,000,000, parameter-golf's budget).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import jax
import numpy as np

import jaxgpt
from jaxgpt import config as config_lib
from jaxgpt import data, files, registry
from jaxgpt.export import artifact, folder
from jaxgpt.keypath import path_str
from jaxgpt.optim import qat
from jaxgpt.train.inference import load_params
from jaxgpt.train.loop import FINISHED

SUMMARY = "summary.json"


# The plan lives with QAT (train may not import export): the artifact quantizes what QAT
# fake-quantizes. Kept here under their old names for callers of the exporter.
reduce_axes = qat.reduce_axes
int8_axes = qat.int8_axes


def flat_params(params: Any) -> dict[str, np.ndarray]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(params))
  return {path_str(p): np.asarray(x, np.float32) for p, x in leaves}


def write_artifact(config, params: Any, vocab_size: int, path: str,
                   bos_id: int | None = None) -> None:
  """The artifact of `config.export.format` ("int8": int8 + zlib; "int6": the Muon matrices
  int6, the other planned leaves int8, zstd 22 or zlib 9). `bos_id`: the boundary token the
  model masks documents at (data.bos_id, else the data's own), recorded so that the artifact's
  model is built the same way."""
  e = config.export
  qat.check_export(e)
  flat = flat_params(params)
  plan = {p: int8_axes(p, w.shape, e.fp16_max_numel) for p, w in flat.items()}
  int8 = {p: a for p, a in plan.items() if a}
  meta = {"config": config_lib.to_dict(config), "vocab_size": int(vocab_size),
          "bos_id": config.data.bos_id if bos_id is None else int(bos_id)}
  if e.format == "int8":
    artifact.write(path, artifact.encode(flat, int8, meta))
    return
  int6 = {p: a for p, a in int8.items() if qat.is_int6(p, flat[p].shape)}
  artifact.write(path, artifact.encode(
      flat, int8, meta, int6, clip_quantiles=tuple(e.int6_clip_quantiles),
      scale_floor=float(e.int6_scale_floor)))


def roundtrip_in_fresh_process(path: str) -> dict:
  """`python -m jaxgpt.export PATH` in a new interpreter, run from an empty directory."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(jaxgpt.__file__)))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  with tempfile.TemporaryDirectory(prefix="jaxgpt-roundtrip-") as cwd:
    proc = subprocess.run([sys.executable, "-m", "jaxgpt.export", os.path.abspath(path)],
                          cwd=cwd, env=env, capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"round-trip evaluation of {path} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr[-4000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def budget_message(total: int, model: int, code: int, budget: int) -> str:
  parts = f"{total:,} bytes (model file {model:,} + code {code:,})"
  if total <= budget:
    return f"[jaxgpt] artifact {parts}: within the {budget:,}-byte budget ({budget - total:,} " \
           "to spare)"
  return (f"[jaxgpt] artifact {parts} is OVER the {budget:,}-byte budget by {total - budget:,} "
          "bytes: shrink the model (layers, d_model, vocabulary, untied head) or keep fewer "
          "tensors in fp16 (export.fp16_max_numel)")


def export_workdir(config, workdir: str, params: Any = None,
                   vocab_size: int | None = None, bos_id: int | None = None) -> dict:
  """Writes the artifact (`workdir/model.int8.zlib`, or `model.int6.zstd` / `.zlib` with
  export.format "int6") from `params` (default: the latest checkpoint's), runs the round-trip
  evaluation in a fresh process, merges the export keys into summary.json and returns them."""
  t0 = time.perf_counter()
  qat.check_export(config.export)
  if params is None:
    run, params, _ = load_params(config, workdir)
    vocab_size, bos_id = run.vocab_size, data.bos_id(config.data, run.spec)
  compressor = None if config.export.format == "int8" else artifact.default_compressor()
  path = os.path.join(workdir, artifact.filename(config.export.format, compressor))
  write_artifact(config, params, vocab_size, path, bos_id)
  rt = roundtrip_in_fresh_process(path)
  root = os.path.dirname(os.path.dirname(os.path.abspath(jaxgpt.__file__)))
  code_files = rt.pop("code_files")
  model_bytes = os.path.getsize(path)
  code_bytes = sum(os.path.getsize(os.path.join(root, f)) for f in code_files)
  budget = config.export.budget_bytes
  out = {"artifact_path": path, "artifact_format": config.export.format,
         "artifact_compression": "zlib-9" if compressor in (None, "zlib") else "zstd-22",
         "artifact_bytes": model_bytes + code_bytes,
         "artifact_model_bytes": model_bytes, "artifact_code_bytes": code_bytes,
         "artifact_code_files": code_files, "artifact_budget_bytes": budget,
         "artifact_within_budget": model_bytes + code_bytes <= budget, **rt,
         "export_time_s": time.perf_counter() - t0}
  summary_path = os.path.join(workdir, SUMMARY)
  summary = files.read_json(summary_path) if os.path.exists(summary_path) else {}
  summary.update(out)
  files.atomic_write_json(summary_path, summary)
  print(budget_message(out["artifact_bytes"], model_bytes, code_bytes, budget), file=sys.stderr,
        flush=True)
  return out


def export_trials(info, carry, summaries: list[dict]) -> None:
  """A sweep cohort with `export.at_end`: each finished trial's artifact in its `trial_<i>`
  folder, scored by the fresh-process round trip; the keys are merged into that trial's
  summary (the dict, which the sweep records, and trial_<i>/summary.json)."""
  cfg = info.configs[0]
  if cfg.export.format in folder.FORMATS:
    print(f"[jaxgpt] export.format={cfg.export.format!r} is not written for sweep trials "
          "(a folder per trial); train the configuration as a single run to export it",
          file=sys.stderr)
    return
  bos = data.bos_id(cfg.data, info.run.spec)
  for i, (trial_cfg, s) in enumerate(zip(info.configs, summaries)):
    if s["stop_reason"] not in FINISHED:
      continue
    params = jax.tree.map(lambda x, i=i: x[i], carry["state"].params)
    s.update(export_workdir(trial_cfg, os.path.join(info.workdir, f"trial_{i}"), params,
                            info.run.vocab_size, bos))


def _export_at_end(info, carry, summary) -> dict | None:
  """The run hook: a finished single run with `export.at_end` writes its artifact (or, with
  `export.format` "hf" / "safetensors", its folder); a sweep cohort, each trial's artifact."""
  cfg = info.configs[0]
  if not cfg.export.at_end:
    return None
  if isinstance(summary, list):
    if jax.process_count() > 1:
      print("[jaxgpt] export.at_end: sweep trials are exported by single-process sweeps only",
            file=sys.stderr)
    else:
      export_trials(info, carry, summary)
    return None
  if summary["stop_reason"] not in FINISHED:
    return None
  if jax.process_count() > 1:
    print("[jaxgpt] export.at_end needs a single process; run --mode export on the workdir",
          file=sys.stderr)
    return None
  if cfg.export.format in folder.FORMATS:  # a transformers or jaxgpt safetensors folder
    return folder.export_workdir(cfg, info.workdir, carry.params, info.run)
  return export_workdir(cfg, info.workdir, carry.params, info.run.vocab_size,
                        data.bos_id(cfg.data, info.run.spec))


registry.RUN_HOOKS.register("export", registry.RunHook(on_end=_export_at_end))
