"""One-factor-at-a-time sweeps (sampler "oat") and tied keys: the points, the validation, and a
study run in-process with the closed-form trainer whose report keeps each knob to its axis."""

import re

import pytest

from jaxgpt import config as config_lib
from jaxgpt import report
from jaxgpt.sweep import runner, space, spec
from tests.sweep_closed_form import closed_form, one_group

SWEEP = "configs/sweeps/moe_muon_sensitivity.py"


def test_oat_points_of_the_sensitivity_study():
  s = spec.load_sweep(SWEEP)
  dims = space.dims_from_config(s.space)
  points = space.oat_points(dims, traced_keys=("optimizer.lr", "optimizer.momentum"))
  # 5 + 3 + 3 axis points, the shared baseline counted once
  assert len(points) == 9 and len(s.seeds) == 3
  base = {"lr": 0.01, "momentum": 0.95, "ns_steps": 5}
  assert points.count(base) == 1
  for name, d in zip(("lr", "momentum", "ns_steps"), dims):
    on_axis = sorted(p[name] for p in points if space.oat_axis(dims, name, p))
    assert on_axis == sorted(d.values)
  # the static knob (Newton-Schulz steps) varies slowest: one cohort per step count
  assert [p["ns_steps"] for p in points] == [3] + [5] * 7 + [7]
  keys = space.knobs_to_keys(dims, {"lr": 0.02, "momentum": 0.9, "ns_steps": 7})
  assert keys["optimizer.lr"] == 0.02 and keys["optimizer.ns_steps"] == 7
  for k in ("embed_lr", "scalar_lr", "head_lr"):  # Adam at 0.1 x the Muon lr
    assert keys[f"optimizer.{k}"] == pytest.approx(0.002)
  cfg = spec.trial_config(spec.load_experiment(s), keys, 1, s)
  assert cfg.optimizer.embed_lr == pytest.approx(0.002) and cfg.train.seed == 1


@pytest.mark.parametrize("field,value,match", [
    ("baseline", None, r"space.lr.baseline=None must name one of"),
    ("baseline", 0.3, r"space.lr.baseline=0.3 must be one of its values"),
    ("tied", (("embed_lr", 0.1),), r"space.lr.tied=.* must be \(dotted config key, factor\)"),
])
def test_oat_space_errors_name_the_knob(field, value, match):
  s = config_lib.load_file(SWEEP, "test")
  s.space.lr[field] = value
  with pytest.raises(ValueError, match=match):
    spec.validate_sweep(s)


def test_oat_study_and_report_keep_each_knob_to_its_axis(tmp_path):
  s = spec.load_sweep(SWEEP + ":test")
  counts = runner.run_worker(s, str(tmp_path), train_fn=closed_form, group_fn=one_group,
                             progress=False, poll_s=0.05)
  assert counts["done"] == 3  # (0.01, 5), (0.02, 5), (0.01, 3)
  records, meta = report.load_records(str(tmp_path))
  assert meta["sampler"] == "oat"
  assert meta["baselines"] == {"lr": 0.01, "momentum": 0.95, "ns_steps": 5}
  assert meta["baseline"] == meta["baselines"]  # the point every configuration is compared with
  assert sorted((r["params"]["lr"], r["params"]["ns_steps"]) for r in records) == [
      (0.01, 3), (0.01, 5), (0.02, 5)]
  table, stats = report.sensitivity(records, "lr", meta["baselines"], meta["baseline"]["lr"])
  assert [(v, n) for v, n, *_ in stats] == [(0.01, 1), (0.02, 1)]  # the ns=3 run is off-axis
  assert "the baseline (lr=0.01) has 1 seed" in table  # the test variant runs one seed
  _, marginal = report.sensitivity(records, "lr")
  assert [(v, n) for v, n, *_ in marginal] == [(0.01, 2), (0.02, 1)]
  md = open(report.write_report(records, meta, str(tmp_path / "report"))).read()
  assert "One factor at a time" in md
  lr_rows = md.split("### lr")[1].split("###")[0]
  assert len(re.findall(r"^\| 0\.0[12] ", lr_rows, re.M)) == 2
