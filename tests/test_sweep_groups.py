"""The groups design (shared points once, grids, errors), the calibrated clock, stage 2 on
groups, and two workers running every (point, seed) exactly once.

The sweep runs use the closed-form trainer of tests/sweep_closed_form.py and an injected
calibration (`measure`), so no model trains here; the clock's training test is in
tests/test_sweep_clock.py."""

import json
import math
import os
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from jaxgpt.errors import ConfigError
from jaxgpt.sweep import calibrate, runner, space, spec
from jaxgpt.sweep import study as study_lib
from tests.conftest import ROOT
from tests.sweep_closed_form import closed_form, final_loss, one_group

SWEEP = "configs/sweeps/gated_ngpt_ttt.py:test"
TIMES = (0.010, 0.013, 0.011)  # the injected calibration: median 0.011, spread 3 / 11


def _measure(config, steps, repeats):
  assert repeats >= 3
  return list(TIMES)


def _static_key(config):
  return json.dumps([config.train.batch_size, config.optimizer.orthogonalize])


def _sweep(**overrides):
  s = spec.load_sweep(SWEEP)
  s.unlock()
  for key, value in overrides.items():
    target = s
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  s.lock()
  spec.validate_sweep(s)
  return s


def _dims(**baselines):
  return space.dims_from_config({k: {"key": f"optimizer.{k}", "baseline": v}
                                 for k, v in baselines.items()})


def _run(s, workdir, **kw):
  return runner.run_worker(s, str(workdir), train_fn=closed_form, group_fn=one_group,
                           traced_keys=(), progress=False, poll_s=0.1, measure=_measure,
                           static_key_fn=_static_key, **kw)


def _trials(workdir, name="gated_ngpt_ttt"):
  storage = study_lib.open_storage(f"sqlite:///{workdir}/study.db")
  return optuna.load_study(study_name=name, storage=storage).get_trials()


# ------------------------------------------------------------------------------------------
# Points.

def test_shared_points_are_one_point_listed_in_each_group():
  dims = _dims(lr=0.02, momentum=0.95)
  points, table = space.group_points({
      "A": [{"label": "A1_ne"}, {"lr": 0.1}],
      "B": [{"label": "B1"}, {"grid": {"lr": [0.1, 0.2], "momentum": [0.9]}}],
      "G": [{"lr": 0.1, "label": "pick"}]}, dims)
  assert points == [{"lr": 0.02, "momentum": 0.95}, {"lr": 0.1, "momentum": 0.95},
                    {"lr": 0.1, "momentum": 0.9}, {"lr": 0.2, "momentum": 0.9}]
  assert [e["label"] for e in table["A"]] == ["A1_ne", "A2"]
  assert [e["label"] for e in table["B"]] == ["B1", "B:lr=0.1,momentum=0.9",
                                              "B:lr=0.2,momentum=0.9"]
  assert table["A"][0]["params"] == table["B"][0]["params"]  # the baseline, in both groups
  assert table["G"][0]["params"] == table["A"][1]["params"]  # identical knobs, two names
  cats = space.group_dims(dims, points)
  assert [d.values for d in cats] == [(0.02, 0.1, 0.2), (0.9, 0.95)]
  traced_first = space.order_by_structure(points, dims, traced_keys=("optimizer.lr",))
  assert [p["momentum"] for p in traced_first] == [0.9, 0.9, 0.95, 0.95]


@pytest.mark.parametrize("groups, match", [
    ({"A": [{"lrr": 0.1}]}, r"groups.A\[0\] names unknown knob 'lrr'; knobs: lr, momentum"),
    ({"A": [{}], "B": []}, r"groups.B=\[\] must be a non-empty list"),
    ({}, "groups is empty"),
    ({"A": [{"grid": {"lr": []}}]}, r"groups.A\[0\]: a grid point"),
    ({"A": [{"grid": {"mom": [0.9]}}]}, r"groups.A\[0\] names unknown knob 'mom'"),
])
def test_group_errors_name_the_group_and_entry(groups, match):
  with pytest.raises(ConfigError, match=match):
    space.group_points(groups, _dims(lr=0.02, momentum=0.95))


