"""Lazy projection as an optax transform: exact on multiples of k, drifting in between."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgpt.optim.projection import project_every


def _rows_unit(p):
  return jax.tree.map(lambda x: x / jnp.linalg.norm(x, axis=-1, keepdims=True), p)


def _norms(p):
  return np.linalg.norm(np.asarray(p["w"]), axis=-1)


def _run(every, steps=9, traced=False):
  rng = np.random.default_rng(0)
  params = _rows_unit({"w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)})
  k = jnp.int32(every) if traced else every
  tx = optax.chain(optax.with_extra_args_support(optax.sgd(0.3)), project_every(_rows_unit, k))
  state = tx.init(params)
  out = []
  for t in range(steps):
    g = {"w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)}
    u, state = tx.update(g, state, params, progress=0.0)
    params = optax.apply_updates(params, u)
    out.append(_norms(params))
  return out


def test_every_step_is_unit_norm():
  for n in _run(1):
    chex.assert_trees_all_close(n, np.ones(6), atol=1e-5)


def test_lazy_drifts_then_restored_on_multiples():
  for traced in (False, True):
    norms = _run(3, traced=traced)
    for t, n in enumerate(norms, start=1):
      if t % 3 == 0:
        chex.assert_trees_all_close(n, np.ones(6), atol=1e-5)
      else:
        assert np.max(np.abs(n - 1)) > 1e-2, (t, n)


def test_vmapped_cohort_with_different_k():
  """A cohort whose members project every 1 and every 2 steps: one program, both behaviours."""
  rng = np.random.default_rng(1)
  p0 = _rows_unit({"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)})
  g = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}

  def one_step(k):
    tx = optax.chain(optax.sgd(0.5), project_every(_rows_unit, k))
    u, _ = tx.update(g, tx.init(p0), p0)
    return optax.apply_updates(p0, u)["w"]

  out = jax.vmap(one_step)(jnp.asarray([1, 2], jnp.int32))
  np.testing.assert_allclose(np.linalg.norm(out[0], axis=-1), 1, atol=1e-5)
  assert np.max(np.abs(np.linalg.norm(out[1], axis=-1) - 1)) > 1e-2
