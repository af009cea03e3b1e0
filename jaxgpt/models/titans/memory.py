"""The Titans neural long-term memory (Behrouz, Zhong, Mirrokni 2025, arXiv 2501.00663, Sec. 3),
as pure functions of the memory weights. One sequence and one memory head; the model vmaps
over batch rows and heads, so every sequence has its own memory (docs/titans.md).

The memory is an MLP M_W (weights W = (W_1, ..., W_L), SiLU between layers, optionally
residual: M(x) = x + mlp(x)). Reading it is a forward pass, y = M_W(q). Writing it is one step
of gradient descent with momentum and weight decay on the associative loss

    l(W; k, v) = ||M_W(k) - v||^2                              (Eq. 12)
    S_t = eta_t S_{t-1} - theta_t grad l(W_{t'}; k_t, v_t)     (surprise with momentum, Eq. 13-14)
    W_t = (1 - alpha_t) W_{t-1} + S_t                          (forgetting)

Mini-batch (chunked) form, Sec. 3.2: the sequence is cut into chunks of `chunk` tokens; every
gradient of a chunk is taken at the chunk-start weights W_{t'}, theta_t is per token, eta and
alpha are per chunk. Inside a chunk both recurrences are linear (h_t = a_t h_{t-1} + x_t), so
the chunk-end (W, S) is a fixed combination of W_{t'}, S_{t'} and the per-token surprises: the
coefficients come from two `lax.associative_scan`s, and the surprises enter as two weighted
gradients (`vmap(grad)` over the weightings), so no per-token copy of the weights is ever
materialised. Across chunks a `lax.scan` carries (W, S), its body under `jax.checkpoint`.

Bounded writes (`max_norm`, not in the paper): gradient descent on an MLP memory is unstable
once the step times the loss curvature passes 2, and that curvature grows with the weights, so
a large write makes the next one larger and the weights overflow (docs/titans.md "Bounded
writes"). With `max_norm`, a chunk whose weighted gradients (the write into W or into S) have a
larger global norm has its theta scaled down so that the larger of the two is `max_norm`: the
recurrence above with a smaller, per-chunk step. None: the exact recurrence.

Reading is causal by construction: every token of chunk c reads the chunk-start weights, which
hold only the chunks that ended before it (per-chunk eta / alpha, pooled over the chunk, then
never reach a token of their own chunk). With chunk 1 this is the token-by-token recurrence:
y_t = M_{W_{t-1}}(q_t), then write (k_t, v_t). Everything is differentiable: the outer gradient
flows through the inner gradient (second order) into W_0, the projections and the gates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Weights = tuple[jax.Array, ...]  # (W_1 [k, f], ..., W_L [f, k]) of one head; L = 1: ([k, k],)


class State(NamedTuple):
  """The inner state of one memory: weights W and momentum S (same structure)."""
  w: Weights
  s: Weights


def layer_shapes(dim: int, width: int, layers: int) -> tuple[tuple[int, int], ...]:
  """(in, out) of each memory-MLP matrix: dim -> width -> ... -> width -> dim."""
  if layers == 1:
    return ((dim, dim),)
  sizes = (dim,) + (width,) * (layers - 1) + (dim,)
  return tuple(zip(sizes[:-1], sizes[1:]))


def mlp(w: Weights, x_k: jax.Array, residual: bool) -> jax.Array:
  """M_W(x) for x [..., k]: x W_1, SiLU, ..., W_L (no activation after the last); + x."""
  h = x_k
  for i, w_io in enumerate(w):
    h = h @ w_io
    if i < len(w) - 1:
      h = jax.nn.silu(h)
  return x_k + h if residual else h


def assoc_loss(w: Weights, k_k: jax.Array, v_k: jax.Array, residual: bool) -> jax.Array:
  """l(W; k, v) = ||M_W(k) - v||^2 for one token (summed over the value dim)."""
  return jnp.sum(jnp.square(mlp(w, k_k, residual) - v_k))


def weighted_loss(w: Weights, k_bk: jax.Array, v_bk: jax.Array, c_b: jax.Array,
                  residual: bool) -> jax.Array:
  """sum_i c_i l(W; k_i, v_i)."""
  err = mlp(w, k_bk, residual) - v_bk
  return jnp.sum(c_b * jnp.sum(jnp.square(err), axis=-1))


def weighted_grads(w: Weights, k_bk: jax.Array, v_bk: jax.Array, c_rb: jax.Array,
                   residual: bool) -> Weights:
  """sum_i c_ri grad l(W; k_i, v_i) for each row r of c: `vmap(grad)` over the weightings,
  leaves [R, ...]; one batched backward pass per row, no per-token gradient in memory."""
  return jax.vmap(jax.grad(weighted_loss), in_axes=(None, None, None, 0, None))(
      w, k_bk, v_bk, c_rb, residual)


def linear_scan(a_b: jax.Array, x_b: Any, h0: Any) -> Any:
  """h_t = a_t h_{t-1} + x_t for t = 1..b from h_0, every h_t (leaves [b, ...]), as one
  associative scan: (a1, x1) . (a2, x2) = (a1 a2, a2 x1 + x2), with h_0 folded into x_1."""

  def bcast(a, x):
    return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))

  x_b = jax.tree.map(lambda x, h: x.at[0].add(a_b[0] * h), x_b, h0)

  def combine(left, right):
    (a1, x1), (a2, x2) = left, right
    return a1 * a2, jax.tree.map(lambda u, v: bcast(a2, v) * u + v, x1, x2)

  return jax.lax.associative_scan(combine, (a_b, x_b))[1]


def chunk_coefficients(eta_b: jax.Array, alpha_b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The chunk-end W and S as combinations of (W_0, S_0, u_1, ..., u_b): rows [b + 2].

  The recurrences S_t = eta_t S_{t-1} + u_t, W_t = (1 - alpha_t) W_{t-1} + S_t are linear, so
  they run (two associative scans) on coefficient vectors over that basis instead of on the
  weights: u_t is the basis vector e_{t+2}, S_0 = e_1, W_0 = e_0.
  """
  b = eta_b.shape[0]
  basis = jnp.eye(b + 2, dtype=eta_b.dtype)
  s_coef = linear_scan(eta_b, basis[2:], basis[1])
  w_coef = linear_scan(1.0 - alpha_b, s_coef, basis[0])
  return w_coef[-1], s_coef[-1]


