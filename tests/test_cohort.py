"""Vmapped cohorts (jaxgpt/sweep/cohort.py) against sequential single runs of the same trials.

One module-scoped cohort of three trials (distinct learning rates, momenta, seeds and data
orders; one stops at a target loss) is the reference for every test: the single-run loop must
reproduce each trial, a cohort whose third trial diverges must leave the other two bit-identical,
and a cohort interrupted mid-training must resume to the same result.
"""

import json
import math
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from jaxgpt import data
from jaxgpt.sweep import cohort
from jaxgpt.train import loop, setup
from jaxgpt.train import run as train_run
from jaxgpt.train import step as step_lib
from tests.helpers import ROOT, load_config

TRIALS = ({"lr": 0.02, "momentum": 0.95, "seed": 0, "target": None},
          {"lr": 0.01, "momentum": 0.90, "seed": 1, "target": 5.0},
          {"lr": 0.03, "momentum": 0.85, "seed": 2, "target": None})


def trial_config(lr, momentum, seed, target=None, **_):
  c = load_config("gpt", "test")
  c.optimizer.update(lr=lr, momentum=momentum, embed_lr=lr / 2)
  c.train.update(seed=seed, target_loss=target)
  return c


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def losses(rows):
  return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("cohort"))
  out = cohort.train_cohort([trial_config(**t) for t in TRIALS], workdir, solo_steps=2)
  return workdir, out


def test_cohort_equals_sequential_single_runs(baseline, tmp_path):
  workdir, out = baseline
  assert [s["stop_reason"] for s in out] == ["steps", "target", "steps"]
  # time to target = steps to target x the measured solo step time
  t1 = out[1]
  assert t1["reached_target"] and t1["step_to_target"] == 6 and t1["steps"] == 6
  assert t1["solo_step_time_s"] > 0
  assert t1["time_to_target_s"] == pytest.approx(6 * t1["solo_step_time_s"])
  for i, t in enumerate(TRIALS):
    single = train_run.train_and_evaluate(trial_config(**t), str(tmp_path / f"single_{i}"))
    got = out[i]
    assert got["stop_reason"] == single["stop_reason"]
    assert got["steps"] == single["steps"]
    chex.assert_trees_all_close(
        [got["final_val_loss"], got["best_val_loss"], got["val_bpb"], got["val_acc"]],
        [single["final_val_loss"], single["best_val_loss"], single["val_bpb"],
         single["val_acc"]], rtol=2e-4)
    assert got["val_ppl"] == pytest.approx(math.exp(got["final_val_loss"]))
    mine = losses(read_jsonl(os.path.join(workdir, f"trial_{i}", "metrics.jsonl")))
    ref = losses(read_jsonl(str(tmp_path / f"single_{i}" / "metrics.jsonl")))
    assert sorted(mine) == sorted(ref)
    chex.assert_trees_all_close(mine, ref, rtol=2e-4)
    on_disk = json.load(open(os.path.join(workdir, f"trial_{i}", "summary.json")))
    assert on_disk["final_val_loss"] == got["final_val_loss"]


def test_grouping_by_static_structure():
  base = [trial_config(**t) for t in TRIALS]  # differ in traced keys only: one cohort
  assert cohort.group_static(base) == [[0, 1, 2]]
  others = []
  for key, value in (("model.d_model", 64), ("optimizer.orthogonalize", "polar_express"),
                     ("optimizer.ns_steps", 3), ("train.batch_size", 8)):
    c = trial_config(**TRIALS[0])
    section, field = key.split(".")
    c[section][field] = value
    others.append(c)
  configs = [base[0], others[0], base[1], others[1], others[2], others[3], base[2]]
  assert cohort.group_static(configs) == [[0, 2, 6], [1], [3], [4], [5]]
  with pytest.raises(ValueError, match="optimizer.ns_steps"):
    cohort.train_cohort([base[0], others[2]], "/nonexistent/never-written")


def test_diverging_trial_is_masked_others_unchanged(baseline, tmp_path):
  _, ref = baseline
  bad = dict(TRIALS[2], lr=1e30)  # overflows to inf, then NaN
  out = cohort.train_cohort([trial_config(**t) for t in (TRIALS[0], TRIALS[1], bad)],
                            str(tmp_path), solo_steps=0, final_eval_tokens=512)
  assert out[2]["stop_reason"] == "diverged"
  assert out[2]["steps"] < 12 and out[2]["final_val_loss"] is None
  for i in (0, 1):  # the curve's last val_loss scores the final parameters
    assert out[i]["curve"] == ref[i]["curve"]
    assert out[i]["stop_reason"] == ref[i]["stop_reason"]
    assert out[i]["steps"] == ref[i]["steps"]


class _Crash(Exception):
  pass


