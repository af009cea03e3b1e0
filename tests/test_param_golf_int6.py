"""configs/sweeps/param_golf_int6.py (PR #141's int6 claim as a 2 x 2 per QAT form) and the
ladder's head-diversity scan: the arms differ in exactly their factors, every point builds a
valid config, and a tiny real sweep of the int6 study's `test` variant trains QAT trials in
cohorts, exports each trial's int6 artifact and ranks by its round trip."""

import json
import math
import os

import pytest

from configs.sweeps import param_golf_int6 as int6
from configs.sweeps import param_golf_ladder as ladder
from jaxgpt import report
from jaxgpt.sweep import runner, space, spec

SWEEP = "configs/sweeps/param_golf_int6.py"


def _points(arg):
  s = spec.load_sweep(arg)
  base = spec.load_experiment(s)
  runner.check_space(s, base)
  dims = runner.stage1_dims(s)
  points, table = space.group_points(s.groups.to_dict(), dims)
  configs, _ = runner._stage1_configs(s, base, dims, ())
  return s, points, table, configs


def test_each_form_is_a_two_by_two():
  for form in int6.FORMS:
    arms = {e["label"].split("_", 1)[1]: {k: v for k, v in e.items() if k != "label"}
            for e in int6.two_by_two(form, adam_lr=0.004)}
    assert set(arms) == {"muon", "muon_ste", "adamw", "adamw_ste"}
    full = {a: {**{k: v for k, (_, v) in int6.KNOBS.items()}, **p} for a, p in arms.items()}
    for opt in ("muon", "adamw"):  # STE on and off differ in model.qat alone
      on, off = full[f"{opt}_ste"], full[opt]
      assert {k for k in on if on[k] != off[k]} == {"qat"}
      assert on["qat"] == int6.FORMS[form]["qat"] and off["qat"] == "none"
    for ste in ("", "_ste"):  # Muon and AdamW differ in the optimizer and its LR alone
      m, a = full["muon" + ste], full["adamw" + ste]
      assert {k for k in m if m[k] != a[k]} == {"opt", "lr"}
      assert (m["lr"], a["lr"]) == (int6.MUON_LR, 0.004)
  if int6.ADAM_LR is None:  # the tune study has not set it: the 2 x 2 refuses to start
    with pytest.raises(ValueError, match="ADAM_LR is unset; run the `tune` variant first"):
      spec.load_sweep(SWEEP)
    return
  s, points, table, configs = _points(SWEEP)
  assert s.objective == "val_bpb_roundtrip" and tuple(s.seeds) == (0, 1, 2)
  assert {g: len(v) for g, v in table.items()} == {"quantile": 4, "late": 4}
  assert len(points) == 8  # the two forms' no-STE arms differ in the export floor
  for c in configs:
    assert c.train.max_time_s is None and c.train.steps == int6.STEPS
    assert c.export.at_end and c.export.format == "int6" and c.export.fp16_max_numel == 4096
    assert c.data.tokenizer == "spm1024" and c.data.seq_len == 256  # systematic_search's 4x
    assert c.export.int6_scale_floor == (c.model.qat_scale_floor or 0.0)
    assert c.optimizer.momentum == 0.99 and c.model.rope_base == 200_000.0


def test_tune_and_head_div_variants_build():
  s, points, table, configs = _points(SWEEP + ":tune")
  assert {g: len(v) for g, v in table.items()} == {"muon_lr": 3, "adamw_lr": 4}
  assert s.objective == "val_bpb" and not any(c.export.at_end for c in configs)
  assert all(c.model.qat == "none" for c in configs)
  s, points, table, configs = _points("configs/sweeps/param_golf_ladder.py:head_div")
  assert [p["head_div"] for p in points] == list(ladder.HEAD_DIV_WEIGHTS)
  final = {**{k: v for k, (_, v) in ladder.KNOBS.items()}, **ladder.final_point()}
  assert all({k for k in p if p[k] != final[k]} <= {"head_div"} for p in points)
  assert all(c.model.log_head_cos for c in configs)
  s, points, table, configs = _points("configs/sweeps/param_golf_ladder.py:artifacts")
  assert [e["label"] for e in table["artifacts"]] == ["L00_baseline", "L10_decoder_final"]
  assert all(c.export.at_end and c.export.format == "int8" for c in configs)


def test_a_tiny_int6_sweep_exports_and_ranks_each_trial(tmp_path):
  pytest.importorskip("sentencepiece")  # parameter-golf's tokenizer kind: the extra
  s = spec.load_sweep(SWEEP + ":test")
  runner.run_worker(s, str(tmp_path), progress=False)
  records, meta = report.load_records(str(tmp_path))
  assert meta["objective"] == "val_bpb_roundtrip"
  [r] = records
  summ = r["summary"]
  assert r["state"] == "COMPLETE" and r["params"]["qat"] == "int6_late"
  assert math.isfinite(summ["val_bpb_roundtrip"]) and summ["artifact_format"] == "int6"
  assert summ["artifact_model_bytes"] > 0 and math.isfinite(summ["val_bpb_pg"])
  trial_dir = os.path.join(str(tmp_path), r["run_dir"], f"trial_{r['cohort_index']}")
  on_disk = json.loads(open(os.path.join(trial_dir, "summary.json")).read())
  assert on_disk["val_bpb_roundtrip"] == summ["val_bpb_roundtrip"]
  assert os.path.dirname(on_disk["artifact_path"]) == trial_dir  # the trial's own folder
  assert os.path.getsize(on_disk["artifact_path"]) == summ["artifact_model_bytes"]
  assert summ["metric/qat_on"] == 1.0 and 0.0 <= summ["metric/qat_floor_share"] <= 1.0
  assert r["value"] == pytest.approx(summ["val_bpb_roundtrip"])  # what Optuna was told
