"""Three parameter-golf knobs against independent references (docs/formulas.md):

- head diversity (`model.head_diversity`): the mean squared off-diagonal cosine between the heads'
  input-axis slices of each attention output projection, against float64 numpy, in the model
  (unrolled, scanned, scanned in encoder/decoder groups), its gradient, and weight 0 bit-identical;
- Tidal as PR #1434 computes it (`optimizer.initial_lr_frac`, `optimizer.schedule_steps`) against
  the PR's `lr_mul`, including "horizon 400, stopped at 276";
- the warm-down in iterations (`optimizer.decay_steps`) against parameter-golf's `lr_mul`, with a
  fixed step time and with measured times, with and without a time cap;
- one-line config errors naming the key.
"""

import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.errors import ConfigError
from jaxgpt.models import aux, gpt
from jaxgpt.optim import build as build_lib
from jaxgpt.optim import schedules
from jaxgpt.train import run as run_lib
from jaxgpt.train import step as step_lib
from tests.helpers import load_config

V, T, B = 67, 8, 2


# ------------------------------------------------------------------------------------------
# References, float64, written from the sources (docs/formulas.md), not from the code under test.

def np_head_penalty(kernel_lhkd):
  """(mean over layers of the mean squared off-diagonal cosine, same for the cosine): head h is
  kernel[l, h], the rows [h K, (h+1) K) of the (H K, D) projection, flattened."""
  k = np.asarray(kernel_lhkd, np.float64)
  sq, mean = [], []
  for layer in k:
    v = layer.reshape(layer.shape[0], -1)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    s = u @ u.T
    off = ~np.eye(len(s), dtype=bool)
    sq.append(np.mean(s[off] ** 2))
    mean.append(np.mean(s[off]))
  return float(np.mean(sq)), float(np.mean(mean))


def pr1434_lr_mul(step, iterations):
  """PR #1434's TIDAL_LR `lr_mul`: 0.1 -> 1 over 38.2% of ITERATIONS, cosine back to 0.1."""
  progress = step / iterations
  if progress < 0.382:
    return 0.1 + 0.9 * (progress / 0.382)
  return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (progress - 0.382) / 0.618))


def pg_lr_mul(step, elapsed_s, iterations, warmdown_iters, max_wallclock_s=None):
  """parameter-golf train_gpt.py `lr_mul` (no warm-up): WARMDOWN_ITERS, wall-clock aware under
  MAX_WALLCLOCK_SECONDS (step time = elapsed / step)."""
  if max_wallclock_s is None:
    start = max(iterations - warmdown_iters, 0)
    return max((iterations - step) / warmdown_iters, 0.0) if start <= step < iterations else 1.0
  step_s = elapsed_s / max(step, 1)
  warmdown_s = warmdown_iters * step_s
  remaining_s = max(max_wallclock_s - elapsed_s, 0.0)
  return remaining_s / max(warmdown_s, 1e-9) if remaining_s <= warmdown_s else 1.0


# ------------------------------------------------------------------------------------------
# Head diversity.

def model_cfg(**overrides):
  m = config_lib.base_config().model
  m.update(name="gpt", num_layers=3, d_model=32, num_heads=4, num_kv_heads=2,
           compute_dtype="float32", scan_layers=False, head_diversity=0.1)
  m.update(**overrides)
  return m


def tokens(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, (B, T)), jnp.int32)


def init_params(m, seed=0):
  model = models.build_model(m, V)
  return model, nn_unbox(model.init(jax.random.PRNGKey(seed), tokens())["params"])


def nn_unbox(tree):
  return jax.tree.map(lambda x: x.unbox() if hasattr(x, "unbox") else x, tree,
                      is_leaf=lambda x: hasattr(x, "unbox"))


def o_kernels(params):
  """[L, H, K, D] by walking the tree by hand (unrolled: blocks_i; scanned: stacked groups)."""
  if "blocks_0" in params:
    return np.stack([np.asarray(params[f"blocks_{i}"]["attn"]["o"]["kernel"])
                     for i in range(sum(k.startswith("blocks_") for k in params))])
  groups = [g for g in ("encoder_blocks", "decoder_blocks", "blocks") if g in params]
  return np.concatenate([np.asarray(params[g]["attn"]["o"]["kernel"]) for g in groups])


