"""Muon transforms against optax.contrib.muon and a float64 numpy reference of each formula."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt.optim import orthogonalize as ortho
from jaxgpt.optim import partition
from jaxgpt.optim.muon import (
  MuonDimensionNumbers,
  add_decoupled_weight_decay,
  injectable_muon,
  momentum_at,
  muon,
  scale_by_muon,
)


def _rand(shape, seed, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, jnp.float32)


def _params():
  return {"a": _rand((24, 40), 0), "b": _rand((36, 20), 1)}


def _grads(params, step):
  return jax.tree.map(lambda p: _rand(p.shape, 100 + step + p.shape[0]), params)


def test_matches_optax_contrib_muon():
  params = dict(_params(), stack=_rand((3, 16, 28), 2))
  dims = {"a": MuonDimensionNumbers(0, 1), "b": MuonDimensionNumbers(0, 1),
          "stack": MuonDimensionNumbers(1, 2)}
  ours = muon(0.02, momentum=0.95, weight_decay=0.1, nesterov=True, bias_correction=True,
              orthogonalizer="newton_schulz", ns_steps=5, ns_eps=1e-8, update_scale="shape",
              dimension_numbers=dims)
  ref = optax.contrib.muon(0.02, beta=0.95, weight_decay=0.1, nesterov=True,
                           muon_weight_dimension_numbers=dims)
  s_ours, s_ref = ours.init(params), ref.init(params)
  p_ours = p_ref = params
  upd_ours, upd_ref = jax.jit(ours.update), jax.jit(ref.update)
  for step in range(12):
    g = _grads(params, step)
    u, s_ours = upd_ours(g, s_ours, p_ours)
    p_ours = optax.apply_updates(p_ours, u)
    u, s_ref = upd_ref(g, s_ref, p_ref)
    p_ref = optax.apply_updates(p_ref, u)
  chex.assert_trees_all_close(p_ours, p_ref, atol=2e-6, rtol=0)
  assert float(jnp.abs(p_ours["a"] - params["a"]).max()) > 0.05  # it moved


def _np_reference(params, grads_seq, *, lr, beta, wd, style, nesterov, scale, method, steps):
  """float64 numpy Muon on 2-D leaves: momentum, closed-form orthogonalization, scale, decay."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  for g in grads_seq:
    for k in p:
      gk = np.asarray(g[k], np.float64)
      if style == "ema":
        m[k] = beta * m[k] + (1 - beta) * gk
        u = (1 - beta) * gk + beta * m[k] if nesterov else m[k]
      else:
        m[k] = beta * m[k] + gk
        u = gk + beta * m[k] if nesterov else m[k]
      o = ortho.closed_form(u, method, steps)
      fan_in, fan_out = u.shape
      factor = {"none": 1.0, "shape": np.sqrt(max(1.0, fan_out / fan_in)),
                "rms_match": 0.2 * np.sqrt(max(fan_in, fan_out))}[scale]
      p[k] = p[k] * (1 - lr * wd) - lr * factor * o
  return p


@pytest.mark.parametrize("style,nesterov,scale,method", [
    ("ema", True, "shape", "newton_schulz"),
    ("ema", False, "none", "polar_express"),
    ("sgd", True, "rms_match", "polar_express"),
    ("sgd", False, "shape", "newton_schulz_cubic"),
])
def test_matches_float64_reference(style, nesterov, scale, method):
  params = _params()
  grads = [_grads(params, s) for s in range(4)]
  tx = muon(0.05, momentum=0.9, weight_decay=0.2, nesterov=nesterov, momentum_style=style,
            orthogonalizer=method, update_scale=scale)
  state, p = tx.init(params), params
  for g in grads:
    u, state = jax.jit(tx.update)(g, state, p)
    p = optax.apply_updates(p, u)
  want = _np_reference(params, grads, lr=0.05, beta=0.9, wd=0.2, style=style,
                       nesterov=nesterov, scale=scale, method=method, steps=5)
  for k in p:
    np.testing.assert_allclose(np.asarray(p[k], np.float64), want[k], atol=2e-5, rtol=0)