def norm_bound(g: Weights, max_norm: float) -> jax.Array:
  """min(1, max_norm / max_r ||g_r||), the global norm of each row r of leaves [R, ...]; via
  rsqrt(max(., max_norm^2)), so its gradient is finite at g = 0 too (no sqrt of zero)."""
  sq = sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1) for x in g)
  return max_norm * jax.lax.rsqrt(jnp.maximum(jnp.max(sq), max_norm ** 2))


def chunk_update(state: State, k_bk: jax.Array, v_bk: jax.Array, theta_b: jax.Array,
                 eta: jax.Array, alpha: jax.Array, residual: bool,
                 max_norm: float | None = None) -> State:
  """(W, S) after one chunk of b tokens: surprises u_i = -theta_i grad l(W_{t'}; k_i, v_i) at
  the chunk-start weights W_{t'}, then S_t = eta S_{t-1} + u_t, W_t = (1 - alpha) W_{t-1} + S_t
  token by token (`chunk_coefficients`); eta, alpha: scalars (per chunk) or [b]. `max_norm`:
  theta scaled down for this chunk so neither write has a global norm above it (`norm_bound`)."""
  b = k_bk.shape[0]
  w_coef, s_coef = chunk_coefficients(jnp.broadcast_to(eta, (b,)),
                                      jnp.broadcast_to(alpha, (b,)))
  # sum_i coef_i u_i = -sum_i coef_i theta_i grad l_i: one weighted gradient for W, one for S.
  g = weighted_grads(state.w, k_bk, v_bk, jnp.stack([w_coef[2:], s_coef[2:]]) * theta_b,
                     residual)  # leaves [2, ...]: (for W, for S)
  if max_norm is not None:  # the gradients are linear in theta: scaling them scales theta
    scale = norm_bound(g, max_norm)
    g = tuple(scale * g_i for g_i in g)
  w = tuple(w_coef[0] * w0 + w_coef[1] * s0 - g_i[0] for w0, s0, g_i in zip(state.w, state.s, g))
  s = tuple(s_coef[1] * s0 - g_i[1] for s0, g_i in zip(state.s, g))
  return State(w, s)


def memory_scan(state: State, k_tk: jax.Array, v_tk: jax.Array, q_tk: jax.Array,
                theta_t: jax.Array, eta_c: jax.Array, alpha_c: jax.Array, chunk: int,
                residual: bool, remat: bool = True,
                max_norm: float | None = None) -> tuple[State, jax.Array]:
  """Reads and writes a whole sequence in chunks; returns the final state and y_t [T, k].

  k, v, q: [T, k] with T a multiple of `chunk`; theta_t: [T]; eta_c, alpha_c: [T / chunk].
  Token t of chunk c reads the weights after chunks 0..c-1 (y_t = M(q_t)), then chunk c writes.
  `max_norm`: bounded writes (`chunk_update`); None: the exact recurrence.
  """
  t = k_tk.shape[0]
  if t % chunk:
    raise ValueError(f"sequence length {t} is not a multiple of the chunk size {chunk}")
  n = t // chunk
  split = lambda x: x.reshape((n, chunk) + x.shape[1:])  # noqa: E731

  def body(carry: State, xs):
    k_bk, v_bk, q_bk, theta_b, eta, alpha = xs
    y_bk = mlp(carry.w, q_bk, residual)
    return chunk_update(carry, k_bk, v_bk, theta_b, eta, alpha, residual, max_norm), y_bk

  if remat:
    body = jax.checkpoint(body)
  xs = (split(k_tk), split(v_tk), split(q_tk), split(theta_t), eta_c, alpha_c)
  state, y_nbk = jax.lax.scan(body, state, xs)
  return state, y_nbk.reshape(t, -1)


def chunk_mean(x_t: jax.Array, chunk: int) -> jax.Array:
  """Mean over each chunk of the leading axis: [T, ...] -> [T / chunk, ...]."""
  return x_t.reshape((x_t.shape[0] // chunk, chunk) + x_t.shape[1:]).mean(axis=1)


def zeros_like(w: Weights) -> Weights:
  return tuple(jnp.zeros_like(x) for x in w)