def test_identical_heads_cosine_one_orthogonal_heads_zero():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((2, 5))  # one head's [K, D] slice
  k = np.stack([np.stack([a, a, rng.standard_normal((2, 5))]),  # layer 0: heads 0 and 1 equal
                rng.standard_normal((3, 2, 5))])                 # layer 1: random
  cos = np.asarray(gpt.head_cosines(jnp.asarray(k, jnp.float32)))
  np.testing.assert_allclose(cos[0, 0, 1], 1.0, atol=1e-6)
  np.testing.assert_allclose(np.diagonal(cos, axis1=1, axis2=2), 1.0, atol=1e-6)
  got = gpt.off_diagonal_means(gpt.head_cosines(jnp.asarray(k, jnp.float32)))
  chex.assert_trees_all_close(tuple(map(float, got)), np_head_penalty(k), atol=1e-6)
  # Every head the same slice: cosine 1 for each pair, penalty 1. Heads on disjoint input rows
  # (the K rows each) but equal output columns would be "the same" only to a split of the
  # OUTPUT axis (PR #1434's); split by input rows, orthogonal supports give 0.
  same = np.broadcast_to(a, (1, 4, 2, 5))
  assert float(gpt.off_diagonal_means(gpt.head_cosines(jnp.asarray(same)))[0]) == (
      pytest.approx(1.0, abs=1e-6))
  disjoint = np.zeros((1, 4, 2, 8))
  for h in range(4):
    disjoint[0, h, :, 2 * h:2 * h + 2] = rng.standard_normal((2, 2))
  assert float(gpt.off_diagonal_means(gpt.head_cosines(jnp.asarray(disjoint)))[0]) == 0.0


@pytest.mark.parametrize("overrides", [dict(), dict(scan_layers=True),
                                       dict(scan_layers=True, encoder_layers=1),
                                       dict(name="moe", scan_layers=True)])
def test_model_sows_the_penalty_against_numpy(overrides):
  m = model_cfg(**overrides)
  model, params = init_params(m)
  _, mutated = model.apply({"params": params}, tokens(), mutable=(aux.LOSSES, aux.METRICS),
                           rngs={gpt.ROUTER_RNG: jax.random.PRNGKey(1)})
  cos_sq, cos = np_head_penalty(o_kernels(params))
  assert o_kernels(params).shape == (3, 4, 8, 32)
  terms, metrics = aux.loss_terms(mutated), aux.metrics(mutated)
  np.testing.assert_allclose(float(terms["head_diversity"]), 0.1 * cos_sq, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["head_cos_sq"]), cos_sq, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["head_cos"]), cos, rtol=1e-4, atol=1e-7)


def test_gradient_reduces_the_cosine_and_touches_only_o():
  m = model_cfg(head_diversity=1.0)
  model, params = init_params(m)
  rng = np.random.default_rng(3)
  for i in range(3):  # similar heads: one shared slice plus a little noise
    shared = rng.standard_normal((1, 8, 32))
    params[f"blocks_{i}"]["attn"]["o"]["kernel"] = jnp.asarray(
        shared + 0.3 * rng.standard_normal((4, 8, 32)), jnp.float32)

  def penalty(p):
    _, mutated = model.apply({"params": p}, tokens(), mutable=(aux.LOSSES,))
    return aux.loss_terms(mutated)["head_diversity"]

  before = float(penalty(params))
  grads = jax.grad(penalty)(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    names = tuple(k.key for k in path)
    assert np.all(np.isfinite(g))
    if names[-3:] != ("attn", "o", "kernel"):
      assert not np.any(g), names  # the penalty reads the o kernels only
  after = float(penalty(jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)))
  assert before > 0.5 and after < before


def test_zero_init_kernels_give_zero_penalty_and_finite_gradients():
  m = model_cfg(init="zero_out")
  model, params = init_params(m)

  def penalty(p):
    _, mutated = model.apply({"params": p}, tokens(), mutable=(aux.LOSSES,))
    return aux.loss_terms(mutated)["head_diversity"]

  assert float(penalty(params)) == 0.0
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(jax.grad(penalty)(params)))