def _matrix_norms(x_lio):
  return np.sqrt((np.asarray(x_lio, np.float64)**2).sum(axis=(-2, -1)))


def test_normuon_formula_and_norm_preserved():
  params = {"w": _rand((3, 20, 12), 3)}  # 3 stacked matrices (layers, fan_in, fan_out)
  dims = MuonDimensionNumbers(1, 2)
  plain = scale_by_muon(0.9, update_scale="none", dimension_numbers=dims)
  normed = scale_by_muon(0.9, update_scale="none", variance_reduction="normuon", beta2=0.8,
                         dimension_numbers=dims)
  s_p, s_n = plain.init(params), normed.init(params)
  assert s_n.nu["w"].shape == (3, 1, 12)  # one statistic per output neuron per matrix
  nu = np.zeros((3, 1, 12))
  for step in range(3):
    g = _grads(params, step)
    o, s_p = plain.update(g, s_p)
    o_n, s_n = normed.update(g, s_n)
    o = np.asarray(o["w"], np.float64)
    nu = 0.8 * nu + 0.2 * (o**2).mean(axis=1, keepdims=True)
    scaled = o / np.sqrt(nu)
    want = scaled * (_matrix_norms(o) / _matrix_norms(scaled))[:, None, None]
    np.testing.assert_allclose(np.asarray(o_n["w"], np.float64), want, atol=2e-5)
    np.testing.assert_allclose(_matrix_norms(o_n["w"]), _matrix_norms(o), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(s_n.nu["w"]), nu, rtol=1e-5)


@pytest.mark.parametrize("grad_scale", [1e-3, 10.0], ids=["unclipped", "clipped"])
def test_mars_correction(grad_scale):
  params = {"w": _rand((2, 16, 24), 4)}
  dims = MuonDimensionNumbers(1, 2)
  beta, gamma = 0.95, 0.025
  tx = scale_by_muon(beta, nesterov=False, variance_reduction="mars", mars_gamma=gamma,
                     dimension_numbers=dims)
  state = tx.init(params)
  m, prev = np.zeros((2, 16, 24)), None
  for step in range(3):
    g = jax.tree.map(lambda x: x * grad_scale, _grads(params, step))
    _, state = jax.jit(tx.update)(g, state)
    gw = np.asarray(g["w"], np.float64)
    c = gw if prev is None else gw + gamma * beta / (1 - beta) * (gw - prev)
    norms = _matrix_norms(c)[:, None, None]
    c = c / np.maximum(norms, 1.0)  # ||c||_F <= 1 per matrix
    if grad_scale > 1:
      np.testing.assert_allclose(_matrix_norms(c), 1.0, rtol=1e-6)
    m = beta * m + (1 - beta) * c
    prev = gw
    np.testing.assert_allclose(np.asarray(state.mu["w"], np.float64), m, rtol=1e-5,
                               atol=1e-9)
    np.testing.assert_array_equal(state.prev_grad["w"], g["w"])