def test_cohort_resumes_mid_training(baseline, tmp_path):
  _, ref = baseline
  configs = [trial_config(**t) for t in TRIALS]

  def crash_at_12(trial, step, metrics):
    if step == 12:
      raise _Crash()
    return False

  with pytest.raises(_Crash):
    cohort.train_cohort(configs, str(tmp_path), on_eval=crash_at_12, solo_steps=0)
  assert os.path.isdir(tmp_path / "checkpoints" / "6")
  out = cohort.train_cohort(configs, str(tmp_path), solo_steps=0, final_eval_tokens=512)
  for i in range(3):
    assert out[i]["curve"] == ref[i]["curve"]
    assert out[i]["steps"] == ref[i]["steps"]
    steps = [r["step"] for r in read_jsonl(str(tmp_path / f"trial_{i}" / "metrics.jsonl"))
             if "train_loss" in r]
    assert steps == sorted(set(steps))  # nothing logged twice
  with pytest.raises(loop.ConfigChangedError, match="optimizer.lr"):
    cohort.train_cohort([trial_config(**dict(TRIALS[0], lr=0.5))] + configs[1:],
                        str(tmp_path), solo_steps=0)
  with pytest.raises(loop.ConfigChangedError, match="number of trials"):
    cohort.train_cohort(configs[:2], str(tmp_path), solo_steps=0)


def test_gated_ngpt_alpha_and_lazy_projection_per_trial():
  """Traced init value (model.alpha) and projection period, shared batches: each trial equals
  the single-run pieces (setup.build's init and make_train_step) step for step."""
  configs = []
  for alpha, freq, seed in ((0.15, 3, 0), (0.3, 2, 1)):
    c = load_config("gated_ngpt", "test")
    c.model.update(alpha=alpha)
    c.optimizer.update(lazy_proj_freq=freq)
    c.train.update(seed=seed, data_seed=0)
    configs.append(c)
  assert cohort.group_static(configs) == [[0, 1]]
  prog = cohort.cohort_program(configs[0], 2, True, jax.devices()[:1])
  train, _, _ = prog.compile(with_eval=False)
  hp = prog.put(cohort.stack_hparams(configs))
  state = prog.init([0, 1], hp)
  alive = prog.put(np.ones((2,), bool))
  it = data.train_iterator(prog.run.spec, seq_len=32, global_batch_size=4, seed=0)
  batches = [next(it) for _ in range(4)]
  it.close()
  run = setup.build(configs[1])  # the trial that differs from the program's own config
  single_step = jax.jit(step_lib.make_train_step(run.model.apply, run.tx, 1))
  single = run.init_state()
  pick = lambda tree: jax.tree.map(lambda x: x[1], tree)
  chex.assert_trees_all_equal(pick(state.params), single.params)  # same key, its own alpha
  for n, batch in enumerate(batches):
    progress = np.float32(n / 12)
    state, alive, _ = train(state, hp, alive, prog.put(batch, prog.repl),
                            prog.put(progress, prog.repl))
    single, _ = single_step(single, batch, progress)
  chex.assert_trees_all_close(pick(state.params), single.params, rtol=1e-4, atol=1e-6)


_MULTI_DEVICE = r'''
import jax, sys, tempfile
from tests.helpers import load_config
from jaxgpt.sweep import cohort
configs = []
for lr, seed in ((0.02, 0), (0.01, 1)):
  c = load_config("gpt", "test")
  c.optimizer.lr = lr
  c.train.update(seed=seed, data_seed=0)
  configs.append(c)
run = lambda devices: cohort.train_cohort(configs, tempfile.mkdtemp(), solo_steps=0,
                                          final_eval_tokens=512, devices=devices)
spread, one = run(jax.devices()), run(jax.devices()[:1])
assert [s["cohort_devices"] for s in spread] == [2, 2], spread[0]["cohort_devices"]
assert one[0]["cohort_devices"] == 1
for a, b in zip(spread, one):
  for pa, pb in zip(a["curve"], b["curve"]):
    assert pa["step"] == pb["step"]
    for key in ("train_loss", "val_loss"):
      if pa[key] is not None or pb[key] is not None:
        assert abs(pa[key] - pb[key]) <= 1e-5 * abs(pb[key]), (key, pa, pb)
print("ok")
'''


@pytest.mark.multidevice
def test_cohort_axis_sharded_over_devices():
  """On 8 CPU devices a K=2 cohort spreads over 2 of them and equals the one-device cohort."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _MULTI_DEVICE], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().endswith("ok")


def test_cohort_ctrl_c_saves_then_resumes(baseline, tmp_path):
  """SIGINT mid-cohort (sent at the step-6 evaluation): the cohort saves, raises
  KeyboardInterrupt for the runner, and a restart ends exactly as the uninterrupted cohort."""
  import signal
  _, ref = baseline
  configs = [trial_config(**t) for t in TRIALS]
  sent = []

  def interrupt_at_6(trial, step, metrics):
    if step == 6 and not sent:
      sent.append(step)
      os.kill(os.getpid(), signal.SIGINT)
    return False

  with pytest.raises(KeyboardInterrupt):
    cohort.train_cohort(configs, str(tmp_path), on_eval=interrupt_at_6, solo_steps=0)
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()) == [6]
  out = cohort.train_cohort(configs, str(tmp_path), solo_steps=0, final_eval_tokens=512)
  for i in range(3):
    assert out[i]["curve"] == ref[i]["curve"] and out[i]["steps"] == ref[i]["steps"]