class _Progressless:
  """An optax transform that ignores the train step's `progress` extra argument."""

  def __init__(self, tx):
    self.tx = tx

  def init(self, params):
    return self.tx.init(params)

  def update(self, grads, state, params=None, **extra):
    del extra
    return self.tx.update(grads, state, params)


def _one_step(m, collections):
  """One SGD train step of the model of `m` with the given collections: (state, metrics)."""
  model, params = init_params(m)
  tx = _Progressless(optax.sgd(0.1))
  state = step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                              opt_state=tx.init(params))
  fn = jax.jit(step_lib.make_train_step(model.apply, tx, 1, collections))
  return fn(state, {"inputs": tokens(1), "targets": tokens(2)}, jnp.float32(0.0))


def test_weight_zero_is_bit_identical_to_the_plain_loss():
  assert models.family("gpt").collections == (aux.LOSSES, aux.METRICS)
  m = model_cfg(head_diversity=0.0)
  new_state, metrics = _one_step(m, models.family("gpt").collections)
  old_state, old_metrics = _one_step(m, ())  # the plain cross-entropy step
  assert float(metrics["train_loss"]) == float(old_metrics["train_loss"])
  assert not any(k.startswith(("loss/", "metric/")) for k in metrics)
  for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(old_state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_step_logs_the_penalty_and_adds_it():
  m = model_cfg(head_diversity=0.5)
  _, metrics = _one_step(m, models.family("gpt").collections)
  assert {"loss/head_diversity", "metric/head_cos_sq", "metric/head_cos"} <= set(metrics)
  np.testing.assert_allclose(float(metrics["loss/head_diversity"]),
                             0.5 * float(metrics["metric/head_cos_sq"]), rtol=1e-6)


def test_log_head_cos_logs_the_cosine_and_changes_nothing():
  """model.log_head_cos at weight 0: the cosine is logged (the same value a weighted run logs at
  these parameters) and the step is bit for bit the plain one."""
  plain_state, plain = _one_step(model_cfg(head_diversity=0.0), ())
  state, logged = _one_step(model_cfg(head_diversity=0.0, log_head_cos=True),
                            models.family("gpt").collections)
  _, weighted = _one_step(model_cfg(head_diversity=0.5), models.family("gpt").collections)
  assert "loss/head_diversity" not in logged
  assert float(logged["train_loss"]) == float(plain["train_loss"])
  np.testing.assert_allclose(float(logged["metric/head_cos"]), float(weighted["metric/head_cos"]),
                             rtol=1e-6)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(plain_state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name, overrides, pattern", [
    ("gpt", dict(head_diversity=-0.1), r"^model.head_diversity=-0.1 must be a number >= 0$"),
    ("gpt", dict(head_diversity=0.1, num_heads=1, num_kv_heads=1),
     r"^model.head_diversity=0.1 needs model.num_heads >= 2"),
    ("ngpt", dict(head_diversity=0.1), r"^model.head_diversity=0.1 .*model.name='ngpt'"),
    ("titans", dict(head_diversity=0.1), r"^model.head_diversity=0.1 .*model.name='titans'"),
    ("ngpt", dict(log_head_cos=True), r"^model.log_head_cos=True .*model.name='ngpt'"),
    ("gpt", dict(log_head_cos=True, num_heads=1, num_kv_heads=1),
     r"^model.log_head_cos=True needs model.num_heads >= 2"),
])
def test_head_diversity_config_errors(name, overrides, pattern):
  c = load_config(name, "test")
  c.model.update(**overrides)
  with pytest.raises(ConfigError, match=pattern) as e:
    config_lib.validate(c)
  assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------
# Tidal as PR #1434 computes it, and the schedule horizon.

def opt_cfg(**overrides):
  o = config_lib.base_config().optimizer
  o.update(**overrides)
  return o


def _old_tidal(p, f):
  """Today's tidal before initial_lr_frac existed (warm-up from 0), op for op."""
  p = jnp.asarray(p, jnp.float32)
  ramp = jnp.minimum(1.0, p / jnp.maximum(0.382, 1e-12))
  warm = jnp.where(jnp.asarray(0.382) > 0, ramp, jnp.ones_like(p))
  t = jnp.clip((p - 0.382) / jnp.maximum(1.0 - 0.382, 1e-12), 0.0, 1.0)
  decay = f + (1.0 - f) * 0.5 * (1.0 + jnp.cos(jnp.pi * t))
  return jnp.where(p < 0.382, warm, decay)


