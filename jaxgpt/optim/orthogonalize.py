"""Orthogonalize matrices with odd polynomial iterations: Newton–Schulz and Polar Express.

Each method maps `G = U S V^T` to `U p(S / n(G)) V^T`, where `n(G)` is the method's normalization
(about the Frobenius norm, so every singular value starts in [0, 1]) and `p` is a composition of
odd scalar polynomials. One iteration applies `p_t(s) = a_t s + b_t s^3 + c_t s^5` to every
singular value at once, computed with matrix products only:

    A = X X^T;  B = b_t A + c_t A A;  X = a_t X + B X

For wide X (rows <= cols) `A` is the small Gram matrix, so tall inputs are transposed first and
transposed back (the iteration commutes with transposition).

Methods (`method=`), each with its coefficient schedule and normalization:

  newton_schulz         Keller Jordan's fixed quintic (3.4445, -4.7750, 2.0315) at every step;
                        X = G / (||G||_F + 1e-7). Drives singular values into roughly
                        [0.7, 1.2], not to 1 (KellerJordan/Muon, modded-nanogpt).
  polar_express         a different (a_t, b_t, c_t) per step (Amsel, Persson, Musco, Gower 2025,
                        "The Polar Express", arXiv 2505.16932); X = G / (1.02 ||G||_F + 1e-6).
                        5 steps use modded-nanogpt's published list; any other step count uses
                        the list computed by the paper's optimal-composition procedure
                        (`optimal_composition`) with the same settings (l = 1e-3, eps = 0.02,
                        cushion = 0.02), which reproduces the published list to 1e-14.
                        `pe_lower` moves l: with 3 steps, l = 1e-3 leaves sigma/||G||_F >= 0.02
                        in [0.16, 1.87], l = 0.02 in [0.89, 1.10].
  newton_schulz_cubic   the classic cubic X (1.5 I - 0.5 X^T X) with X = G / (1.1 ||G||_F),
                        as in the time-to-target study (dnhkng/nGPT-muon), for exact reproduction.

Measured singular-value bands per method and step count are in docs/orthogonalization.md.

Layout: the last two axes are the matrix (fan_in, fan_out); every leading axis is a batch axis
(layers, experts, cohort), each matrix orthogonalized on its own. Callers move axes first (see
`jaxgpt.optim.muon`). Coefficients are float64 numpy constants fixed at trace time, so the
iteration is an unrolled chain of batched matmuls: fine under `jit`, `vmap` and GSPMD sharding.

Sharded matrices (`sharding=`, read against the ambient mesh of `jax.set_mesh`; no mesh or one
device: nothing changes). The result is the same in each case, up to summation order:
  "round_robin"  whole matrices are dealt out over the devices: the leading batch axis
                 (layers) is split over the mesh axes `deal_axes` picks (fewest matrices per
                 device), each device iterates on its own matrices, and the results go back to
                 the parameter's layout (modded-nanogpt's scheme, written as two sharding
                 constraints). Leaves without a batch axis are gathered. An uneven split
                 (12 layers on 8 devices: 2 per device) is padded by GSPMD.
  "gather"       every device gathers every matrix and iterates on all of them (replicated).
  "gspmd"        no constraint: GSPMD partitions the iteration's matmuls over the parameter's
                 own sharding, with collectives inside every step.
docs/sharding.md gives the measured comparison and the reason for the default.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxgpt import registry

Method = Literal["newton_schulz", "polar_express", "newton_schulz_cubic"]

# Keller Jordan's quintic: maximizes the slope at 0 while keeping the iteration bounded.
NEWTON_SCHULZ_COEFFS = (3.4445, -4.7750, 2.0315)

# The time-to-target study's cubic X (1.5 I - 0.5 X^T X), written in quintic form (c = 0).
CUBIC_COEFFS = (1.5, -0.5, 0.0)

# modded-nanogpt's 5-step Polar Express list (safety factor 1.02 on all but the last step).
POLAR_EXPRESS_5 = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

# Settings that reproduce POLAR_EXPRESS_5 with `optimal_composition`.
PE_LOWER = 1e-3
PE_SAFETY_EPS = 0.02
PE_CUSHION = 0.02



def _poly(coeffs, s):
  a, b, c = coeffs
  return a * s + b * s**3 + c * s**5


def minimax_odd_quintic(lo: float, hi: float) -> np.ndarray:
  """The odd quintic p minimizing max |1 - p(s)| over s in [lo, hi] (float64).

  Remez exchange: the optimum equioscillates at lo, q, r, hi (p - 1 = -E, +E, -E, +E), with q, r
  the interior critical points of p. Solve the 4x4 system for (a, b, c, E), move q, r to the new
  critical points (roots of p'(s) = a + 3 b s^2 + 5 c s^4), repeat until E settles.
  """
  if not 0 < lo <= hi:
    raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
  if lo / hi >= 1 - 5e-6:
    # The interval is a point: the limit is the degree-5 Taylor match of s -> 1 at hi.
    return np.array([15 / 8 / hi, -10 / 8 / hi**3, 3 / 8 / hi**5])
  q, r = (3 * lo + hi) / 4, (lo + 3 * hi) / 4
  err = np.inf
  for _ in range(100):
    pts = np.array([lo, q, r, hi])
    lhs = np.stack([pts, pts**3, pts**5, np.array([1.0, -1.0, 1.0, -1.0])], axis=1)
    a, b, c, new_err = np.linalg.solve(lhs, np.ones(4))
    disc = np.sqrt(9 * b * b - 20 * a * c)
    q, r = sorted(np.sqrt((-3 * b + np.array([1.0, -1.0]) * disc) / (10 * c)))
    if abs(new_err - err) < 1e-15:
      break
    err = new_err
  return np.array([a, b, c])


def optimal_composition(num_steps: int, lower: float = PE_LOWER,
                        safety_eps: float = PE_SAFETY_EPS,
                        cushion: float = PE_CUSHION) -> np.ndarray:
  """Polar Express coefficient list, shape (num_steps, 3), float64 (arXiv 2505.16932, Alg. 1).

  Start from the interval [l, u] = [lower, 1] that holds the normalized singular values. Per step:
  take the minimax odd quintic on [max(l, cushion * u), u] (the cushion stops a tiny l from
  producing huge coefficients), rescale it so that p(l) and p(u) are symmetric about 1
  (p <- 2 p / (p(l) + p(u))), divide (a, b, c) by ((1+eps), (1+eps)^3, (1+eps)^5) on every step but
  the last (safety against round-off pushing values past the interval), then l <- p(l),
  u <- 2 - l. With lower 1e-3, eps 0.02, cushion 0.02 and 5 steps this is modded-nanogpt's list.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  lo, hi = float(lower), 1.0
  out = []
  safety = np.array([1 + safety_eps, (1 + safety_eps)**3, (1 + safety_eps)**5])
  for step in range(num_steps):
    coeffs = minimax_odd_quintic(max(lo, cushion * hi), hi)
    coeffs = coeffs * 2.0 / (_poly(coeffs, lo) + _poly(coeffs, hi))
    if step < num_steps - 1:
      coeffs = coeffs / safety
    out.append(coeffs)
    lo = _poly(coeffs, lo)
    hi = 2.0 - lo
  return np.array(out)


def _polar_express_coefficients(steps: int, pe_lower: float) -> tuple:
  if steps == len(POLAR_EXPRESS_5) and pe_lower == PE_LOWER:
    return POLAR_EXPRESS_5
  return tuple(tuple(float(v) for v in row) for row in optimal_composition(steps, lower=pe_lower))


# Each method: its coefficient list and the (scale, eps) of X = G / (scale * ||G||_F + eps).
# The cubic's published normalization has no eps; 1e-7 only keeps a zero input finite.
registry.ORTHOGONALIZERS.register("newton_schulz", registry.Orthogonalizer(
    coefficients=lambda steps, _: (NEWTON_SCHULZ_COEFFS,) * steps, normalization=(1.0, 1e-7)))
registry.ORTHOGONALIZERS.register("polar_express", registry.Orthogonalizer(
    coefficients=_polar_express_coefficients, normalization=(1.0 + PE_SAFETY_EPS, 1e-6)))
registry.ORTHOGONALIZERS.register("newton_schulz_cubic", registry.Orthogonalizer(
    coefficients=lambda steps, _: (CUBIC_COEFFS,) * steps, normalization=(1.1, 1e-7)))
METHODS = registry.ORTHOGONALIZERS.names()
NORMALIZATION = {m: registry.ORTHOGONALIZERS.get(m).normalization for m in METHODS}  # a view


def _method(method: str) -> registry.Orthogonalizer:
  if method not in registry.ORTHOGONALIZERS:
    raise ValueError(f"orthogonalize method={method!r} is not one of {', '.join(METHODS)}")
  return registry.ORTHOGONALIZERS.get(method)


@functools.lru_cache(maxsize=None)
def _coefficients_cached(method: str, steps: int, pe_lower: float
                         ) -> tuple[tuple[float, float, float], ...]:
  return _method(method).coefficients(steps, pe_lower)


def coefficients(method: str, steps: int, pe_lower: float = PE_LOWER) -> np.ndarray:
  """Per-step (a, b, c) for `method` and `steps`, shape (steps, 3), float64 (cached).

  `pe_lower` (Polar Express only) is the smallest normalized singular value the list is
  designed to lift: 1e-3 is modded-nanogpt's choice. With fewer steps it costs accuracy on the
  rest of the spectrum: 3 steps designed for 1e-3 leave sigma/||G||_F >= 0.02 in [0.16, 1.87],
  designed for 0.02 in [0.89, 1.10] (docs/orthogonalization.md).
  """
  if int(steps) != steps or steps < 1:
    raise ValueError(f"steps must be a positive integer, got {steps!r}")
  return np.array(_coefficients_cached(method, int(steps), float(pe_lower)), dtype=np.float64)


def composed_polynomial(s, method: str = "newton_schulz", steps: int = 5,
                        coeffs=None, pe_lower: float = PE_LOWER) -> np.ndarray:
  """p_T(...p_1(s)) in float64: what the iteration does to a normalized singular value s."""
  s = np.asarray(s, dtype=np.float64)
  table = coefficients(method, steps, pe_lower) if coeffs is None else coeffs
  for row in np.asarray(table, np.float64):
    s = _poly(row, s)
  return s


def closed_form(g, method: str = "newton_schulz", steps: int = 5,
                pe_lower: float = PE_LOWER) -> np.ndarray:
  """Reference U p(S / n(G)) V^T of one matrix via float64 numpy SVD (tests, benchmarks)."""
  g = np.asarray(g, dtype=np.float64)
  scale, eps = _method(method).normalization
  u, s, vt = np.linalg.svd(g, full_matrices=False)
  s_out = composed_polynomial(s / (scale * np.linalg.norm(g) + eps), method, steps,
                              pe_lower=pe_lower)
  return (u * s_out) @ vt


SHARDINGS = ("round_robin", "gather", "gspmd")


def place_matrices(x: jax.Array, sharding: str | None) -> jax.Array:
  """Constrains a stack of matrices (batch..., m, n) to the layout `sharding` names (above)."""
  if sharding not in (None,) + SHARDINGS:
    raise ValueError(f"sharding={sharding!r} is not one of {', '.join(SHARDINGS)}")
  mesh = jax.sharding.get_abstract_mesh()
  if sharding in (None, "gspmd") or mesh.empty or mesh.size == 1:
    return x
  if any(t != jax.sharding.AxisType.Auto for t in mesh.axis_types):
    return x  # explicit axes carry their own sharding in the types
  axes = ()
  if sharding == "round_robin" and x.ndim > 2:
    axes = deal_axes(x.shape[0], dict(mesh.shape))
  spec = jax.P(axes, *([None] * (x.ndim - 1))) if axes else jax.P()
  return jax.lax.with_sharding_constraint(x, spec)


def deal_axes(num_matrices: int, mesh_shape: dict[str, int]) -> tuple[str, ...]:
  """The mesh axes to deal `num_matrices` whole matrices over: fewest matrices per device
  (ceil(num / ways)), then fewest ways (less padding and traffic); () means gather."""
  names = [a for a, n in mesh_shape.items() if n > 1]
  best = ()
  for mask in range(1, 1 << len(names)):
    axes = tuple(a for i, a in enumerate(names) if mask >> i & 1)
    ways = math.prod(mesh_shape[a] for a in axes)
    key = (-(-num_matrices // ways), ways)
    best_ways = math.prod(mesh_shape[a] for a in best)
    if key < (-(-num_matrices // best_ways), best_ways):
      best = axes
  return best


def default_compute_dtype():
  """bf16 on GPU (what Muon uses there: the iteration tolerates it, ~2x faster), else f32."""
  return jnp.bfloat16 if jax.default_backend() == "gpu" else jnp.float32


def orthogonalize(x: jax.Array, method: Method = "newton_schulz", steps: int = 5,
                  compute_dtype=None, *, eps: float | None = None,
                  pe_lower: float = PE_LOWER, coeffs=None, precision=None,
                  sharding: str | None = None) -> jax.Array:
  """Approximately orthogonalize the matrices in the last two axes of `x`: G -> U p(S/n(G)) V^T.

  Args:
    x: array (..., fan_in, fan_out); all leading axes are batch axes (layers, experts, cohort),
      and each matrix is normalized and iterated on its own.
    method: "newton_schulz", "polar_express" or "newton_schulz_cubic" (see the module docstring
      for each one's coefficients, normalization and references).
    steps: number of iterations (static Python int). 3, 5 and 7 are tested for every method.
    compute_dtype: dtype of the iteration's matmuls. None picks `default_compute_dtype()`:
      bf16 on GPU, f32 elsewhere. The Frobenius norm is always taken in f32.
    eps: overrides the additive eps of the method's registered normalization, e.g. 1e-8 to
      match `optax.contrib.muon`.
    pe_lower: Polar Express only: the smallest normalized singular value its list is built to
      lift (`coefficients`); 1e-3 reproduces modded-nanogpt at 5 steps.
    coeffs: overrides the coefficient list, a (steps, 3) array-like of (a, b, c).
    precision: passed to the matmuls (`jax.lax.Precision`); None is JAX's default.
    sharding: where the iteration runs on a sharded mesh: "round_robin", "gather", "gspmd" or
      None (= "gspmd"); see the module docstring.

  Returns:
    An array of x's shape and dtype. Zero or rank-deficient input gives a finite output (zero
    singular values stay zero: p is odd).

  The update rule, per matrix, with X wide (transpose a tall X first, transpose back at the end):
    X_0 = G / (scale * ||G||_F + eps);  for t in 1..steps:
      A = X X^T;  B = b_t A + c_t A A;  X = a_t X + B X
  """
  if x.ndim < 2:
    raise ValueError(f"orthogonalize needs an array of rank >= 2, got shape {x.shape}")
  entry = _method(method)
  table = (coefficients(method, steps, pe_lower) if coeffs is None
           else np.asarray(coeffs, np.float64))
  if table.ndim != 2 or table.shape[1] != 3:
    raise ValueError(f"coeffs must have shape (steps, 3), got {table.shape}")
  scale, default_eps = entry.normalization
  eps = default_eps if eps is None else eps
  dtype = default_compute_dtype() if compute_dtype is None else jnp.dtype(compute_dtype)
  out_dtype = x.dtype
  x = place_matrices(x, sharding)

  tall = x.shape[-2] > x.shape[-1]
  x_bmn = jnp.swapaxes(x, -1, -2) if tall else x  # wide: m <= n, so A is the small (m, m) Gram
  x32_bmn = x_bmn.astype(jnp.float32)
  norm_b11 = jnp.sqrt(jnp.sum(jnp.square(x32_bmn), axis=(-2, -1), keepdims=True))
  x_bmn = (x32_bmn / (scale * norm_b11 + eps)).astype(dtype)

  mm = functools.partial(jnp.matmul, precision=precision)
  for row in table:  # static, unrolled: a few batched matmuls per step
    a, b, c = (float(v) for v in row)  # Python floats are weakly typed: keep `dtype`
    a_bmm = mm(x_bmn, jnp.swapaxes(x_bmn, -1, -2))
    poly_bmm = b * a_bmm + c * mm(a_bmm, a_bmm) if c != 0 else b * a_bmm
    x_bmn = a * x_bmn + mm(poly_bmm, x_bmn)

  out = jnp.swapaxes(x_bmn, -1, -2) if tall else x_bmn
  return place_matrices(out.astype(out_dtype), sharding)