def test_a_knob_without_baseline_is_refused():
  dims = space.dims_from_config({"lr": {"key": "optimizer.lr", "values": (0.1, 0.2)}})
  with pytest.raises(ConfigError, match=r"space.lr.baseline is unset"):
    space.group_points({"A": [{}]}, dims)


def test_sweep_level_errors(tmp_path):
  with pytest.raises(ConfigError, match=r"seeds=\[0\] has one seed.*report.statistics=False"):
    _sweep(seeds=(0,))
  _sweep(seeds=(0,), **{"report.statistics": False})  # a pilot: allowed
  with pytest.raises(ConfigError, match=r"stage2.knobs='mom'"):
    _sweep(**{"stage2.enabled": True, "stage2.knobs": ("mom",)})
  s = _sweep(**{"base.overrides": {"train": {"init_from": "hf_folder"}}})
  with pytest.raises(ValueError, match=r"train.init_from='hf_folder': a sweep's trials start"):
    _run(s, tmp_path / "w")
  s = _sweep(**{"base.overrides": {"train": {"max_time_s": 0.0}}})
  with pytest.raises(ValueError, match=r"train.max_time_s=0.0"):
    _run(s, tmp_path / "w")
  assert not os.path.exists(tmp_path / "w")  # nothing written to the study


def test_cli_error_is_one_line_and_writes_nothing(tmp_path):
  work = tmp_path / "w"
  r = subprocess.run([sys.executable, "-m", "jaxgpt.sweep", "--config", SWEEP,
                      "--config.groups.D=({'lrr': 0.1},)", "--workdir", str(work)],
                     cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2, r.stderr
  lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: sweep groups.D[0] names unknown "
                                                 "knob 'lrr'"), r.stderr
  assert not work.exists()


# ------------------------------------------------------------------------------------------
# A study.

def test_groups_study_calibrated_clock_and_meta(tmp_path):
  counts = _run(_sweep(), tmp_path)
  assert counts["done"] == 8 and counts["failed"] == 0  # 4 distinct points x 2 seeds
  trials = _trials(tmp_path)
  got = sorted((t.params["lr"], t.params["momentum"], t.user_attrs["seed"]) for t in trials)
  want = sorted((lr, m, s) for lr, m in ((0.01, 0.95), (0.02, 0.95), (0.04, 0.95), (0.02, 0.9))
                for s in (0, 1))
  assert got == want  # the baseline is shared by groups D and F: trained once per seed
  # The calibration pass: one structure, three repeats, the median and the spread.
  cal = calibrate.load(str(tmp_path))
  (entry,) = cal["structures"].values()
  assert entry["times_s"] == list(TIMES) and entry["step_time_s"] == 0.011
  assert math.isclose(entry["spread"], 0.003 / 0.011) and not entry["during_sweep"]
  meta = json.loads((tmp_path / "sweep.json").read_text())
  assert meta["sampler"] == "groups" and meta["baseline"]["lr"] == 0.02
  assert [e["label"] for e in meta["groups"]["D"]] == ["D_lr0.01", "base", "D_lr0.04"]
  assert meta["groups"]["F"][1]["params"] == meta["baseline"]
  assert meta["clock"]["kind"] == "calibrated" and meta["clock"]["repeats"] == 3
  # time_ref: the baseline's planned time on the calibrated clock (6 steps x 0.011 s)
  assert math.isclose(meta["time_ref"], 6 * 0.011)
  assert math.isclose(meta["loss_ref"], math.log(256))
  # The objective Optuna ranks: the efficiency (its negative), from the final loss and time.
  for t in trials:
    loss = final_loss(t.params["lr"], t.params["momentum"], t.user_attrs["seed"])
    time_s = 0.01 * 6  # the closed-form trainer's solo step time x its steps
    assert math.isclose(t.value, -(math.log(256) - loss) / (time_s / (6 * 0.011)))


