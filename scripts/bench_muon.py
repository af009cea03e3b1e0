"""Muon benchmarks: optimizer-update time on a GPT's hidden matrices, and orthogonality.

  python scripts/bench_muon.py --out runs/bench_muon.json          # 12 x 768 GPT (minutes on CPU)
  python scripts/bench_muon.py --smoke --out /tmp/bench_muon.json  # tiny, seconds (tests run it)
  python scripts/bench_muon.py --cases "ours f32" --cases optax.adamw   # only those update cases

1. Time per optimizer update (jitted, median of --repeats runs after a warm-up, with
   block_until_ready) on the hidden-matrix tree of an L x d GPT: per layer q, k, v (d, H, d/H),
   o (H, d/H, d), fc (d, 4d), proj (4d, d). Variants: ours (f32 and bf16 iteration) on per-matrix
   leaves and on stacked (L, ...) leaves; optax.contrib.muon on the same trees (its own NS runs
   in the input dtype); optax.adamw; and orthogonalization alone, batched over stacked layers vs a
   per-matrix loop inside one jit.
2. Orthogonality: singular values of the output against method and steps (3, 5, 7) on inputs of
   stated conditioning: a Gaussian 256 x 256 matrix, restricted to the directions with
   sigma / ||G||_F >= 0.02 (read off diag(U^T O V)), and a 256 x 256 matrix with prescribed
   spectrum sigma / ||G||_F log-spaced from 0.02 up (to 0.12 at 256 x 256); f32 and bf16
  iteration. The scalar band (float64 composed polynomial over [0.02, 1]) is printed beside.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from jaxgpt import cli
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim.muon import MuonDimensionNumbers, muon

_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny sizes (seconds).")
_OUT = flags.DEFINE_string("out", "bench_muon.json", "JSON output path.")
_LAYERS = flags.DEFINE_integer("layers", 12, "GPT layers.", lower_bound=1)
_D_MODEL = flags.DEFINE_integer("d-model", 768, "GPT width d.", lower_bound=1)
_HEADS = flags.DEFINE_integer("heads", 12, "Attention heads H.", lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per update case.", lower_bound=1)
_ORTHO_SIZE = flags.DEFINE_integer("ortho-size", 256, "n of the n x n orthogonality inputs.",
                                   lower_bound=2)
_SKIP_TIMING = flags.DEFINE_bool("skip-timing", False, "Only the orthogonality part.")
_CASES = flags.DEFINE_multi_string("cases", [], "Time only the update cases whose name contains "
                                   "this (repeatable; names hold commas).")

DIMS = {  # name -> (shape without layers axis given d, H, F; fan_in axes; fan_out axes)
    "q": (lambda d, h, f: (d, h, d // h), (0,), (1, 2)),
    "k": (lambda d, h, f: (d, h, d // h), (0,), (1, 2)),
    "v": (lambda d, h, f: (d, h, d // h), (0,), (1, 2)),
    "o": (lambda d, h, f: (h, d // h, d), (0, 1), (2,)),
    "fc": (lambda d, h, f: (d, f), (0,), (1,)),
    "proj": (lambda d, h, f: (f, d), (0,), (1,)),
}


def hidden_trees(layers, d, heads, key=0):
  """(per-matrix tree, its dims), (stacked tree, its dims): the same numbers both ways."""
  f = 4 * d
  rng = np.random.default_rng(key)
  stacked, stacked_dims = {}, {}
  for name, (shape_fn, fi, fo) in DIMS.items():
    shape = shape_fn(d, heads, f)
    stacked[name] = jnp.asarray(rng.standard_normal((layers,) + shape) * 0.02, jnp.float32)
    stacked_dims[name] = MuonDimensionNumbers(tuple(a + 1 for a in fi), tuple(a + 1 for a in fo))
  per = {f"blocks_{i}": {n: stacked[n][i] for n in DIMS} for i in range(layers)}
  per_dims = {f"blocks_{i}": {n: MuonDimensionNumbers(DIMS[n][1], DIMS[n][2]) for n in DIMS}
              for i in range(layers)}
  return (per, per_dims), (stacked, stacked_dims)


def bench_updates(layers, d, heads, repeats, only=()):
  (per, per_dims), (stacked, stacked_dims) = hidden_trees(layers, d, heads)
  grads_per = jax.tree.map(lambda p: p * 0.5 + 0.01, per)
  grads_stacked = jax.tree.map(lambda p: p * 0.5 + 0.01, stacked)

  def optimizer_case(tx, params, grads):
    state = tx.init(params)
    step = jax.jit(tx.update)
    return step, (grads, state, params)

  cases = {
      "ours f32, per-matrix leaves": lambda: optimizer_case(
          muon(0.02, dimension_numbers=per_dims, compute_dtype=jnp.float32), per, grads_per),
      "ours f32, stacked leaves": lambda: optimizer_case(
          muon(0.02, dimension_numbers=stacked_dims, compute_dtype=jnp.float32), stacked,
          grads_stacked),
      "ours bf16, stacked leaves": lambda: optimizer_case(
          muon(0.02, dimension_numbers=stacked_dims, compute_dtype=jnp.bfloat16), stacked,
          grads_stacked),
      "optax.contrib.muon, per-matrix leaves": lambda: optimizer_case(
          optax.contrib.muon(0.02, muon_weight_dimension_numbers=per_dims), per, grads_per),
      "optax.contrib.muon, stacked leaves": lambda: optimizer_case(
          optax.contrib.muon(0.02, muon_weight_dimension_numbers=stacked_dims), stacked,
          grads_stacked),
      "optax.adamw, stacked leaves": lambda: optimizer_case(
          optax.adamw(1e-3), stacked, grads_stacked),
  }

  # Orthogonalization alone: batched over the layers axis vs a per-matrix loop, one jit each.
  mats = {n: jnp.asarray(p).reshape(layers, int(np.prod([p.shape[a] for a in
                                                         stacked_dims[n].reduction_axis])), -1)
          for n, p in stacked.items()}

  def batched(dtype):
    return jax.jit(lambda ms: {n: ortho.orthogonalize(m, "newton_schulz", 5, dtype)
                               for n, m in ms.items()}), (mats,)

  def looped(dtype):
    return jax.jit(lambda ms: {n: jnp.stack([ortho.orthogonalize(m[i], "newton_schulz", 5, dtype)
                                             for i in range(layers)])
                               for n, m in ms.items()}), (mats,)

  cases["orthogonalize f32, batched over layers"] = lambda: batched(jnp.float32)
  cases["orthogonalize f32, per-matrix loop"] = lambda: looped(jnp.float32)
  cases["orthogonalize bf16, batched over layers"] = lambda: batched(jnp.bfloat16)
  cases["orthogonalize bf16, per-matrix loop"] = lambda: looped(jnp.bfloat16)

  # Compile and warm up every case, then time them round-robin (case 1, 2, ..., 1, 2, ...) so
  # that drifting load from other jobs on a shared machine hits every case alike.
  built = {}
  for name, build in cases.items():
    if only and not any(pattern in name for pattern in only):
      continue
    fn, args = build()
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    built[name] = (fn, args, time.perf_counter() - t0)
  times = {name: [] for name in built}
  for _ in range(repeats):
    for name, (fn, args, _) in built.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - t0)
  rows = []
  for name, (_, _, first) in built.items():
    median = statistics.median(times[name])
    rows.append({"case": name, "median_ms": 1e3 * median, "min_ms": 1e3 * min(times[name]),
                 "first_call_s": first,
                 "times_ms": [1e3 * t for t in times[name]]})
    spread = f"{1e3 * min(times[name]):.1f}-{1e3 * max(times[name]):.1f}"
    print(f"  {name:<42s} {1e3 * median:10.1f} ms  (runs {spread} ms; first call {first:5.1f} s)",
          flush=True)
  return rows


def _singular_values_on_band(g, out, floor):
  """Output singular values paired with input ones: diag(U^T O V), for sigma/||G||_F >= floor."""
  u, s, vt = np.linalg.svd(g)
  ratio = s / np.linalg.norm(g)
  diag = np.einsum("ij,ik,kj->j", u, out, vt.T)
  return diag[ratio >= floor * (1 - 1e-9)], ratio


def _log_spectrum(n, floor):
  """n values log-spaced from `floor` up, with sum of squares 1 (sigma / ||G||_F of a matrix)."""
  lo, hi = floor, 1.0
  for _ in range(200):  # bisect the top value
    top = 0.5 * (lo + hi)
    lo, hi = (top, hi) if np.sum(np.geomspace(floor, top, n)**2) < 1 else (lo, top)
  r = np.geomspace(floor, top, n)
  return r / np.linalg.norm(r)


def bench_orthogonality(n, floor=0.02):
  rng = np.random.default_rng(0)
  gaussian = rng.standard_normal((n, n))
  r = _log_spectrum(n, floor)
  qu, _ = np.linalg.qr(rng.standard_normal((n, n)))
  qv, _ = np.linalg.qr(rng.standard_normal((n, n)))
  spectrum = (qu * r) @ qv.T
  inputs = {f"gaussian {n}x{n}": gaussian, f"prescribed {n}x{n}": spectrum}
  configs = [("newton_schulz", {}), ("polar_express", {}),
             ("polar_express", {"pe_lower": floor}), ("newton_schulz_cubic", {})]
  rows = []
  for input_name, g in inputs.items():
    ratio = np.linalg.svd(g, compute_uv=False) / np.linalg.norm(g)
    for method, kw in configs:
      for steps in (3, 5, 7):
        s_grid = np.linspace(floor, 1.0, 100001) / ortho.NORMALIZATION[method][0]
        scalar = ortho.composed_polynomial(s_grid, method, steps, **kw)
        for dtype in (jnp.float32, jnp.bfloat16):
          out = ortho.orthogonalize(jnp.asarray(g, jnp.float32), method, steps, dtype, **kw)
          sv, _ = _singular_values_on_band(g, np.asarray(out, np.float64), floor)
          rows.append({
              "input": input_name, "method": method + (f" (l={kw['pe_lower']})" if kw else ""),
              "steps": steps, "dtype": jnp.dtype(dtype).name,
              "n_in_band": int(sv.size), "input_ratio_min": float(ratio.min()),
              "sigma_min": float(sv.min()), "sigma_max": float(sv.max()),
              "max_abs_sigma_minus_1": float(np.abs(sv - 1).max()),
              "scalar_band": [float(scalar.min()), float(scalar.max())],
          })
  return rows


def main(argv):
  cli.no_arguments(argv)
  layers, d_model, heads = _LAYERS.value, _D_MODEL.value, _HEADS.value
  repeats, ortho_size = _REPEATS.value, _ORTHO_SIZE.value
  if _SMOKE.value:
    layers, d_model, heads, repeats, ortho_size = 2, 32, 4, 1, 24
  if d_model % heads:
    raise app.UsageError(f"--d-model={d_model} is not a multiple of --heads={heads}")

  meta = {"load_average_at_start": os.getloadavg(), "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "python": sys.version.split()[0], "jax": jax.__version__, "optax": optax.__version__,
          "layers": layers, "d_model": d_model, "heads": heads,
          "repeats": repeats, "smoke": _SMOKE.value, "ns_steps": 5}
  print(f"jax {jax.__version__} on {jax.default_backend()} ({os.cpu_count()} cpus); "
        f"{layers} x {d_model} GPT hidden matrices, 5 Newton–Schulz steps", flush=True)
  update_rows = [] if _SKIP_TIMING.value else bench_updates(layers, d_model, heads, repeats,
                                                            _CASES.value)

  print(f"\northogonality (sigma/||G||_F >= 0.02 directions), {ortho_size} x {ortho_size}")
  ortho_rows = bench_orthogonality(ortho_size)
  print(f"  {'input':<20s} {'method':<26s} {'steps':>5s} {'dtype':>8s} {'n':>4s} "
        f"{'min':>7s} {'max':>7s} {'max|s-1|':>9s}  scalar band")
  for r in ortho_rows:
    print(f"  {r['input']:<20s} {r['method']:<26s} {r['steps']:5d} {r['dtype']:>8s} "
          f"{r['n_in_band']:4d} {r['sigma_min']:7.4f} {r['sigma_max']:7.4f} "
          f"{r['max_abs_sigma_minus_1']:9.4f}  [{r['scalar_band'][0]:.4f}, "
          f"{r['scalar_band'][1]:.4f}]")

  meta["load_average_at_end"] = os.getloadavg()  # other jobs on a shared machine skew timings
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump({"meta": meta, "updates": update_rows, "orthogonality": ortho_rows}, f, indent=1)
  print(f"\nwrote {_OUT.value}")
  return 0


if __name__ == "__main__":
  cli.run(main)
