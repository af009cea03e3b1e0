"""Newton–Schulz / Polar Express / cubic against the float64 SVD closed form U p(S/n(G)) V^T."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt.optim import orthogonalize as ortho

METHODS = ("newton_schulz", "polar_express", "newton_schulz_cubic")
STEPS = (3, 5, 7)


def prescribed(m, n, ratios, seed=0):
  """An m x n matrix whose singular values over ||G||_F are `ratios` (scaled to sum-square 1)."""
  rng = np.random.default_rng(seed)
  k = min(m, n)
  s = np.asarray(ratios, np.float64)
  assert s.shape == (k,)
  s = s / np.linalg.norm(s) * 3.7  # any overall scale: the method normalizes it away
  u, _ = np.linalg.qr(rng.standard_normal((m, k)))
  v, _ = np.linalg.qr(rng.standard_normal((n, k)))
  return (u * s) @ v.T


def band_input(m=48, n=80, seed=0):
  """sigma / ||G||_F from 0.02 up (log-spaced): the conditioning the bands are stated for."""
  k = min(m, n)
  r = np.geomspace(1.0, 8.0, k)
  r = r / np.linalg.norm(r)
  r = np.maximum(r, 0.02)  # lift the bottom so that min ratio is >= 0.02 after renormalizing
  r = r / np.linalg.norm(r)
  assert r.min() >= 0.0199
  return prescribed(m, n, r, seed)


def test_optimal_composition_reproduces_published_5_step_list():
  got = ortho.optimal_composition(5, lower=1e-3, safety_eps=0.02, cushion=0.02)
  np.testing.assert_allclose(got, np.array(ortho.POLAR_EXPRESS_5), rtol=0, atol=1e-6)
  # It is in fact exact to float64 round-off.
  assert np.abs(got - np.array(ortho.POLAR_EXPRESS_5)).max() < 1e-12
  # Applying the safety factor to the last step too misses by about 0.1.
  scaled_last = got[-1] / np.array([1.02, 1.02**3, 1.02**5])
  assert np.abs(scaled_last - got[-1]).max() > 0.04


def test_minimax_quintic_equioscillates():
  lo, hi = 0.05, 1.0
  coeffs = ortho.minimax_odd_quintic(lo, hi)
  s = np.linspace(lo, hi, 20001)
  err = np.abs(1 - ortho._poly(coeffs, s))
  e_lo, e_hi = abs(1 - ortho._poly(coeffs, lo)), abs(1 - ortho._poly(coeffs, hi))
  np.testing.assert_allclose([e_lo, e_hi], [err.max()] * 2, rtol=1e-9)


def test_coefficient_lists():
  np.testing.assert_array_equal(ortho.coefficients("newton_schulz", 3),
                                np.array([ortho.NEWTON_SCHULZ_COEFFS] * 3))
  np.testing.assert_array_equal(ortho.coefficients("polar_express", 5),
                                np.array(ortho.POLAR_EXPRESS_5))
  for k in (3, 7):
    np.testing.assert_allclose(ortho.coefficients("polar_express", k),
                               ortho.optimal_composition(k), rtol=0, atol=0)
  # 7 steps converge: every sigma / ||G||_F in [1e-3, 1] lands within 1e-6 of 1.
  s = np.linspace(1e-3, 1, 100001) / 1.02
  assert np.abs(ortho.composed_polynomial(s, "polar_express", 7) - 1).max() < 1e-6
  with pytest.raises(ValueError, match="method"):
    ortho.coefficients("svd", 5)
  with pytest.raises(ValueError, match="steps"):
    ortho.coefficients("newton_schulz", 0)


# Tolerances: max abs error of the output against the float64 closed form, on band_input
# (sigma / ||G||_F in [0.02, 0.3]); output singular values are O(1).
TOL = {jnp.float32: 1e-5, jnp.bfloat16: 6e-2}  # measured: <= 1.3e-6 and <= 0.046


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("method", METHODS)
def test_matches_closed_form(method, steps, dtype):
  g = band_input()
  want = ortho.closed_form(g, method, steps)
  got = ortho.orthogonalize(jnp.asarray(g, jnp.float32), method, steps, compute_dtype=dtype)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=TOL[dtype])


def _output_band(method, steps, dtype, **kw):
  g = band_input(64, 96, seed=1)
  out = ortho.orthogonalize(jnp.asarray(g, jnp.float32), method, steps, dtype, **kw)
  s = np.linalg.svd(np.asarray(out, np.float64), compute_uv=False)
  return s.min(), s.max()


@pytest.mark.parametrize("method,lo,hi", [("newton_schulz", 0.68, 1.13),
                                          ("polar_express", 0.86, 1.14)])
def test_reference_bands_5_steps(method, lo, hi):
  # The float64 scalar band over sigma / ||G||_F in [0.02, 1] rounds to docs/formulas.md's band.
  s = np.linspace(0.02, 1.0, 200001) / ortho.NORMALIZATION[method][0]
  p = ortho.composed_polynomial(s, method, 5)
  assert abs(p.min() - lo) < 0.005 and abs(p.max() - hi) < 0.005, (p.min(), p.max())
  # A real matrix with that conditioning stays inside the band, in f32 and (looser) in bf16.
  s_min, s_max = _output_band(method, 5, jnp.float32)
  assert lo - 0.005 <= s_min and s_max <= hi + 0.005, (s_min, s_max)
  s_min, s_max = _output_band(method, 5, jnp.bfloat16)
  assert lo - 0.05 <= s_min and s_max <= hi + 0.05, (s_min, s_max)


def test_polar_express_lower_bound_option():
  # 3 steps built for 1e-3 cannot lift 0.02 far; built for 0.02 they land in about [0.88, 1.11].
  s_min, s_max = _output_band("polar_express", 3, jnp.float32)
  assert s_max > 1.5
  s_min, s_max = _output_band("polar_express", 3, jnp.float32, pe_lower=0.02)
  assert 0.85 < s_min and s_max < 1.15, (s_min, s_max)


@pytest.mark.parametrize("method", METHODS)
def test_tall_is_transpose_of_wide(method):
  g = jnp.asarray(band_input(40, 72), jnp.float32)
  wide = ortho.orthogonalize(g, method)
  tall = ortho.orthogonalize(g.T, method)
  chex.assert_trees_all_close(tall, wide.T, atol=1e-6)


def test_batched_equals_per_matrix_and_jit_vmap():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((2, 3, 24, 40)), jnp.float32)
  for method in ("newton_schulz", "polar_express"):
    batched = jax.jit(lambda a: ortho.orthogonalize(a, method))(x)
    per = jnp.stack([jnp.stack([ortho.orthogonalize(x[i, j], method) for j in range(3)])
                     for i in range(2)])
    chex.assert_trees_all_close(batched, per, atol=2e-5)
    vmapped = jax.vmap(jax.vmap(lambda a: ortho.orthogonalize(a, method)))(x)
    chex.assert_trees_all_close(vmapped, per, atol=2e-5)


@pytest.mark.parametrize("method", METHODS)
def test_zero_and_rank_one_are_finite(method):
  zero = ortho.orthogonalize(jnp.zeros((3, 16, 24)), method)
  chex.assert_tree_all_finite(zero)
  np.testing.assert_array_equal(np.asarray(zero), 0.0)
  rng = np.random.default_rng(4)
  u, v = rng.standard_normal(16), rng.standard_normal(24)
  g = np.outer(u, v)
  out = ortho.orthogonalize(jnp.asarray(g, jnp.float32), method)
  chex.assert_tree_all_finite(out)
  # Round-off in the null directions is amplified by p'(0) (about 1e3 for Polar Express).
  np.testing.assert_allclose(np.asarray(out, np.float64), ortho.closed_form(g, method), atol=3e-4)
  # bf16 too
  chex.assert_tree_all_finite(ortho.orthogonalize(jnp.asarray(g, jnp.float32), method,
                                                  compute_dtype=jnp.bfloat16))


def test_dtypes_and_errors():
  assert ortho.default_compute_dtype() == (jnp.bfloat16 if jax.default_backend() == "gpu"
                                           else jnp.float32)
  x = jnp.ones((8, 12), jnp.bfloat16)
  assert ortho.orthogonalize(x).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="rank"):
    ortho.orthogonalize(jnp.ones((8,)))
  with pytest.raises(ValueError, match="method"):
    ortho.orthogonalize(jnp.ones((8, 8)), "svd")


def test_sharded_input_keeps_result():
  mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  x = jnp.asarray(np.random.default_rng(5).standard_normal((4, 16, 24)), jnp.float32)
  xs = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.P("data")))
  chex.assert_trees_all_close(jax.jit(ortho.orthogonalize)(xs), ortho.orthogonalize(x),
                              atol=1e-6)