def test_target_beaten_at_the_first_evaluation_is_a_warning(tmp_path):
  s = _sweep(**{"base.overrides": {"train": {"steps": 6, "eval_every": 2, "target_loss": 9.0,
                                             "stop_at_target": False}}})
  _run(s, tmp_path)
  meta = json.loads((tmp_path / "sweep.json").read_text())
  assert any("beaten at the first evaluation" in w for w in meta["warnings"])
  s = _sweep(**{"base.overrides": {"train": {"steps": 6, "eval_every": 2, "target_loss": 0.1,
                                             "stop_at_target": False}}})
  _run(s, tmp_path / "b")
  meta = json.loads((tmp_path / "b" / "sweep.json").read_text())
  assert any("no trial of gated_ngpt_ttt reached the target 0.1" in w for w in meta["warnings"])


def test_stage2_refines_around_the_best_and_skips_what_ran(tmp_path):
  s = _sweep(**{"stage2.enabled": True, "stage2.top_k": 1, "stage2.knobs": ("lr",)})
  _run(s, tmp_path)
  # The closed form is best at lr 0.02, momentum 0.95 (the baseline). lr's values 0.01, 0.02,
  # 0.04 span less than 10x, so the refinement is linear between the neighbours' midpoints:
  # 0.015, 0.0225, 0.03 (and 0.02 itself, which stage 1 ran).
  stage2 = _trials(tmp_path, "gated_ngpt_ttt-stage2")
  assert sorted({(t.params["lr"], t.params["momentum"]) for t in stage2}) == [
      (0.015, 0.95), (0.0225, 0.95), (0.03, 0.95)]
  assert all(t.state == TrialState.COMPLETE for t in stage2) and len(stage2) == 6
  meta = json.loads((tmp_path / "sweep.json").read_text())
  assert [e["label"] for e in meta["groups"]["stage2"]] == ["S2-1", "S2-2", "S2-3"]


def test_a_structure_met_during_the_sweep_is_calibrated_then(tmp_path):
  s = _sweep()
  base = spec.load_experiment(s)
  dims = runner.stage1_dims(s)
  clock = runner.Clock(s, str(tmp_path), dims, _static_key, _measure, ())
  params = {d.name: d.baseline for d in dims} | {"batch": 8}
  c = spec.trial_config(base, space.knobs_to_keys(dims, params), 0, s)
  clock.apply([c], [params], during_sweep=True)
  assert c.train.step_time_s == 0.011
  (entry,) = calibrate.load(str(tmp_path))["structures"].values()
  assert entry["during_sweep"] and "batch=8" in entry["label"]


WORKER = """
import json, sys
from jaxgpt.sweep import runner, spec
from tests.sweep_closed_form import closed_form, one_group
s = spec.load_sweep("configs/sweeps/gated_ngpt_ttt.py:test")
s.unlock()
s.seeds, s.cohort_size, s.heartbeat_s, s.grace_s = (0, 1, 2), 2, 1, 2
s.lock()
runner.run_worker(s, sys.argv[1], train_fn=closed_form, group_fn=one_group, traced_keys=(),
                  progress=False, poll_s=0.2, measure=lambda c, n, r: [0.01] * r,
                  static_key_fn=lambda c: "one")
"""


def test_two_workers_run_each_point_and_seed_once(tmp_path):
  log = tmp_path / "train.log"
  env = dict(os.environ, SWEEP_TRAIN_LOG=str(log), SWEEP_TRAIN_DELAY_S="0.05")
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for _ in range(2)]
  for p in procs:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
  with open(log, encoding="utf-8") as f:
    runs = sorted((r["lr"], r["momentum"], r["seed"]) for r in map(json.loads, f))
  want = sorted((lr, m, s) for lr, m in ((0.01, 0.95), (0.02, 0.95), (0.04, 0.95), (0.02, 0.9))
                for s in (0, 1, 2))
  assert runs == want  # 12 trials, each trained once across both workers (the baseline once)
  assert len({r for r in runs}) == 12
  assert sum(t.state == TrialState.COMPLETE for t in _trials(tmp_path)) == 12