def test_initial_lr_frac_zero_keeps_every_schedule_bit_identical():
  ps = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
  new = schedules.from_config(opt_cfg(schedule="tidal", final_lr_frac=0.1))
  np.testing.assert_array_equal(np.asarray(jax.vmap(new)(ps)),
                                np.asarray(jax.vmap(lambda p: _old_tidal(p, 0.1))(ps)))
  for name in schedules.SCHEDULES:  # a config saved before the key: same as 0.0
    o = opt_cfg(schedule=name, warmup_frac=0.1)
    legacy = {k: o[k] for k in ("schedule", "warmup_frac", "decay_frac", "final_lr_frac")}
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(schedules.from_config(o))(ps)),
        np.asarray(jax.vmap(schedules.from_config(_Opt(legacy)))(ps)))


class _Opt(dict):
  __getattr__ = dict.__getitem__


@pytest.mark.parametrize("step", [0, 1, 76, 152, 153, 200, 275, 276, 399, 400])
def test_tidal_pr1434_horizon_400(step):
  """initial = final = 0.1, schedule_steps = 400: the multiplier is the PR's at step / 400,
  whatever the clock's progress (the time term is not used)."""
  fn = schedules.from_config(opt_cfg(schedule="tidal", initial_lr_frac=0.1, final_lr_frac=0.1,
                                     schedule_steps=400))
  for clock in (0.0, step / 276, 1.0):
    np.testing.assert_allclose(float(fn(clock, step)), pr1434_lr_mul(step, 400), atol=1e-6)


def test_horizon_400_stopped_at_276_through_the_optimizer_chain():
  """The chain counts steps in its state: 276 updates of a run whose clock says train.steps =
  276 (progress reaches 1) follow the PR's multiplier to step 275 (~0.55), not to its end."""
  o = opt_cfg(schedule="tidal", initial_lr_frac=0.1, final_lr_frac=0.1, schedule_steps=400)
  scale = build_lib.scale_by_progress_schedule(schedules.from_config(o), schedules.uses_step(o))
  params = {"w": jnp.ones(())}
  state = scale.init(params)
  update = jax.jit(lambda s, p: scale.update({"w": jnp.ones(())}, s, progress=p))
  mults = []
  for step in range(276):
    u, state = update(state, jnp.float32(schedules.progress(step, 276)))
    mults.append(float(u["w"]))
  assert int(state.count) == 276
  np.testing.assert_allclose(mults, [pr1434_lr_mul(s, 400) for s in range(276)], atol=1e-6)
  assert 0.5 < mults[-1] < 0.6
  np.testing.assert_allclose(build_lib.learning_rate(o, 1.0, 275), o.lr * mults[-1], rtol=1e-6)


def test_state_counts_only_when_the_schedule_reads_the_step():
  params = {"w": jnp.ones((2, 3))}
  plain = build_lib.build_optimizer(opt_cfg(schedule="tidal"))
  counted = build_lib.build_optimizer(opt_cfg(schedule="tidal", schedule_steps=10))
  assert jax.tree.structure(plain.init(params)) != jax.tree.structure(counted.init(params))
  def counts(state):
    is_count = lambda x: isinstance(x, build_lib.ScheduleStepState)  # noqa: E731
    return [x for x in jax.tree.leaves(state, is_leaf=is_count) if is_count(x)]
  assert not counts(plain.init(params)) and len(counts(counted.init(params))) == 1
  with pytest.raises(ValueError, match="schedule_steps"):
    build_lib.learning_rate(opt_cfg(schedule_steps=10), 0.5)


