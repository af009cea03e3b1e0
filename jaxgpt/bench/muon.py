"""Muon benchmarks (scripts/bench_muon.py):
optimizer-update time on a GPT's hidden matrices, and orthogonality.

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

import os
import platform
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app

from jaxgpt.bench import output, timing
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim.muon import MuonDimensionNumbers, muon

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
  """Update cases (name -> median_ms, min_ms, first_call_s, times_ms), timed round-robin;
  `only`: the cases whose name contains one of these strings."""
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
  chosen = {}
  for name, build in cases.items():
    if not only or any(pattern in name for pattern in only):
      fn, args = build()
      chosen[name] = lambda fn=fn, args=args: fn(*args)
  first, times = timing.interleaved(chosen, repeats)
  return [{"case": name, "median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts),
           "first_call_s": first[name], "times_ms": [1e3 * t for t in ts]}
          for name, ts in times.items()]


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
  """Singular values of each method's output on the band sigma / ||G||_F >= floor."""
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


UPDATES = output.Table(
    output.Column("case", "case", width=44, left=True),
    output.Column("median ms", "median_ms", ".1f", width=10),
    output.Column("runs ms", lambda r: f"{min(r['times_ms']):.1f}-{max(r['times_ms']):.1f}",
                  width=16),
    output.Column("first call s", "first_call_s", ".1f", width=12))
ORTHOGONALITY = output.Table(
    output.Column("input", "input", width=22, left=True),
    output.Column("method", "method", width=26, left=True),
    output.Column("steps", "steps", "d", width=5),
    output.Column("dtype", "dtype", width=8),
    output.Column("n", "n_in_band", "d", width=4),
    output.Column("min", "sigma_min", ".4f", width=7),
    output.Column("max", "sigma_max", ".4f", width=7),
    output.Column("max|s-1|", "max_abs_sigma_minus_1", ".4f", width=9),
    output.Column("scalar band", lambda r: "[{:.4f}, {:.4f}]".format(*r["scalar_band"]),
                  width=18))


def run(layers: int, d_model: int, heads: int, repeats: int, ortho_size: int,
        skip_timing: bool = False, cases=(), smoke: bool = False,
        out: str = "bench_muon.json") -> dict:
  """Both parts (the update timing unless `skip_timing`), printed as tables, written to `out`."""
  if d_model % heads:
    raise app.UsageError(f"--d-model={d_model} is not a multiple of --heads={heads}")
  meta = {"load_average_at_start": os.getloadavg(), "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "cpu_count": os.cpu_count(), "platform": platform.platform(),
          "python": sys.version.split()[0], "jax": jax.__version__, "optax": optax.__version__,
          "layers": layers, "d_model": d_model, "heads": heads,
          "repeats": repeats, "smoke": smoke, "ns_steps": 5}
  print(f"jax {jax.__version__} on {jax.default_backend()} ({os.cpu_count()} cpus); "
        f"{layers} x {d_model} GPT hidden matrices, 5 Newton–Schulz steps", flush=True)
  update_rows = [] if skip_timing else bench_updates(layers, d_model, heads, repeats, cases)
  if update_rows:
    print(UPDATES.render(update_rows), flush=True)
  ortho_rows = bench_orthogonality(ortho_size)
  meta["load_average_at_end"] = os.getloadavg()  # other jobs on a shared machine skew timings
  result = {"meta": meta, "updates": update_rows, "orthogonality": ortho_rows}
  output.emit(result, out, ORTHOGONALITY, ortho_rows, title=(
      f"\northogonality (sigma/||G||_F >= 0.02 directions), {ortho_size} x {ortho_size}"))
  return result