def test_more_seeds_later_trains_only_the_new_ones(tmp_path, monkeypatch):
  log = tmp_path / "train.log"
  monkeypatch.setenv("SWEEP_TRAIN_LOG", str(log))
  _run(_sweep(), tmp_path)  # seeds 0, 1: 8 trials
  _run(_sweep(seeds=(0, 1, 2)), tmp_path)  # resumed with a third seed
  with open(log, encoding="utf-8") as f:
    seeds = sorted(json.loads(line)["seed"] for line in f)
  assert seeds == [0] * 4 + [1] * 4 + [2] * 4  # the first 8 were not trained again
  assert sum(t.state == TrialState.COMPLETE for t in _trials(tmp_path)) == 12


def test_group_seeds_give_one_group_more_seeds(tmp_path, monkeypatch):
  log = tmp_path / "train.log"
  monkeypatch.setenv("SWEEP_TRAIN_LOG", str(log))
  _run(_sweep(), tmp_path)  # seeds 0, 1: 8 trials
  # Group F (its point and the baseline it lists) gets seeds 2 and 3 on resume; D's others not.
  s = _sweep(group_seeds={"F": (2, 3)})
  pilot = tmp_path / "pilot.json"  # two configurations' seeds: (1.0, 1.2), (2.0, 2.2, 2.1)
  pilot.write_text(json.dumps({"trials": [
      {"state": "COMPLETE", "params": {"lr": lr}, "summary": {"final_val_loss": v}}
      for lr, vs in ((0.1, (1.0, 1.2)), (0.2, (2.0, 2.2, 2.1))) for v in vs]}))
  text = runner.plan(s, str(tmp_path / "plan"), traced_keys=(), measure=_measure,
                     static_key_fn=_static_key, progress=False, pilot=str(pilot))
  # pooled: (0.02 + 0.02) / 3 -> sigma 0.11547; 2 seeds: 12.7062 x sqrt(2) x sigma / sqrt(2)
  assert "runs" in text and "final_val_loss spreads by 0.1155" in text
  assert "with 2 seeds a paired difference below 1.467 is not resolvable" in text
  _run(s, tmp_path)
  with open(log, encoding="utf-8") as f:
    runs = [json.loads(line) for line in f]
  assert len(runs) == 12  # 8, then 2 points x 2 new seeds
  got = sorted((t.params["lr"], t.params["momentum"], t.user_attrs["seed"])
               for t in _trials(tmp_path))
  want = sorted([(lr, m, s) for lr, m in ((0.01, 0.95), (0.02, 0.95), (0.04, 0.95), (0.02, 0.9))
                 for s in (0, 1)] + [(lr, m, s) for lr, m in ((0.02, 0.95), (0.02, 0.9))
                                     for s in (2, 3)])
  assert got == want
  meta = json.loads((tmp_path / "sweep.json").read_text())
  assert meta["group_seeds"] == {"F": [2, 3]}
  # Each point's seeds, worked by hand: the baseline is in D and F, D_lr0.01 only in D.
  dims = runner.stage1_dims(s)
  points, table = space.group_points(s.groups.to_dict(), dims)
  assert space.point_seeds(points, table, [0, 1], {"F": [1, 2]}) == [
      [0, 1], [0, 1, 2], [0, 1], [0, 1, 2]]


def test_group_seeds_errors_name_the_key():
  with pytest.raises(ConfigError, match=r"group_seeds.Z=.*names no group"):
    _sweep(group_seeds={"Z": (3,)})
  with pytest.raises(ConfigError, match=r"group_seeds.F=.*distinct integers"):
    _sweep(group_seeds={"F": (3, 3)})
