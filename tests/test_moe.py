"""The MoE family against independent references: a float64 per-token loop over the chosen
experts, the load-balance formula and its closed-form gradient, the reference shape's parameter
count, config errors, the optimizer partition, and vmapped cohorts against single runs."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.errors import ConfigError
from jaxgpt.models import dispatch, gpt, layers, moe, routing
from jaxgpt.optim import partition
from jaxgpt.train import run as train_run
from jaxgpt.train import setup
from jaxgpt.train import step as step_lib
from tests.helpers import load_config

RNG = np.random.default_rng(0)


def _silu(x):
  return x / (1.0 + np.exp(-x))


def np_route(logits, k):
  """Top-k by a stable descending sort, softmax over the chosen logits (float64)."""
  idx = np.argsort(-logits, axis=-1, kind="stable")[..., :k]
  vals = np.take_along_axis(logits, idx, axis=-1)
  w = np.exp(vals - vals.max(-1, keepdims=True))
  return idx, w / w.sum(-1, keepdims=True)


def naive_moe(x, idx, w, fc, proj, gate=None, keep=None):
  """y[b, t] = sum_j w[b,t,j] FFN_{idx[b,t,j]}(x[b,t]), one token and one slot at a time."""
  x, fc, proj = (np.asarray(a, np.float64) for a in (x, fc, proj))
  y = np.zeros_like(x)
  for b in range(x.shape[0]):
    for t in range(x.shape[1]):
      for j in range(idx.shape[-1]):
        if keep is not None and not keep[b, t, j]:
          continue
        e = idx[b, t, j]
        h = x[b, t] @ fc[e]
        h = _silu(h) if gate is None else _silu(x[b, t] @ np.asarray(gate[e], np.float64)) * h
        y[b, t] += w[b, t, j] * (h @ proj[e])
  return y


def _experts(e, d, f, gated=False):
  mk = lambda *s: jnp.asarray(RNG.standard_normal(s) / math.sqrt(s[-2]), jnp.float32)
  return dispatch.Experts(mk(e, d, f), mk(e, f, d), mk(e, d, f) if gated else None,
                          jax.nn.silu)


@pytest.mark.parametrize("gated", [False, True])
def test_three_dispatches_equal_a_per_token_loop(gated):
  b, t, d, f, e, k = 2, 6, 8, 16, 4, 2
  x = jnp.asarray(RNG.standard_normal((b, t, d)), jnp.float32)
  logits = RNG.standard_normal((b, t, e))
  idx, w = routing.top_k_route(jnp.asarray(logits, jnp.float32), k)
  ref_idx, ref_w = np_route(logits, k)
  np.testing.assert_array_equal(np.asarray(idx), ref_idx)
  np.testing.assert_allclose(np.asarray(w), ref_w, rtol=1e-6)
  ex = _experts(e, d, f, gated)
  want = naive_moe(x, ref_idx, ref_w, ex.fc_edf, ex.proj_efd, ex.gate_edf)
  dense = dispatch.dense(x, routing.combine_weights(idx, w, e), ex)
  cap, dropped = dispatch.capacity_dispatch(x, idx, w, ex, capacity_factor=e / k)
  ragged = dispatch.ragged_dispatch(x, idx, w, ex)
  for name, got in (("dense", dense), ("capacity", cap), ("ragged", ragged)):
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, err_msg=name)
  assert float(dropped) == 0.0


def test_capacity_drops_overflow_in_token_order():
  b, t, d, f, e, k, cf = 2, 8, 4, 8, 4, 2, 0.5
  x = jnp.asarray(RNG.standard_normal((b, t, d)), jnp.float32)
  logits = RNG.standard_normal((b, t, e))
  logits[:, :, 0] += 3.0  # expert 0 is everyone's favourite: its buffer overflows
  idx, w = np_route(logits, k)
  cap = dispatch.capacity(t, k, e, cf)
  assert cap == 2  # ceil(8 * 2 * 0.5 / 4)
  keep = np.zeros(idx.shape, bool)  # the rule written out: slots in order (t, j), C each
  for bi in range(b):
    used = np.zeros(e, int)
    for ti in range(t):
      for j in range(k):
        keep[bi, ti, j] = used[idx[bi, ti, j]] < cap
        used[idx[bi, ti, j]] += 1
  ex = _experts(e, d, f)
  got, dropped = dispatch.capacity_dispatch(x, jnp.asarray(idx, jnp.int32),
                                            jnp.asarray(w, jnp.float32), ex, cf)
  want = naive_moe(x, idx, w, ex.fc_edf, ex.proj_efd, keep=keep)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
  assert float(dropped) == pytest.approx(1.0 - keep.mean())
  assert 0.3 < float(dropped) < 0.7


def _moe_cfg(**moe_kw):
  c = load_config("moe", "test")
  c.model.moe.update(moe_kw)
  return gpt.gpt_config(c.model, 64)


@pytest.mark.parametrize("dispatch_name", dispatch.DISPATCHES)
def test_moe_layer_equals_naive_reference(dispatch_name):
  cfg = _moe_cfg(dispatch=dispatch_name, capacity_factor=2.0, num_experts=4, top_k=2)
  x = jnp.asarray(RNG.standard_normal((2, 5, cfg.d_model)), jnp.float32)
  layer = moe.MoE(cfg)
  params = layer.init(jax.random.PRNGKey(1), x)["params"]
  params = jax.tree.map(lambda p: p.unbox() if hasattr(p, "unbox") else p, params,
                        is_leaf=lambda p: hasattr(p, "unbox"))
  got = layer.apply({"params": params}, x)  # no "router" rng: no noise (evaluation)
  logits = np.asarray(x, np.float64) @ np.asarray(params["router"]["kernel"], np.float64)
  idx, w = np_route(logits, 2)
  ex = params["experts"]
  want = naive_moe(x, idx, w, ex["fc"]["kernel"], ex["proj"]["kernel"])
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
  assert ex["fc"]["kernel"].shape == (4, cfg.d_model, cfg.mlp_dim)
  assert ex["proj"]["kernel"].shape == (4, cfg.mlp_dim, cfg.d_model)


def test_uniform_routing_gives_exactly_aux_weight():
  e, k = 4, 2
  idx = jnp.asarray([[[0, 1], [2, 3], [1, 0], [3, 2]]], jnp.int32)  # every expert twice
  logits = jnp.zeros((1, 4, e))  # P_e = 1 / E
  assert float(routing.load_balance_loss(logits, idx, "blueberry")) == 1.0
  assert float(routing.load_balance_loss(logits, idx, "switch")) == k
  cfg = _moe_cfg(aux_weight=0.01)
  assert 0.01 * float(routing.load_balance_loss(logits, idx, cfg.moe.aux_normalization)) == 0.01


def test_aux_loss_formula_and_its_gradient_on_a_hand_built_routing():
  b, t, e, k = 2, 3, 4, 2
  logits = RNG.standard_normal((b, t, e))
  idx = np.array([[[0, 1], [0, 2], [0, 1]], [[3, 0], [1, 0], [2, 3]]])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  f = np.bincount(idx.ravel(), minlength=e) / (b * t * k)
  want = e * np.sum(f * p.mean((0, 1)))
  fn = lambda lg: routing.load_balance_loss(lg, jnp.asarray(idx, jnp.int32), "blueberry")
  lg = jnp.asarray(logits, jnp.float32)
  assert float(fn(lg)) == pytest.approx(want, rel=1e-6)
  # f is a count: the gradient is E / (B T) * p_i (f_i - sum_e f_e p_e), through P alone.
  grad_want = e / (b * t) * p * (f - np.sum(f * p, -1, keepdims=True))
  np.testing.assert_allclose(np.asarray(jax.grad(fn)(lg)), grad_want, atol=1e-7)
  z_want = np.mean(np.log(np.exp(logits).sum(-1)) ** 2)
  assert float(routing.z_loss(lg)) == pytest.approx(z_want, rel=1e-6)
  np.testing.assert_allclose(np.asarray(routing.expert_load(jnp.asarray(idx), e)), e * f)


def _state_and_step(config):
  run = setup.build(config)
  fam = models.family(config.model.name)
  fn = step_lib.make_train_step(run.model.apply, run.tx, 1, fam.collections, fam.rng_streams,
                                config.train.seed)
  return run, jax.jit(fn)


def _batch(config, seed=0):
  r = np.random.default_rng(seed)
  shape = (config.train.batch_size, config.data.seq_len)
  return {k: jnp.asarray(r.integers(0, 256, shape), jnp.int32) for k in ("inputs", "targets")}


def test_train_step_adds_aux_loss_and_router_gets_finite_gradients():
  config = load_config("moe", "test")
  run, fn = _state_and_step(config)
  state = run.init_state()
  batch = _batch(config)
  _, m = fn(state, batch, jnp.float32(0.0))
  aux = m["loss/blocks/mlp/aux_loss"]
  # summed over the 2 layers, each near aux_weight (0.01) for a freshly initialised router
  assert 0.015 < float(aux) < 0.04
  assert {"metric/blocks/mlp/load_max", "metric/blocks/mlp/load_min"} <= set(m)

  def loss(params):
    logits, mut = run.model.apply({"params": params}, batch["inputs"],
                                  mutable=("losses", "metrics"),
                                  rngs=step_lib.step_rngs(("router",), 0, 0))
    ce = step_lib.token_losses(logits, batch["targets"]).mean()
    return ce + sum(jnp.sum(v[0]) for v in jax.tree.leaves(mut["losses"], is_leaf=lambda x:
                                                             isinstance(x, tuple)))
  g = jax.grad(loss)(state.params)["blocks"]["mlp"]["router"]["kernel"]
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0


def test_router_noise_is_keyed_by_seed_and_step_and_absent_in_eval():
  config = load_config("moe", "test")
  run, fn = _state_and_step(config)
  state, batch = run.init_state(), _batch(config)
  _, a = fn(state, batch, jnp.float32(0.0))
  _, b = fn(state, batch, jnp.float32(0.0))
  assert float(a["train_loss"]) == float(b["train_loss"])  # a pure function of (seed, step)
  quiet = config.copy_and_resolve_references()
  quiet.model.moe.router_noise = 0.0
  run_q, fn_q = _state_and_step(quiet)
  _, c = fn_q(state, batch, jnp.float32(0.0))
  assert float(c["train_loss"]) != float(a["train_loss"])  # the noise is on in training
  e1 = run.model.apply({"params": state.params}, batch["inputs"])
  e2 = run_q.model.apply({"params": state.params}, batch["inputs"])
  np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))  # and off in evaluation
  k0, k1 = (step_lib.step_rngs(("router",), 0, s)["router"] for s in (0, 1))
  assert not np.array_equal(jax.random.key_data(k0), jax.random.key_data(k1))


def test_reference_shape_parameter_count():
  c = load_config("moe")
  c.model.vocab_size = 49152
  cfg = gpt.gpt_config(c.model)
  assert gpt.param_count(cfg) == 79_059_840
  shapes = jax.eval_shape(gpt.GPT(cfg).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8), jnp.int32))["params"]
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)) == 79_059_840
  # per token: everything but 6 of the 8 experts in each of the 6 layers
  active = 79_059_840 - 6 * 6 * 2 * 384 * 1536
  assert gpt.matmul_param_count(cfg) == active == 36_592_512


def test_partition_router_to_adam_or_muon_and_experts_per_matrix():
  shapes = jax.eval_shape(gpt.build(load_config("moe", "test").model, 64).init,
                          jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]
  shapes = jax.tree.map(lambda p: p.value if hasattr(p, "value") else p, shapes,
                        is_leaf=lambda p: hasattr(p, "value"))
  infos = {i.path: i for i in partition.leaf_infos(shapes)}
  fc = infos["blocks/mlp/experts/fc/kernel"]  # (layers, experts, d, f)
  assert (fc.label, fc.batch_axes, fc.fan_in_axes, fc.fan_out_axes) == ("muon", (0, 1), (2,),
                                                                         (3,))
  assert infos["blocks/mlp/router/kernel"].label == partition.ADAMW_HEAD
  router = {i.path: i for i in partition.leaf_infos(shapes, partition.for_router("muon"))}[
      "blocks/mlp/router/kernel"]
  assert (router.label, router.batch_axes, router.fan_in_axes) == ("muon", (0,), (1,))


@pytest.mark.parametrize("key,value,match", [
    ("model.moe.top_k", 9, r"model.moe.top_k=9 must be <= model.moe.num_experts=4"),
    ("model.moe.dispatch", "sparse", r"model.moe.dispatch='sparse' is not allowed"),
    ("model.moe.aux_normalization", "mean", r"model.moe.aux_normalization='mean'"),
    ("model.moe.capacity_factor", 0.0, r"model.moe.capacity_factor=0.0 must be"),
    ("model.moe.act", "tanh", r"model.moe.act='tanh' is not allowed"),
    ("optimizer.router", "sgd", r"optimizer.router='sgd' is not allowed"),
])
def test_config_errors_name_the_key(key, value, match):
  c = load_config("moe", "test")
  config_lib.set_key(c, key, value)
  with pytest.raises(ConfigError, match=match):
    config_lib.validate(c)


def test_router_knob_only_with_muon():
  c = load_config("moe", "test", optimizer__name="adamw")
  with pytest.raises(ConfigError, match=r"optimizer.router='muon' only applies"):
    config_lib.validate(c)
  c.optimizer.router = "adam"
  config_lib.validate(c)


def test_silu_activation_is_plain_silu():
  x = jnp.linspace(-3, 3, 7)
  np.testing.assert_allclose(np.asarray(layers.ACTIVATIONS["silu"](x)), _silu(np.asarray(x)),
                             rtol=1e-6)


def test_cohort_of_moe_trials_equals_single_runs(tmp_path):
  from jaxgpt.sweep import cohort

  def trial(lr, seed):
    c = load_config("moe", "test")
    c.optimizer.update(lr=lr)
    c.train.update(seed=seed, steps=6, eval_every=3)
    return c

  trials = [(0.02, 0), (0.01, 1)]
  out = cohort.train_cohort([trial(*t) for t in trials], str(tmp_path / "cohort"), solo_steps=0)
  for i, t in enumerate(trials):
    single = train_run.train_and_evaluate(trial(*t), str(tmp_path / f"single_{i}"))
    chex.assert_trees_all_close([out[i]["final_val_loss"], out[i]["val_acc"]],
                                [single["final_val_loss"], single["val_acc"]], rtol=2e-4)