def test_cautious_weight_decay_exact():
  u = {"w": jnp.array([[1.0, -1.0, 2.0, 0.0], [-3.0, 0.5, -0.5, 1.0]])}
  p = {"w": jnp.array([[2.0, 3.0, -1.0, 5.0], [-1.0, -2.0, 4.0, 0.0]])}
  out, _ = add_decoupled_weight_decay(0.1, cautious=True).update(u, optax.EmptyState(), p)
  agree = np.array([[1, 0, 0, 1], [1, 0, 0, 1]], bool)  # u * p >= 0
  want = np.asarray(u["w"]) + 0.1 * np.where(agree, np.asarray(p["w"]), 0.0)
  np.testing.assert_allclose(out["w"], want, rtol=1e-7)
  out, _ = add_decoupled_weight_decay(0.1).update(u, optax.EmptyState(), p)
  np.testing.assert_allclose(out["w"], np.asarray(u["w"]) + 0.1 * np.asarray(p["w"]), rtol=1e-7)
  # Through the alias: p <- p - lr * (O + wd * 1[O*p >= 0] * p).
  params = _params()
  g = _grads(params, 0)
  o, _ = scale_by_muon().update(g, scale_by_muon().init(params))
  tx = muon(0.1, weight_decay=0.5, cautious_wd=True)
  upd, _ = tx.update(g, tx.init(params), params)
  for k in params:
    ok, pk = np.asarray(o[k]), np.asarray(params[k])
    want = -0.1 * (ok + 0.5 * np.where(ok * pk >= 0, pk, 0.0))
    np.testing.assert_allclose(upd[k], want, atol=1e-6)


def test_cautious_update_mask():
  params = {"w": _rand((2, 12, 20), 5)}
  dims = MuonDimensionNumbers(1, 2)
  base = scale_by_muon(dimension_numbers=dims)
  caut = scale_by_muon(cautious_update=True, dimension_numbers=dims)
  state_b, state_c = base.init(params), caut.init(params)
  for step in range(2):  # step 2: momentum makes the mask non-trivial
    g = _grads(params, step)
    o, state_b = base.update(g, state_b)
    oc, state_c = caut.update(g, state_c)
  o, gw = np.asarray(o["w"], np.float64), np.asarray(g["w"], np.float64)
  mask = (o * gw > 0).astype(np.float64)
  assert 0 < mask.mean() < 1
  want = o * mask * (12 * 20) / (mask.sum(axis=(1, 2), keepdims=True) + 1)
  np.testing.assert_allclose(np.asarray(oc["w"]), want, atol=1e-5)


def test_momentum_warmup():
  assert float(momentum_at(0, 0.95, 300)) == pytest.approx(0.85)
  assert float(momentum_at(150, 0.95, 300)) == pytest.approx(0.90)
  assert float(momentum_at(300, 0.95, 300)) == np.float32(0.95)
  assert float(momentum_at(1000, 0.95, 300)) == np.float32(0.95)
  assert float(momentum_at(0, 0.95, 0)) == np.float32(0.95)  # 0 = off
  # Inside the transform: first EMA step stores (1 - 0.85) g; after warm-up (1 - 0.95) g.
  params = _params()
  tx = scale_by_muon(0.95, momentum_warmup_steps=4, nesterov=False)
  state = tx.init(params)
  g = _grads(params, 0)
  _, s1 = tx.update(g, state)
  chex.assert_trees_all_close(s1.mu, jax.tree.map(lambda x: 0.15 * x, g), rtol=1e-6)
  late = state._replace(count=jnp.asarray(4, jnp.int32))
  _, s2 = tx.update(g, late)
  chex.assert_trees_all_close(s2.mu, jax.tree.map(lambda x: 0.05 * x, g), rtol=1e-5)


