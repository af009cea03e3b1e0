"""Each small transform of the Muon chain on its own, against a float64 numpy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt.optim import matrix
from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim.muon import (
  MuonDimensionNumbers,
  cautious_mask,
  ema_momentum,
  orthogonalize_update,
  scale_by_mars,
  scale_by_normuon,
  scale_by_shape,
  sgd_momentum,
)

DIMS = {"stack": MuonDimensionNumbers(1, 2), "heads": MuonDimensionNumbers(1, (2, 3))}


def _tree(seed):
  rng = np.random.default_rng(seed)
  return {"stack": jnp.asarray(rng.standard_normal((3, 12, 20)), jnp.float32),
          "heads": jnp.asarray(rng.standard_normal((2, 16, 4, 5)), jnp.float32)}


def _f64(tree):
  return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def _mats(x, key):
  """The (batch, fan_in, fan_out) view of leaf `key` (numpy)."""
  return x.reshape(x.shape[0], x.shape[1], -1)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_ema_momentum(nesterov, bias_correction):
  tx = ema_momentum(0.9, nesterov=nesterov, bias_correction=bias_correction)
  state = tx.init(_tree(0))
  m = {k: np.zeros_like(v) for k, v in _f64(_tree(0)).items()}
  for t in range(1, 4):
    g = _tree(t)
    u, state = tx.update(g, state)
    for k, gk in _f64(g).items():
      m[k] = 0.9 * m[k] + 0.1 * gk
      if nesterov and bias_correction:
        want = 0.9 * m[k] / (1 - 0.9**(t + 1)) + 0.1 * gk / (1 - 0.9**t)
      elif nesterov:
        want = 0.1 * gk + 0.9 * m[k]
      else:
        want = m[k] / (1 - 0.9**t) if bias_correction else m[k]
      np.testing.assert_allclose(np.asarray(u[k]), want, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(np.asarray(state.mu[k]), m[k], rtol=1e-5, atol=1e-6)
  assert int(state.count) == 3


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_momentum_with_warmup(nesterov):
  tx = sgd_momentum(0.9, nesterov=nesterov, warmup_steps=2, warmup_start=0.5)
  state = tx.init(_tree(0))
  m = {k: np.zeros_like(v) for k, v in _f64(_tree(0)).items()}
  for count, beta in enumerate([0.5, 0.7, 0.9, 0.9]):
    g = _tree(count + 1)
    u, state = tx.update(g, state)
    for k, gk in _f64(g).items():
      m[k] = beta * m[k] + gk
      want = gk + beta * m[k] if nesterov else m[k]
      np.testing.assert_allclose(np.asarray(u[k]), want, rtol=1e-5, atol=1e-5)


def test_momentum_dtype():
  tx = ema_momentum(0.9, mu_dtype=jnp.bfloat16)
  u, state = tx.update(_tree(1), tx.init(_tree(0)))
  assert state.mu["stack"].dtype == jnp.bfloat16 and u["stack"].dtype == jnp.float32


def test_scale_by_mars():
  beta, gamma = 0.9, 0.1
  tx = scale_by_mars(beta, gamma, dimension_numbers=DIMS)
  state = tx.init(_tree(0))
  prev = None
  for step in range(3):
    g = jax.tree.map(lambda x: 0.1 * (step + 1) * x, _tree(step + 1))  # clipped by step 2
    c, state = tx.update(g, state)
    for k, gk in _f64(g).items():
      want = gk if prev is None else gk + gamma * beta / (1 - beta) * (gk - prev[k])
      norms = np.sqrt((_mats(want, k)**2).sum(axis=(1, 2)))
      want = want / np.maximum(norms, 1.0).reshape((-1,) + (1,) * (want.ndim - 1))
      np.testing.assert_allclose(np.asarray(c[k]), want, rtol=1e-5, atol=1e-6)
    prev = _f64(g)
  chex.assert_trees_all_equal(state.prev_grad, g)


@pytest.mark.parametrize("method", ["newton_schulz", "polar_express"])
def test_orthogonalize_update(method):
  tx = orthogonalize_update(method, 5, dimension_numbers=DIMS)
  u = _tree(1)
  o, _ = tx.update(u, tx.init(u))
  for k, x in _f64(u).items():
    want = np.stack([ortho.closed_form(m, method, 5) for m in _mats(x, k)])
    np.testing.assert_allclose(_mats(np.asarray(o[k], np.float64), k), want, atol=2e-5)


def test_scale_by_normuon():
  tx = scale_by_normuon(0.8, dimension_numbers=DIMS)
  state = tx.init(_tree(0))
  assert state.nu["heads"].shape == (2, 1, 4, 5)  # one statistic per output neuron
  nu = {k: 0.0 for k in DIMS}
  for step in range(3):
    o_in = _tree(step + 1)
    o, state = tx.update(o_in, state)
    for k, x in _f64(o_in).items():
      nu[k] = 0.8 * nu[k] + 0.2 * (x**2).mean(axis=1, keepdims=True)
      scaled = x / np.sqrt(nu[k])
      norm = lambda y: np.sqrt((y**2).sum(axis=tuple(range(1, y.ndim)), keepdims=True))
      want = scaled * norm(x) / norm(scaled)
      np.testing.assert_allclose(np.asarray(o[k]), want, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(norm(np.asarray(o[k], np.float64)), norm(x), rtol=1e-5)


@pytest.mark.parametrize("update_scale,factor", [
    ("none", {"stack": 1.0, "heads": 1.0}),
    ("shape", {"stack": np.sqrt(20 / 12), "heads": np.sqrt(20 / 16)}),
    ("rms_match", {"stack": 0.3 * np.sqrt(20), "heads": 0.3 * np.sqrt(20)}),
])
def test_scale_by_shape(update_scale, factor):
  tx = scale_by_shape(update_scale, 0.3, dimension_numbers=DIMS)
  u = _tree(1)
  o, _ = tx.update(u, tx.init(u))
  for k, x in _f64(u).items():
    np.testing.assert_allclose(np.asarray(o[k]), x * factor[k], rtol=1e-6)
  lay = matrix.matrix_layout((3, 12, 20), DIMS["stack"])
  assert (lay.fan_in, lay.fan_out, lay.batch_axes) == (12, 20, (0,))


def test_cautious_mask():
  signs = jax.tree.map(jnp.sign, _tree(7))  # flips about half the signs
  inner = optax.stateless(lambda u, p: jax.tree.map(lambda x, s: 0.5 * x * s, u, signs))
  tx = cautious_mask(inner, dimension_numbers=DIMS)
  g = _tree(1)
  state = tx.init(g)
  out, state2 = tx.update(g, state)
  raw, _ = inner.update(g, inner.init(g))
  for k in g:
    o, gk = np.asarray(raw[k], np.float64), np.asarray(g[k], np.float64)
    mask = (o * gk > 0).astype(np.float64)
    assert 0 < mask.mean() < 1
    axes = tuple(range(1, o.ndim))
    want = o * mask * (o[0].size) / (mask.sum(axis=axes, keepdims=True) + 1)
    np.testing.assert_allclose(np.asarray(out[k]), want, rtol=1e-5, atol=1e-6)
  assert jax.tree.structure(state2) == jax.tree.structure(inner.init(g))  # inner's state
