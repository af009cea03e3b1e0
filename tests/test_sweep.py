"""Sweep runner: spaces, LR scaling, stage-2 grids, and studies run in-process.

The trainer is injected (`tests.sweep_closed_form.py`: a known closed-form loss of the
hyperparameters), so these tests check the Optuna logic against a formula in seconds; the
end-to-end study with the real vmapped cohort trainer is in tests/test_report.py.
"""

import math

import chex
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from jaxgpt import config as config_lib
from jaxgpt.sweep import runner, space, spec
from tests.sweep_closed_form import closed_form, final_loss, one_group


def _sweep(name="grid2d", variants="test", **fields):
  s = config_lib.load_file(f"configs/sweeps/{name}.py", variants)
  s.unlock()
  for k, v in fields.items():
    node, *rest = k.split("__")
    if rest:
      s[node][rest[0]] = v
    else:
      s[k] = v
  s.lock()
  return s


def _run(s, workdir, **kw):
  return runner.run_worker(s, str(workdir), train_fn=kw.pop("train_fn", closed_form),
                           group_fn=one_group, progress=False, poll_s=0.05, **kw)


def _trials(workdir, name="grid2d"):
  return optuna.load_study(study_name=name,
                           storage=f"sqlite:///{workdir}/study.db").get_trials()


def test_lr_scaling_rules_and_trial_config():
  s = _sweep("gated_ngpt_ttt")
  base = spec.load_experiment(s)
  assert spec.lr_scale("none", 128, 32) == 1.0
  assert spec.lr_scale("linear", 128, 32) == 4.0
  assert spec.lr_scale("sqrt", 128, 32) == 2.0
  c = spec.trial_config(base, {"optimizer.lr": 0.01, "train.batch_size": 8}, 3, s)
  # sqrt(8 / 32) = 0.5 on every learning rate that is set; the seed is written in.
  chex.assert_trees_all_close(
      (c.optimizer.lr, c.optimizer.embed_lr, c.optimizer.head_lr, c.optimizer.scalar_lr),
      (0.005, base.optimizer.embed_lr * 0.5, base.optimizer.head_lr * 0.5,
       base.optimizer.scalar_lr * 0.5))
  assert c.train.seed == 3 and c.train.batch_size == 8
  with pytest.raises(ValueError, match="optimizer.momentum=1.5"):
    spec.trial_config(base, {"optimizer.momentum": 1.5}, 0, s)
  with pytest.raises(ValueError, match="unknown config key 'optimizer.nope'"):
    spec.trial_config(base, {"optimizer.nope": 1.0}, 0, s)


def test_sweep_config_errors_name_key_value_and_allowed():
  with pytest.raises(ValueError,
                     match=r"sampler='bogus'.*'grid', 'oat', 'groups', 'random', 'tpe'"):
    spec.validate_sweep(_sweep(sampler="bogus"))
  with pytest.raises(ValueError, match="n_trials=None must be set for sampler 'tpe'"):
    spec.validate_sweep(_sweep(sampler="tpe"))
  with pytest.raises(ValueError, match=r"lr_scaling.rule='cube'.*'none', 'linear', 'sqrt'"):
    spec.validate_sweep(_sweep(lr_scaling__rule="cube"))
  s = _sweep("gated_ngpt_ttt", "", objective="time_to_target_s")  # its target is unset
  with pytest.raises(ValueError, match="train.target_loss"):
    runner.check_space(s, spec.load_experiment(s))


@pytest.mark.parametrize("name", ["grid2d", "muon_sensitivity", "gated_ngpt_ttt"])
def test_every_sweep_variant_builds_valid_trial_configs(name):
  for variants in ("cpu", "test"):
    s = spec.load_sweep(f"configs/sweeps/{name}.py:{variants}")
    runner.check_space(s, spec.load_experiment(s))


def test_grid_orders_static_knobs_slowest_and_refines_around_best():
  dims = space.dims_from_config(_sweep("muon_sensitivity", "").space)
  pts = space.grid_points(dims, traced_keys=("optimizer.lr", "optimizer.momentum"))
  assert len(pts) == 45
  assert [p["ns_steps"] for p in pts[:15]] == [3] * 15  # one static structure per 15 points
  best = [{"lr": 0.01, "momentum": 0.95, "ns_steps": 5}]
  grid = space.refined_grid(dims, best, points=3, span=2.0)
  lrs = sorted({p["lr"] for p in grid})
  # Between the best LR's neighbours in the stage-1 list (geometric midpoints, log-spaced knob).
  chex.assert_trees_all_close(lrs, [math.sqrt(0.005 * 0.01), 0.01, math.sqrt(0.01 * 0.02)],
                              rtol=1e-5)
  assert sorted({p["momentum"] for p in grid}) == [0.925, 0.9475, 0.95, 0.97]  # + the best
  assert {p["ns_steps"] for p in grid} == {5}
  r = space.refine_values(space.Dim("lr", "optimizer.lr", None, 5e-4, 0.02, log=True), 0.01,
                          points=3, span=2.0)
  chex.assert_trees_all_close(r, (0.005, 0.01, 0.02), rtol=1e-5)


