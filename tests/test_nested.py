"""deep_nested's numerics against independent references: the seed mode with its controller
forced to output 0 is AdamW at 1.05 x base lr; the nested grid's proxy-loss branches and
meta-step by hand; dmgd's degenerate settings are EMA momentum and Muon; its hypergradient is
the derivative of the next step's loss; vmap over meta_lr; config errors; state memory per
mode."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt import config as config_lib
from jaxgpt.bench import nested_memory
from jaxgpt.errors import ConfigError
from jaxgpt.optim import build_optimizer, muon, partition
from jaxgpt.optim.nested import dmgd as dmgd_lib
from jaxgpt.optim.nested import groups as groups_lib
from jaxgpt.optim.nested import seed as seed_lib
from tests.helpers import load_config


def _params(seed=0, with_vectors=True):
  """A small GPT-shaped tree: scanned blocks (2 layers), an embedding, norm scales."""
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32)
  p = {"blocks": {"attn": {"q": {"kernel": f(2, 8, 2, 4)}}, "mlp": {"fc": {"kernel": f(2, 8, 12)}}}}
  if with_vectors:
    p["blocks"]["attn_norm"] = {"scale": f(2, 8)}
    p["embed"] = {"embedding": f(16, 8)}
    p["final_norm"] = {"scale": f(8)}
  return p


def _grads(params, seed, scale=1.0):
  rng = np.random.default_rng(100 + seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * scale, jnp.float32),
                      params)


def _run(tx, params, steps, scale=1.0, state=None):
  state = tx.init(params) if state is None else state
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, progress=jnp.float32(0.0)))
  outs = []
  for t in range(steps):
    u, state = update(_grads(params, t, scale), state, params)
    params = optax.apply_updates(params, u)
    outs.append(u)
  return params, state, outs


def _seed_config():
  c = load_config("gpt", "test")
  c.optimizer.update(name="deep_nested", lr=3e-4, b1=0.9, b2=0.999, eps=1e-8,
                     weight_decay=0.2, grad_clip=0.0, schedule="constant", warmup_frac=0.0)
  c.optimizer.nested.meta_every = 6
  return c


def _replace(tree, cls, fn):
  return jax.tree.map(lambda s: fn(s) if isinstance(s, cls) else s, tree,
                      is_leaf=lambda s: isinstance(s, cls))


def test_groups_and_depths_follow_the_seed_name_rule():
  g = groups_lib.groups(_params())
  # flatten order: attn/q, attn_norm, mlp/fc, embed, final_norm
  assert g.index == (0, 1, 0, 1, 1)
  # core: 4 tensors in layers 1, 2 of 2 -> mean 0.75; embed: attn_norm (0.5, 1), embedding 0,
  # final norm 1 -> 2.5 / 4
  np.testing.assert_allclose(g.depth, (0.75, 0.625))


@pytest.mark.parametrize("scale", [1e-3, 1.0])  # the clip inactive / active
def test_seed_with_controller_output_zero_is_adamw_at_1_05_lr(scale):
  c = _seed_config()
  config_lib.validate(c)
  tx = build_optimizer(c.optimizer)
  params = _params()
  zero_out = lambda s: s._replace(controller=seed_lib.mlp.with_output(
      s.controller, w=jnp.zeros(s.controller[-1]["w"].shape), b=jnp.zeros((1,))))
  state = _replace(tx.init(params), seed_lib.SeedState, zero_out)
  _, state, got = _run(tx, params, 5, scale, state)
  ref_tx = optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(3e-4 * 1.05, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.2))
  _, _, want = _run(optax.with_extra_args_support(ref_tx), params, 5, scale)
  chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-10)
  metrics = nested_metrics(state)
  np.testing.assert_allclose([metrics["opt/lr_mult_core"], metrics["opt/lr_mult_embed"]],
                             [1.05, 1.05], rtol=1e-6)


def nested_metrics(state):
  from jaxgpt.optim import state_metrics
  return {k: float(v) for k, v in state_metrics(state).items()}


def test_seed_multipliers_are_the_controller_on_group_stats():
  """mult = 0.1 + 1.9 sigmoid(MLP(stats)) with a float64 numpy forward of the controller."""
  s = seed_lib.SeedSettings(controller_layers=2)
  params = _params()
  tx = seed_lib.scale_by_seed_nested(s)
  state = tx.init(params)
  g = _grads(params, 0)
  _, new = tx.update(g, state, params)
  sq = lambda tree, grp: sum(float(np.sum(np.square(np.asarray(x, np.float64))))
                             for x, i in zip(jax.tree.leaves(tree),
                                             groups_lib.groups(params).index) if i == grp)
  stats = np.asarray([[np.sqrt(sq(g, k)), np.sqrt(sq(params, k)), d]
                      for k, d in enumerate((0.75, 0.625))])
  x = stats
  for i, layer in enumerate(state.controller):
    x = x @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
    x = np.maximum(x, 0) if i < len(state.controller) - 1 else x
  want = 0.1 + 1.9 / (1 + np.exp(-x[:, 0]))
  np.testing.assert_allclose(new.mults, want, rtol=1e-5)


def test_seed_proxy_loss_branches_match_hand_computed_values():
  m = jnp.asarray([0.5, 1.5])
  w = 12
  hist_mult = jnp.zeros((w, 2)).at[w - 1].set(jnp.asarray([0.8, 1.2]))
  few = seed_lib.proxy_loss(m, jnp.zeros(w), hist_mult, jnp.int32(3))
  np.testing.assert_allclose(few, 0.25, rtol=1e-6)  # mean((m - 1)^2)
  improving = jnp.zeros(w).at[0].set(5.0).at[w - 1].set(4.0)
  np.testing.assert_allclose(seed_lib.proxy_loss(m, improving, hist_mult, jnp.int32(w)),
                             (0.3 ** 2 + 0.3 ** 2) / 2, rtol=1e-5)  # mean((m - last)^2)
  flat = jnp.zeros(w).at[0].set(4.0).at[w - 1].set(4.0005)
  np.testing.assert_allclose(seed_lib.proxy_loss(m, flat, hist_mult, jnp.int32(w)),
                             0.25 - 0.1 * 0.5, rtol=1e-5)  # stagnating: explore


def test_seed_history_window_drops_the_oldest():
  s = seed_lib.SeedSettings(history=3)
  state = seed_lib.scale_by_seed_nested(s).init(_params())
  for i in range(5):
    state = seed_lib.record(state._replace(mults=jnp.asarray([i, -i], jnp.float32)), 10.0 + i)
  np.testing.assert_array_equal(state.hist_loss, [12.0, 13.0, 14.0])
  np.testing.assert_array_equal(state.hist_mult[:, 0], [2.0, 3.0, 4.0])
  assert int(state.hist_len) == 3


def test_seed_meta_step_is_adam_on_the_proxy_gradient():
  """First Adam step: theta -= meta_lr * g / (|g| + eps), ~ meta_lr * sign(g); the gradient's
  sign from float64 finite differences of the controller and mean((m - 1)^2)."""
  s = seed_lib.SeedSettings(controller_layers=1, meta_lr=1e-2)
  params = _params()
  state = seed_lib.scale_by_seed_nested(s).init(params)
  new = seed_lib.meta_update(state, params, jnp.float32(4.0))
  stats = np.asarray(groups_lib.group_stats(None, params, groups_lib.groups(params)), np.float64)
  ctrl = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in state.controller]

  def loss(c):
    x = np.maximum(stats @ c[0]["w"] + c[0]["b"], 0) @ c[1]["w"] + c[1]["b"]
    return np.mean((0.1 + 1.9 / (1 + np.exp(-x[:, 0])) - 1.0) ** 2)

  w = ctrl[1]["w"]  # the output layer's weights
  fd = np.zeros_like(w)
  for i in np.ndindex(w.shape):
    for sign in (1, -1):
      c = [dict(layer) for layer in ctrl]
      c[1] = dict(c[1], w=w.copy())
      c[1]["w"][i] += sign * 1e-6
      fd[i] += sign * loss(c) / 2e-6
  moved = np.asarray(new.controller[1]["w"], np.float64) - w
  big = np.abs(fd) > 1e-6
  assert big.sum() > 5
  np.testing.assert_allclose(moved[big], -1e-2 * np.sign(fd[big]), rtol=1e-3)
  assert int(new.hist_len) == 1 and float(new.hist_loss[0]) == 4.0


def _dmgd(**kw):
  base = dict(lr=0.1, embed_lr=0.1, head_lr=0.1, scalar_lr=0.1, controller_layers=0,
              meta_lr=0.0, momentum_init=0.9, momentum_layers=2, momentum_hidden=8)
  return dmgd_lib.scale_by_dmgd(dmgd_lib.DmgdSettings(**{**base, **kw}))


def test_dmgd_at_init_without_learning_is_ema_momentum():
  params = _params()
  _, _, got = _run(optax.with_extra_args_support(_dmgd()), params, 4)
  ref = optax.chain(optax.ema(0.9, debias=False), optax.scale(-0.1))
  _, _, want = _run(optax.with_extra_args_support(ref), params, 4)
  chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-8)


def test_dmgd_with_newton_schulz_is_muon():
  params = _params(with_vectors=False)  # Muon-labelled matrices only
  tx = _dmgd(newton_schulz=True, lr=0.02, controller_layers=0)
  _, _, got = _run(optax.with_extra_args_support(tx), params, 3)
  ref = muon.muon(0.02, momentum=0.9, nesterov=False, momentum_style="ema",
                  update_scale="shape", dimension_numbers=partition.muon_dims_fn())
  _, _, want = _run(optax.with_extra_args_support(ref), params, 3)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("ns", [False, True])
def test_dmgd_hypergradient_is_the_derivative_of_the_next_loss(ns):
  """L(W) = 0.5 sum a (W - W*)^2. The optimizer's hypergradient at step t + 1 equals
  jax.grad over theta of L(W_t + delta_t(theta)), differentiating the real update."""
  s = dict(newton_schulz=ns, controller_layers=2, meta_lr=1e-3, weight_decay=0.0)
  tx = _dmgd(**s)
  settings = dmgd_lib.DmgdSettings(**{**dict(lr=0.1, embed_lr=0.1, head_lr=0.1, scalar_lr=0.1,
                                             momentum_init=0.9, momentum_layers=2,
                                             momentum_hidden=8), **s})
  w0 = _params()
  target = _params(seed=7)
  a = jax.tree.map(lambda p: jnp.linspace(0.5, 2.0, p.size).reshape(p.shape), w0)
  loss = lambda w: sum(jnp.sum(0.5 * ai * (wi - ti) ** 2) for ai, wi, ti in
                       zip(jax.tree.leaves(a), jax.tree.leaves(w), jax.tree.leaves(target)))
  update = jax.jit(tx.update)
  state0 = tx.init(w0)
  state0 = state0._replace(v=_grads(w0, 3, 0.3))  # a non-zero momentum to start from
  g0 = jax.grad(loss)(w0)
  d0, state1 = update(g0, state0, w0)
  w1 = optax.apply_updates(w0, d0)

  def next_loss(theta):
    d, _ = tx.update(g0, state0._replace(theta=theta), w0)  # count 0: theta is used as given
    return loss(optax.apply_updates(w0, d))

  want = jax.jit(jax.grad(next_loss))(state0.theta)
  leaves = dmgd_lib._leaves(w1, settings)
  got = jax.jit(lambda st, w, g: dmgd_lib.hypergradient(
      st.theta, jax.tree.leaves(st.v_prev), jax.tree.leaves(st.g_prev), st.feats_prev,
      st.stats_prev, jax.tree.leaves(w), jax.tree.leaves(g), leaves, settings))(
          state1, w1, jax.grad(loss)(w1))
  chex.assert_trees_all_close(got, want, rtol=2e-3, atol=1e-7)
  assert float(optax.tree.norm(want)) > 1e-4
  _, state2 = update(jax.grad(loss)(w1), state1, w1)  # the optimizer's own use of it
  np.testing.assert_allclose(state2.hypergrad_norm, optax.tree.norm(want), rtol=2e-3)
  moved = jax.tree.map(lambda x, y: jnp.max(jnp.abs(x - y)), state2.theta, state1.theta)
  assert max(float(x) for x in jax.tree.leaves(moved)) > 1e-4  # meta_lr 1e-3: it learns


def test_dmgd_vmaps_over_meta_lr_under_jit():
  params = _params()
  c = load_config("gpt", "test")
  c.optimizer.update(name="deep_nested", grad_clip=0.0, schedule="constant", warmup_frac=0.0)
  c.optimizer.nested.update(mode="dmgd", momentum_hidden=8)
  config_lib.validate(c)

  def two_steps(meta_lr):
    tx = build_optimizer(c.optimizer, {"nested.meta_lr": meta_lr})
    _, state, outs = _run(tx, params, 3)
    return outs[-1]

  got = jax.jit(jax.vmap(two_steps))(jnp.asarray([0.0, 1e-2], jnp.float32))
  solo = two_steps(jnp.float32(0.0))
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], got), solo, rtol=1e-5, atol=1e-9)
  diff = max(float(jnp.max(jnp.abs(x[0] - x[1]))) for x in jax.tree.leaves(got))
  assert diff > 0  # the trial with meta learning moved away


def test_config_errors_name_the_key():
  for key, value, words in (("optimizer.nested.mode", "bogus", "choose one of"),
                            ("optimizer.grad_clip", 1.0, "max_grad_norm"),
                            ("optimizer.nested.meta_every", 5, "train.eval_every"),
                            ("optimizer.nested.controller_layers", 0, "integer >= 1"),
                            ("optimizer.nested.momentum_init", 1.0, "< 1.0")):
    c = _seed_config()
    config_lib.set_key(c, key, value)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
      config_lib.validate(c)
    assert words in str(err.value)


def test_state_memory_per_mode(tmp_path):
  """jaxgpt.bench.nested_memory (scripts/nested_memory.py --smoke): bytes of the optimizer state
  from its pytree (gpt test config). AdamW and seed mode hold 2 parameter-sized buffers, dmgd 3,
  plus the learned nets."""
  out = tmp_path / "mem.json"
  nested_memory.run(smoke=True, out=str(out))  # what --smoke runs
  by = {r["optimizer"]: r for r in json.loads(out.read_text())["rows"]}
  p = by["adamw"]["param_bytes"]
  assert abs(by["adamw"]["state_bytes"] - 2 * p) < 64
  assert by["deep_nested/seed"]["param_sized_bytes"] == 2 * p
  assert by["deep_nested/dmgd"]["param_sized_bytes"] == 3 * p
  assert by["deep_nested/dmgd+ns"]["param_sized_bytes"] == 3 * p
  for mode in ("deep_nested/seed", "deep_nested/dmgd"):
    r = by[mode]
    assert r["state_bytes"] == r["param_sized_bytes"] + r["net_bytes"] + 4 * 0 or (
        r["state_bytes"] - r["param_sized_bytes"] - r["net_bytes"]) < 4096