def _gpt_tree(scan, key=0, L=2, D=32, H=2, hd=16, F=64, V=64):
  rng = np.random.default_rng(key)
  r = lambda *s: jnp.asarray(rng.standard_normal(s) * 0.1, jnp.float32)
  layers = [{"attn_norm": {"scale": r(D)},
             "attn": {"q": {"kernel": r(D, H, hd)}, "k": {"kernel": r(D, H, hd)},
                      "v": {"kernel": r(D, H, hd)}, "o": {"kernel": r(H, hd, D)}},
             "mlp_norm": {"scale": r(D)},
             "mlp": {"fc": {"kernel": r(D, F)}, "proj": {"kernel": r(F, D)}}} for _ in range(L)]
  tree = {"embed": {"embedding": r(V, D)}, "final_norm": {"scale": r(D)}}
  if scan:
    tree["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
  else:
    tree.update({f"blocks_{i}": layer for i, layer in enumerate(layers)})
  return tree


def _full_optimizer(lr=0.02, momentum=0.95, wd=0.0, **muon_kw):
  return partition.multi_transform({
      "muon": muon(lr, momentum, wd, dimension_numbers=partition.muon_dims_fn(), **muon_kw),
      "adamw_embed": optax.adamw(0.01, b1=0.8, b2=0.95, eps=1e-10, weight_decay=0.0),
      "adamw_head": optax.adamw(0.01, b1=0.8, b2=0.95, eps=1e-10, weight_decay=0.0),
      "adamw_scalar": optax.adamw(0.01, b1=0.8, b2=0.95, eps=1e-10, weight_decay=0.0),
  })


def _loss(params):
  return sum(jnp.sum(jnp.sin(3.0 * p) * jnp.cos(p)) for p in jax.tree.leaves(params))


def test_scanned_equals_unscanned_with_partition():
  tx = _full_optimizer(wd=0.1, variance_reduction="normuon", update_scale="rms_match")
  trees = {scan: _gpt_tree(scan) for scan in (False, True)}
  states = {scan: tx.init(t) for scan, t in trees.items()}
  step = jax.jit(lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
      tx.update(jax.grad(_loss)(p), s, p)))
  for _ in range(3):
    for scan in trees:
      trees[scan], states[scan] = step(trees[scan], states[scan])
  unscanned = trees[False]
  restacked = jax.tree.map(lambda *xs: jnp.stack(xs), unscanned["blocks_0"], unscanned["blocks_1"])
  chex.assert_trees_all_close(trees[True]["blocks"], restacked, atol=1e-6)
  chex.assert_trees_all_close(trees[True]["embed"], unscanned["embed"], atol=1e-6)


def _run_trial(lr, momentum, wd, seed, steps=10, inject=False):
  params = jax.tree.map(lambda p: p * (1.0 + 0.1 * seed), _gpt_tree(True))
  kw = dict(dimension_numbers=partition.muon_dims_fn(), momentum_warmup_steps=4)
  if inject:
    muon_tx = injectable_muon(learning_rate=lr, momentum=momentum, weight_decay=wd, **kw)
  else:
    muon_tx = muon(lr, momentum, wd, **kw)
  tx = partition.multi_transform({
      "muon": muon_tx, "adamw_embed": optax.adamw(lr), "adamw_head": optax.adamw(lr),
      "adamw_scalar": optax.adamw(lr)})
  state = tx.init(params)

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(_loss)(p), s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(body, (params, state), None, length=steps)
  return params


@pytest.mark.parametrize("inject", [False, True], ids=["traced_args", "inject_hyperparams"])
def test_cohort_vmap_equals_separate_runs(inject):
  lrs = jnp.array([0.01, 0.02, 0.03, 0.05])
  moms = jnp.array([0.9, 0.95, 0.8, 0.99])
  wds = jnp.array([0.0, 0.1, 0.01, 0.3])
  seeds = jnp.arange(4.0)
  run = functools.partial(_run_trial, inject=inject)
  cohort = jax.jit(jax.vmap(run))(lrs, moms, wds, seeds)
  single = jax.jit(run)
  for i in range(4):
    alone = single(lrs[i], moms[i], wds[i], seeds[i])
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], cohort), alone, atol=1e-5)
  # The trials really differ.
  assert float(jnp.abs(cohort["blocks"]["mlp"]["fc"]["kernel"][0]
                       - cohort["blocks"]["mlp"]["fc"]["kernel"][1]).max()) > 1e-3