def test_grid_study_records_every_point_once_and_resumes(tmp_path):
  s = _sweep(seeds=(0, 1))
  counts = _run(s, tmp_path, max_cohorts=1)  # a worker stopped after one cohort of 4
  assert counts["done"] == 4 and counts["waiting"] == 4
  counts = _run(s, tmp_path)  # restarted: runs the rest, loses and repeats nothing
  assert counts == {"done": 8, "running": 0, "waiting": 0, "pruned": 0, "failed": 0}
  assert _run(s, tmp_path)["done"] == 8  # a finished study stays finished
  trials = _trials(tmp_path)
  points = sorted((t.params["x"], t.params["y"], t.user_attrs["seed"]) for t in trials)
  assert points == sorted((x, y, sd) for x in (0.01, 0.03) for y in (0.9, 0.95) for sd in (0, 1))
  for t in trials:
    chex.assert_trees_all_close(t.value, final_loss(t.params["x"], t.params["y"],
                                                    t.user_attrs["seed"]))
    assert t.user_attrs["run"]["knobs"] == {"optimizer.lr": t.params["x"],
                                            "optimizer.momentum": t.params["y"]}


def test_tpe_repeats_seeds_prunes_and_keeps_budget(tmp_path):
  s = _sweep(sampler="tpe", n_trials=12, seeds=(0, 1), cohort_size=4,
             pruner__name="median", pruner__startup_trials=2)
  s.unlock()
  s.space.x = dict(key="optimizer.lr", low=0.001, high=0.1, log=True)
  s.lock()
  counts = _run(s, tmp_path)
  trials = _trials(tmp_path)
  assert len(trials) == 12 and counts["done"] + counts["pruned"] == 12
  assert counts["pruned"] >= 1  # later trials worse than the median at an eval are cut
  by_config = {}
  for t in trials:
    by_config.setdefault((t.params["x"], t.params["y"]), []).append(t.user_attrs["seed"])
  assert all(sorted(v) == [0, 1] for v in by_config.values())  # every config, both seeds
  for t in trials:
    if t.state == TrialState.PRUNED:
      assert t.user_attrs["summary"]["stop_reason"] == "pruned"
      assert t.user_attrs["summary"]["steps"] < 12  # stopped before the last evaluation


def test_crashed_cohort_is_failed_then_retried_once(tmp_path):
  calls = []

  def crash_first(configs, workdir, **kw):
    calls.append(len(configs))
    if len(calls) == 1:
      raise RuntimeError("out of memory (simulated)")
    return closed_form(configs, workdir, **kw)

  s = _sweep(max_retry=1)
  counts = _run(s, tmp_path, train_fn=crash_first)
  assert counts["done"] == 4 and counts["failed"] == 4
  trials = _trials(tmp_path)
  failed = [t for t in trials if t.state == TrialState.FAIL]
  assert all("out of memory" in t.user_attrs["error"] for t in failed)
  retried = [t for t in trials if t.state == TrialState.COMPLETE]
  assert sorted(t.system_attrs["failed_trial"] for t in retried) == [t.number for t in failed]

  always = _sweep(max_retry=1)  # a trial that always crashes is not retried forever
  counts = _run(always, tmp_path / "always",
                train_fn=lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
  assert counts == {"done": 0, "running": 0, "waiting": 0, "pruned": 0, "failed": 8}


def test_two_stage_refines_around_the_best(tmp_path):
  s = _sweep(stage2__enabled=True, stage2__top_k=1, stage2__points=3)
  s.unlock()
  s.space.x["values"] = (0.005, 0.02, 0.08)
  s.lock()
  _run(s, tmp_path)
  stage2 = _trials(tmp_path, "grid2d-stage2")
  # Stage 1's best is lr 0.02, momentum 0.95 (the formula's optimum is on the grid).
  lrs = sorted({t.params["x"] for t in stage2})
  chex.assert_trees_all_close(lrs, [0.01, 0.02, 0.04], rtol=1e-5)
  assert {t.params["y"] for t in stage2} == {0.925, 0.9375, 0.95}
  assert all(t.state == TrialState.COMPLETE for t in stage2)
  best = min(stage2, key=lambda t: t.value)
  assert best.params == {"x": 0.02, "y": 0.95}
  np.testing.assert_allclose(best.value, 2.0)
