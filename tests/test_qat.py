"""Int6 quantization-aware training (jaxgpt/optim/qat.py) against float64 numpy: the fake
quantizer (quantile clip, rounding, scale, floor), the straight-through gradient, the late
switch on the LR multiplier (bitwise the plain step when off), the floor share, one-line config
errors, and a few training steps of each form (param_golf.py:test)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgpt import config as config_lib
from jaxgpt import models
from jaxgpt.errors import ConfigError
from jaxgpt.optim import build_optimizer, qat, schedules
from jaxgpt.train import run as train_run
from jaxgpt.train import state as state_lib
from jaxgpt.train import step as step_lib
from tests.helpers import load_config

# ------------------------------------------------------------------------------------------
# float64 references, written from the formulas (docs/formulas.md "Int6 QAT").


def np_fake_quant(w, axes, clip_quantile, floor):
  """(fq(w), scale) in float64: clip = quantile(|w|) per output channel (max at 1.0),
  scale = max(clip / 31, floor) (1 where 0), fq = clip(rint(w / scale), -31, 31) * scale."""
  w = np.asarray(w, np.float64)
  a = np.abs(w)
  clip = (a.max(axis=axes, keepdims=True) if clip_quantile >= 1.0
          else np.quantile(a, clip_quantile, axis=axes, keepdims=True))
  scale = np.maximum(clip / 31.0, floor)
  scale = np.where(scale > 0, scale, 1.0)
  return np.clip(np.rint(w / scale), -31, 31) * scale, scale


def assert_matches_reference(fq, w, axes, clip_quantile, floor):
  """fq equals the float64 reference, except where w / scale sits within 1e-4 of a rounding
  boundary (float32 and float64 may round those apart); at least 99% of entries checked."""
  ref, scale = np_fake_quant(w, axes, clip_quantile, floor)
  x = np.asarray(w, np.float64) / scale
  safe = np.abs(np.abs(x - np.floor(x)) - 0.5) > 1e-4
  assert safe.mean() > 0.99
  np.testing.assert_allclose(np.asarray(fq, np.float64)[safe], ref[safe], rtol=2e-6,
                             atol=1e-7)
  levels = np.asarray(fq, np.float64) / scale
  np.testing.assert_allclose(levels, np.rint(levels), atol=1e-3)  # on the grid
  assert np.abs(np.rint(levels)).max() <= 31


CASES = [  # path-free shapes: (shape, reduce axes)
    ((48, 40), (0,)),  # Dense (in, out)
    ((3, 16, 4, 8), (1,)),  # scanned (layers, embed, heads, head_dim)
    ((2, 4, 8, 16), (1, 2)),  # scanned attn/o (layers, heads, head_dim, embed)
]


@pytest.mark.parametrize("shape,axes", CASES)
@pytest.mark.parametrize("clip_quantile,floor", [(0.9999984, 0.0), (0.9, 0.0), (0.5, 0.0),
                                                 (1.0, 0.0), (1.0, 0.05), (0.95, 0.03)])
def test_fake_quant_matches_float64_numpy(shape, axes, clip_quantile, floor):
  rng = np.random.default_rng(hash((shape, clip_quantile)) % 2**32)
  w = (rng.standard_t(3, size=shape) * 0.02).astype(np.float32)  # heavy tails: clipping bites
  w[(0,) * (len(shape) - 1)] = 0.0  # one all-zero line: its channels keep a finite scale
  fq = qat.fake_quant(jnp.asarray(w), axes, clip_quantile, floor)
  assert fq.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(fq)))
  assert_matches_reference(fq, w, axes, clip_quantile, floor)


def test_fake_quant_is_not_the_identity_and_clips():
  """The check above can fail: a heavy outlier is clipped at a low quantile."""
  w = np.linspace(-1, 1, 64, dtype=np.float32).reshape(64, 1)
  w[3, 0] = 50.0
  fq = np.asarray(qat.fake_quant(jnp.asarray(w), (0,), 0.9, 0.0))
  clip = np.quantile(np.abs(w.astype(np.float64)), 0.9)
  assert fq[3, 0] == pytest.approx(clip, rel=1e-6)  # the outlier lands on the top level
  assert np.abs(fq - w).max() > 1e-3


@pytest.mark.parametrize("n", [1, 2, 7, 512, 1536])
@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.999, 0.9995, 0.9999984, 1.0])
def test_row_quantile_matches_numpy_linear(n, q):
  rng = np.random.default_rng(n)
  a = np.abs(rng.normal(size=(3, n))).astype(np.float32)
  got = np.asarray(qat.row_quantile(jnp.asarray(a), q))
  np.testing.assert_allclose(got, np.quantile(a.astype(np.float64), q, axis=-1), rtol=1e-6)


# ------------------------------------------------------------------------------------------
# The straight-through gradient.

@pytest.mark.parametrize("clip_quantile", [0.9, 1.0])
def test_ste_gradient_is_the_identity(clip_quantile):
  """d/dw sum(c * ste(w)) == c exactly, though fq is piecewise constant."""
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=(3, 16, 4, 8)), jnp.float32)
  c = jnp.asarray(rng.normal(size=w.shape), jnp.float32)
  fq = lambda x: qat.fake_quant(x, (1,), clip_quantile, 0.0)
  g = jax.grad(lambda x: jnp.sum(c * qat.ste(x, fq)))(w)
  np.testing.assert_array_equal(np.asarray(g), np.asarray(c))
  np.testing.assert_array_equal(np.asarray(qat.ste(w, fq)), np.asarray(fq(w)))


def _qat(form, **model):
  """A QAT over a two-leaf tree: one quantized kernel, one vector left alone."""
  cfg = load_config("param_golf", "test", export__fp16_max_numel=0)
  cfg.model.update(qat=form, **model)
  params = {"blocks_0": {"mlp": {"fc": {"kernel": jnp.zeros((32, 64))}},
                         "norm": {"scale": jnp.zeros((32,))}}}
  return qat.from_config(cfg, params), cfg


@pytest.mark.parametrize("form", ["int6_quantile", "int6_late"])
@pytest.mark.parametrize("on", [True, False])
def test_qat_apply_gradient_is_the_identity_on_and_off(form, on):
  q, _ = _qat(form)
  assert set(q.axes) == {"blocks_0/mlp/fc/kernel"}
  rng = np.random.default_rng(2)
  params = {"blocks_0": {"mlp": {"fc": {"kernel": jnp.asarray(rng.normal(size=(32, 64)),
                                                              jnp.float32)}},
                         "norm": {"scale": jnp.asarray(rng.normal(size=(32,)), jnp.float32)}}}
  cs = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
  loss = lambda p: sum(jnp.sum(c * x) for c, x in zip(jax.tree.leaves(cs),
                                                      jax.tree.leaves(q.apply(p, jnp.bool_(on)))))
  grads = jax.jit(jax.grad(loss))(params)
  for g, c in zip(jax.tree.leaves(grads), jax.tree.leaves(cs)):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(c))
  used = q.apply(params, jnp.bool_(on))
  kernel = params["blocks_0"]["mlp"]["fc"]["kernel"]
  np.testing.assert_array_equal(np.asarray(used["blocks_0"]["norm"]["scale"]),
                                np.asarray(params["blocks_0"]["norm"]["scale"]))
  if on or form == "int6_quantile":  # the always-on form ignores the switch
    want, _ = np_fake_quant(kernel, (0,), q.clip_quantile, q.floor)
    np.testing.assert_allclose(np.asarray(used["blocks_0"]["mlp"]["fc"]["kernel"]), want,
                               rtol=1e-5, atol=1e-7)
  else:
    np.testing.assert_array_equal(np.asarray(used["blocks_0"]["mlp"]["fc"]["kernel"]),
                                  np.asarray(kernel))


# ------------------------------------------------------------------------------------------
# The late switch and the floor share.

def test_late_switch_follows_the_schedule_multiplier_inside_jit():
  """param_golf's wsd: multiplier 1 until 80% of the clock, then linear to 0: below 0.15 from
  progress 0.97 on. The switch is traced (one compiled function for all progresses)."""
  q, cfg = _qat("int6_late")
  assert q.threshold == 0.15 and q.floor == pytest.approx(1 / 31) and q.clip_quantile == 1.0
  active = jax.jit(q.active)
  mult = schedules.from_config(cfg.optimizer)
  for p in (0.0, 0.5, 0.8, 0.9, 0.96, 0.969, 0.971, 0.98, 1.0):
    want = float(mult(p)) < 0.15
    assert bool(active(jnp.float32(p), jnp.int32(0))) == want, p
  assert not bool(active(jnp.float32(0.5), jnp.int32(0)))
  assert bool(active(jnp.float32(0.99), jnp.int32(0)))
  q2, _ = _qat("int6_quantile")
  assert bool(q2.active(jnp.float32(0.0), jnp.int32(0)))  # always on
  assert q2.floor == 0.0 and q2.clip_quantile == 0.9999984


def test_floor_share_matches_numpy():
  q, _ = _qat("int6_late", qat_scale_floor=0.02)
  rng = np.random.default_rng(3)
  kernel = rng.normal(size=(32, 64)) * np.linspace(0.05, 2.0, 64)  # column scales vary
  params = {"blocks_0": {"mlp": {"fc": {"kernel": jnp.asarray(kernel, jnp.float32)}},
                         "norm": {"scale": jnp.ones((32,))}}}
  m = q.metrics(params, jnp.bool_(False))
  want = np.mean(np.abs(kernel).max(axis=0) / 31 < 0.02)
  assert 0 < want < 1
  assert float(m["metric/qat_floor_share"]) == pytest.approx(want)
  assert float(m["metric/qat_on"]) == 0.0


# ------------------------------------------------------------------------------------------
# In the train step: off is bitwise the plain step; on changes the loss.

def test_late_qat_off_is_bitwise_the_plain_step_and_on_is_not():
  """param_golf.py:test at 2 layers (Muon): one step at progress 0.5 (multiplier 1, off) and
  0.99 (0.05, on), against the plain step compiled without QAT."""
  cfg = load_config("param_golf", "test", export__fp16_max_numel=0)
  cfg.model.update(qat="int6_late", num_layers=2, encoder_layers=0)
  model = models.build_model(cfg.model, 64)
  tx = build_optimizer(cfg.optimizer)
  state, _ = state_lib.create(model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 32), jnp.int32))
  state = state.replace(params=jax.tree.map(  # zero_out init: make every kernel nonzero
      lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(1), x.shape), state.params))
  q = qat.from_config(cfg, state.params)
  assert any("attn" in p for p in q.axes) and any("mlp" in p for p in q.axes)
  assert not any("embed" in p for p in q.axes)  # the table stays int8 in the artifact
  rng = np.random.default_rng(4)
  batch = {k: jnp.asarray(rng.integers(0, 64, size=(4, 32)), jnp.int32)
           for k in ("inputs", "targets")}
  plain_fn = jax.jit(step_lib.make_train_step(model.apply, tx, 1))
  qat_fn = jax.jit(step_lib.make_train_step(model.apply, tx, 1, qat=q))
  for progress, on in ((0.5, False), (0.99, True)):
    plain_state, plain = plain_fn(state, batch, jnp.float32(progress))
    new_state, m = qat_fn(state, batch, jnp.float32(progress))
    assert float(m["metric/qat_on"]) == float(on)
    same = float(m["train_loss"]) == float(plain["train_loss"])
    assert same == (not on), (progress, float(m["train_loss"]), float(plain["train_loss"]))
    if not on:
      for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(plain_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------------------------------
# Config errors: one line naming the key.

@pytest.mark.parametrize("key,value,pattern", [
    ("model.qat", "int4", r"^model.qat='int4' is not allowed; choose one of"),
    ("model.qat_clip_quantile", 0.0, r"^model.qat_clip_quantile=0.0 must be a number > 0"),
    ("model.qat_clip_quantile", 1.5, r"^model.qat_clip_quantile=1.5 must be a number"),
    ("model.qat_threshold", -0.1, r"^model.qat_threshold=-0.1 must be a number > 0"),
    ("model.qat_scale_floor", -1.0, r"^model.qat_scale_floor=-1.0 must be a number >= 0"),
    ("export.format", "int4", r"^export.format='int4' is not allowed; choose one of"),
    ("export.int6_clip_quantiles", (), r"^export.int6_clip_quantiles=\(\) must be a non-empty"),
    ("export.int6_clip_quantiles", (0.9, 1.5), r"^export.int6_clip_quantiles=\(0.9, 1.5\)"),
    ("export.int6_scale_floor", -0.5, r"^export.int6_scale_floor=-0.5 must be a number >= 0"),
])
def test_bad_values_are_one_line_errors(key, value, pattern):
  cfg = load_config("param_golf", "test")
  config_lib.set_key(cfg, key, value)
  with pytest.raises(ConfigError, match=pattern) as e:
    config_lib.validate(cfg)
  assert "\n" not in str(e.value)


def test_nothing_to_quantize_is_one_line_naming_the_key(tmp_path):
  """The test shape's matrices (32 x 64 at most) are all under the default 65,536 elements:
  the run refuses before writing anything."""
  cfg = load_config("param_golf", "test", export__at_end=False)
  cfg.model.qat = "int6_quantile"
  config_lib.validate(cfg)
  with pytest.raises(ConfigError, match=r"^model.qat='int6_quantile' has nothing to quantize"
                     r".*export.fp16_max_numel=65536") as e:
    train_run.train_and_evaluate(cfg, str(tmp_path / "w"))
  assert "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "w" / "config.json")


# ------------------------------------------------------------------------------------------
# A few training steps of each form.

@pytest.mark.parametrize("form", ["int6_quantile", "int6_late"])
def test_a_few_steps_of_each_form_train(form, tmp_path):
  """param_golf.py:test, 6 steps, every matrix quantized. int6_late with threshold 0.9 (the
  test's wsd multiplier, 1 - (p - 0.8) / 0.2 after 80%, is 0.83 at the last step's progress
  5/6): off, then on; int6_quantile on throughout."""
  cfg = load_config("param_golf", "test", export__fp16_max_numel=0, train__steps=6,
                    train__log_every=1, train__eval_every=6, export__at_end=False)
  cfg.model.update(qat=form, qat_threshold=0.9)
  summary = train_run.train_and_evaluate(cfg, str(tmp_path / form))
  assert summary["stop_reason"] == "steps" and np.isfinite(summary["final_val_loss"])
  rows = [json.loads(line) for line in open(tmp_path / form / "metrics.jsonl")]
  logs = [r for r in rows if "train_loss" in r]
  assert len(logs) == 6 and all(np.isfinite(r["train_loss"]) for r in logs)
  on = [r["metric/qat_on"] for r in logs]
  mult = schedules.from_config(cfg.optimizer)
  if form == "int6_quantile":
    assert on == [1.0] * 6
  else:
    assert on == [float(float(mult(s / 6)) < 0.9) for s in range(6)]
    assert on[0] == 0.0 and on[-1] == 1.0
  assert all(0.0 <= r["metric/qat_floor_share"] <= 1.0 for r in logs)


def test_resume_check_counts_fp16_max_numel_under_qat():
  """export.* is free on resume, except fp16_max_numel when QAT reads it."""
  old = {"model": {"qat": "int6_late"}, "export": {"fp16_max_numel": 0, "format": "int8"}}
  new = {"model": {"qat": "int6_late"}, "export": {"fp16_max_numel": 1024, "format": "int6"}}
  assert config_lib.config_diff(old, new) == {"export.fp16_max_numel": (0, 1024)}
  old["model"]["qat"] = new["model"]["qat"] = "none"
  assert config_lib.config_diff(old, new) == {}


def test_a_cohort_trains_qat_as_its_single_runs(tmp_path):
  """A vmapped cohort of two int6_late trials whose schedules differ (decay_frac is traced per
  trial, so QAT switches on at different steps) reproduces each trial's single run: the train
  losses and the switch step by step, and the summary keeps the last QAT metrics. (A sweep
  trial's artifact: tests/test_param_golf_int6.py.)"""
  from jaxgpt.sweep import cohort  # the sweep's trainer

  def config(seed, decay_frac):
    c = load_config("param_golf", "test", export__fp16_max_numel=0, train__steps=6,
                    train__log_every=1, train__eval_every=6, export__at_end=False,
                    train__max_time_s=None, train__final_eval_tokens=1024)
    c.model.update(qat="int6_late", qat_threshold=0.9)
    c.optimizer.update(schedule="wsd", decay_frac=decay_frac)
    c.train.seed = seed
    return c

  trials = [(0, 0.2), (1, 0.6)]
  out = cohort.train_cohort([config(s, f) for s, f in trials], str(tmp_path / "cohort"),
                            solo_steps=0)
  first_on = []
  for i, (seed, frac) in enumerate(trials):
    train_run.train_and_evaluate(config(seed, frac), str(tmp_path / f"single_{i}"))
    rows = [json.loads(line) for line in open(tmp_path / "cohort" / f"trial_{i}" /
                                              "metrics.jsonl")]
    ref = [json.loads(line) for line in open(tmp_path / f"single_{i}" / "metrics.jsonl")]
    mine = [(r["step"], r["train_loss"], r["metric/qat_on"]) for r in rows if "train_loss" in r]
    theirs = [(r["step"], r["train_loss"], r["metric/qat_on"]) for r in ref if "train_loss" in r]
    assert [m[2] for m in mine] == [t[2] for t in theirs]
    np.testing.assert_allclose([m[1] for m in mine], [t[1] for t in theirs], rtol=2e-4)
    assert out[i]["metric/qat_on"] == 1.0 and 0 <= out[i]["metric/qat_floor_share"] <= 1
    first_on.append(next(m[0] for m in mine if m[2] == 1.0))
  assert first_on[0] > first_on[1]  # the two schedules switched QAT on at different steps