def test_inject_hyperparams_state_and_schedule():
  params = _params()
  tx = injectable_muon(learning_rate=0.02, momentum=0.95, weight_decay=0.01, ns_steps=3)
  state = tx.init(params)
  assert set(state.hyperparams) >= {"learning_rate", "momentum", "weight_decay", "beta2"}
  state.hyperparams["learning_rate"] = jnp.asarray(0.0)
  u, _ = jax.jit(tx.update)(_grads(params, 0), state, params)
  chex.assert_trees_all_close(u, jax.tree.map(jnp.zeros_like, params))
  # A schedule count -> lr works as the learning rate of the plain alias.
  sched = lambda count: 0.1 / (1.0 + count)
  tx = muon(sched)
  s = tx.init(params)
  u0, s = tx.update(_grads(params, 0), s, params)
  u1, s = tx.update(_grads(params, 0), s, params)
  o, _ = scale_by_muon().update(_grads(params, 0), scale_by_muon().init(params))
  chex.assert_trees_all_close(u0, jax.tree.map(lambda x: -0.1 * x, o), atol=1e-6)
  assert float(jnp.linalg.norm(u1["a"])) < float(jnp.linalg.norm(u0["a"]))


def test_update_scales_and_bf16_path():
  params = _params()
  g = _grads(params, 0)

  def out(**kw):
    tx = scale_by_muon(**kw)
    return tx.update(g, tx.init(params))[0]

  none, shape, rms = out(update_scale="none"), out(update_scale="shape"), out(
      update_scale="rms_match")
  np.testing.assert_allclose(shape["a"], none["a"] * np.sqrt(40 / 24), rtol=1e-6)
  np.testing.assert_allclose(shape["b"], none["b"], rtol=1e-6)  # fan_out < fan_in
  np.testing.assert_allclose(rms["a"], none["a"] * 0.2 * np.sqrt(40), rtol=1e-6)
  bf16 = out(update_scale="none", compute_dtype=jnp.bfloat16)
  assert bf16["a"].dtype == jnp.float32
  chex.assert_trees_all_close(bf16, none, atol=0.06)


def test_dimension_number_errors():
  params = {"w": _rand((8, 12), 0), "v": _rand((8,), 1)}
  with pytest.raises(ValueError, match="dimension numbers None"):
    scale_by_muon(dimension_numbers={"w": MuonDimensionNumbers(), "v": None}).init(params)
  with pytest.raises(ValueError, match="rank >= 2"):
    scale_by_muon().init({"v": params["v"]})
  with pytest.raises(ValueError, match="update_scale"):
    scale_by_muon(update_scale="spectral")


_SHARDED_SCRIPT = r"""
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P, AxisType
from jaxgpt.optim import partition
from jaxgpt.optim.muon import muon
assert jax.device_count() == 4
mesh = jax.make_mesh((2, 2), ("data", "tensor"), axis_types=(AxisType.Auto,) * 2)
rng = np.random.default_rng(0)
params = {"blocks": {"attn": {"q": {"kernel": rng.standard_normal((2, 16, 4, 8))},
                              "o": {"kernel": rng.standard_normal((2, 4, 8, 16))}},
                     "mlp": {"fc": {"kernel": rng.standard_normal((2, 16, 32))}}}}
params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
specs = {"blocks": {"attn": {"q": {"kernel": P(None, "data", "tensor", None)},
                             "o": {"kernel": P(None, "tensor", None, "data")}},
                    "mlp": {"fc": {"kernel": P("data", None, "tensor")}}}}
sharded = jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), params, specs)
tx = muon(0.02, weight_decay=0.1, variance_reduction="normuon",
          dimension_numbers=partition.muon_dims_fn())
def step(p):
  g = jax.tree.map(lambda x: jnp.sin(x), p)
  u, _ = tx.update(g, tx.init(p), p)
  return optax.apply_updates(p, u)
want = jax.jit(step)(params)
got = jax.jit(step)(sharded)
assert len(got["blocks"]["attn"]["q"]["kernel"].sharding.device_set) == 4
for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
print("OK")
"""


@pytest.mark.multidevice
def test_sharded_params_match_unsharded():
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