def test_initial_lr_frac_is_traced_in_a_cohort():
  """Two trials that differ in initial_lr_frac, one vmapped chain: each update is its own
  trial's multiplier times the same first AdamW step."""
  assert "initial_lr_frac" in build_lib.TRACED_OPTIMIZER_KEYS
  o = opt_cfg(name="adamw", schedule="tidal", final_lr_frac=0.1, weight_decay=0.0,
              grad_clip=0.0, lr=1e-2)
  params, grads = {"w": jnp.ones((3,))}, {"w": jnp.asarray([1.0, -2.0, 0.5])}
  inits = jnp.asarray([0.0, 0.1], jnp.float32)

  def first_update(i):
    tx = build_lib.build_optimizer(o, {"initial_lr_frac": i})
    return tx.update(grads, tx.init(params), params, progress=jnp.float32(0.1))[0]["w"]

  got = np.asarray(jax.vmap(first_update)(inits))
  adam_dir = -o.lr * np.sign(np.asarray(grads["w"]))  # first Adam step: g / |g|
  for row, i in zip(got, (0.0, 0.1)):
    np.testing.assert_allclose(row, (i + (1 - i) * 0.1 / 0.382) * adam_dir, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# The warm-down in iterations.

def warmdown_cfg(decay_steps, **overrides):
  return opt_cfg(**{"schedule": "wsd", "warmup_frac": 0.0, "final_lr_frac": 0.0,
                    "decay_steps": decay_steps, **overrides})


@pytest.mark.parametrize("steps, decay", [(100, 30), (20000, 1200), (20, 20)])
def test_warmdown_steps_without_a_cap(steps, decay):
  fn = schedules.from_config(warmdown_cfg(decay))
  for step in sorted({0, 1, steps - decay - 1, steps - decay, steps - decay + 1,
                      steps - decay // 2, steps - 1}):  # (no step is taken at `steps`)
    p = schedules.progress(step, steps)
    np.testing.assert_allclose(float(fn(p, step)), pg_lr_mul(step, None, steps, decay),
                               atol=2e-5, err_msg=f"step {step}")


def test_warmdown_under_a_time_cap_with_a_fixed_step_time():
  """step_time 0.5 s, cap 30 s: 60 steps fit in train.steps = 1000, so the last 20 iterations
  are the last 10 s and the multiplier reaches 0 at the cap."""
  st, cap, steps, decay = 0.5, 30.0, 1000, 20
  fn = schedules.from_config(warmdown_cfg(decay))
  for step in range(61):
    p = schedules.progress(step, steps, step * st, cap)
    want = pg_lr_mul(step, step * st, steps, decay, cap)
    if step:  # (at step 0 there is no step time yet: 1, as parameter-golf)
      np.testing.assert_allclose(want, min(1.0, (60 - step) / decay), atol=1e-12)
    np.testing.assert_allclose(float(fn(p, step)), want, atol=2e-5, err_msg=f"step {step}")
  assert float(fn(1.0, 60)) == 0.0


def test_warmdown_with_measured_times_and_when_the_steps_bind():
  rng = np.random.default_rng(0)
  elapsed = np.cumsum(rng.uniform(0.3, 0.7, 80))  # measured: irregular step times
  fn = schedules.from_config(warmdown_cfg(15))
  for step in range(1, 80):
    t = float(elapsed[step - 1])
    if t > 30.0:
      break
    p = schedules.progress(step, 10_000, t, 30.0)
    np.testing.assert_allclose(float(fn(p, step)), pg_lr_mul(step, t, 10_000, 15, 30.0),
                               atol=2e-5, err_msg=f"step {step}")
  # A cap that does not bind (40 steps, 60 s of room at 0.5 s): the steps' clock rules, the
  # warm-down is the last 15 of the 40 steps (parameter-golf would read the time alone).
  for step in range(41):
    p = schedules.progress(step, 40, step * 0.5, 30.0)
    want = 1.0 if step == 0 else min(1.0, max(0.0, (40 - step) / 15))
    np.testing.assert_allclose(float(fn(p, step)), want, atol=2e-5)


def test_warmdown_with_a_horizon_and_a_final_fraction():
  fn = schedules.from_config(warmdown_cfg(10, schedule_steps=50, final_lr_frac=0.2))
  for step in (1, 39, 40, 45, 50, 60):
    want = 1.0 + (0.2 - 1.0) * min(1.0, max(0.0, (step - 40) / 10))
    np.testing.assert_allclose(float(fn(0.0, step)), want, atol=1e-5)


@pytest.mark.parametrize("key, value, extra, pattern", [
    ("schedule_steps", 0, {}, r"^optimizer.schedule_steps=0 must be an integer >= 1 or None$"),
    ("decay_steps", 0, {"schedule": "wsd"},
     r"^optimizer.decay_steps=0 must be an integer >= 1 or None$"),
    ("decay_steps", 100, {"schedule": "cosine"},
     r"^optimizer.decay_steps=100 .*optimizer.schedule='cosine'"),
    ("initial_lr_frac", 1.5, {}, r"^optimizer.initial_lr_frac=1.5 must be a fraction"),
])
def test_schedule_config_errors(key, value, extra, pattern):
  c = load_config("gpt", "test")
  c.optimizer.update(**extra)
  c.optimizer[key] = value
  with pytest.raises(ConfigError, match=pattern) as e:
    config_lib.validate(c)
  assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------
# End to end: the loop's logged learning rate reads the step.

def _rows(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def test_run_logs_the_warmdown_and_head_diversity(tmp_path):
  """A time-capped single run on a fixed step time: the cap stops it at step 8, the last 3
  iterations decay to 0 at the cap, each row's lr is the closed form at the step it logs, and
  the penalty and cosine reach the metrics."""
  c = load_config("gpt", "test")
  c.model.head_diversity = 0.01
  c.optimizer.update(schedule="wsd", warmup_frac=0.0, final_lr_frac=0.0, decay_steps=3)
  c.train.update(steps=100, step_time_s=0.5, max_time_s=4.0, log_every=1, eval_every=100)
  summary = run_lib.train_and_evaluate(c, str(tmp_path))
  assert summary["stop_reason"] == "time_cap" and summary["steps"] == 8
  rows = [r for r in _rows(tmp_path / "metrics.jsonl") if "lr" in r]
  assert [r["step"] for r in rows] == list(range(1, 9))
  for r in rows:  # row s logs step s - 1's lr: pace 0.5 s, 8 steps fit
    s = r["step"] - 1
    want = c.optimizer.lr * pg_lr_mul(s, 0.5 * s, 100, 3, 4.0)
    np.testing.assert_allclose(r["lr"], want, rtol=1e-5, atol=1e-9)
    assert r["metric/head_cos_sq"] > 0 and "metric/head_cos" in r
    np.testing.assert_allclose(r["loss/head_diversity"], 0.01 * r["metric/head_cos_sq"],
                               rtol=1e-5)
  assert rows[-1]["lr"] == pytest.approx(c.optimizer.lr / 3, rel=1e-5)


@pytest.mark.parametrize("variants", ["pr1434", "warmdown", "pr1434,cpu", "warmdown,test"])
def test_param_golf_variants(variants):
  c = load_config("param_golf", variants)
  config_lib.validate(c)
  o = c.optimizer
  if "pr1434" in variants:
    assert (o.schedule, o.initial_lr_frac, o.final_lr_frac, o.schedule_steps) == (
        "tidal", 0.1, 0.1, 400)
    assert c.model.head_diversity == 1e-4 and c.model.parallel_block
  else:
    assert (o.schedule, o.warmup_frac, o.final_lr_frac, o.decay_steps) == ("wsd", 0.0, 0.0, 1200)


def test_systematic_search_is_pr141_scaled_for_the_proxy():
  from jaxgpt import config as config_lib  # the config loader, for the variant under test
  gpu = config_lib.load_file("configs/param_golf.py", "systematic_search")
  base = config_lib.load_file("configs/param_golf.py", "")
  assert (gpu.optimizer.lr, gpu.optimizer.momentum, gpu.model.rope_base) == (0.02, 0.99, 2e5)
  assert (gpu.optimizer.schedule, gpu.optimizer.decay_steps) == ("wsd", 3000)
  assert gpu.data.seq_len == 4096
  assert gpu.data.seq_len * gpu.train.batch_size == base.data.seq_len * base.train.batch_size
  # On the proxy, in either order: 4x its sequence, 1/4 its batch, 2.5x its warm-down share.
  for variants in ("systematic_search,cpu", "cpu,systematic_search"):
    cpu = config_lib.load_file("configs/param_golf.py", variants)
    config_lib.validate(cpu)
    assert (cpu.data.seq_len, cpu.train.batch_size) == (256, 8)
    assert cpu.optimizer.decay_steps is None and cpu.optimizer.decay_frac == 0.5
    assert (cpu.optimizer.lr, cpu.optimizer.momentum, cpu.model.rope_base) == (0.02, 0.99, 2e5)
