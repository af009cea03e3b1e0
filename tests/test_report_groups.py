"""Reports of a groups sweep (sampler "groups"), built here by hand: the group tables against a
baseline two groups share (hand-worked paired t, p and Holm), the top configurations under the
sweep's objective, how time was measured, the warnings, the time cap; and the report's JSON:
written, rebuilt alone to the same markdown (a hand-built sweep and a real small one), and the
command line's errors. No training but the closed-form stand-in."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import chex
import pytest

from jaxgpt import report
from jaxgpt.sweep import runner, spec
from tests.sweep_closed_form import closed_form, one_group

ROOT = Path(__file__).resolve().parents[1]

KNOBS = {"ortho": "optimizer.orthogonalize", "lr": "optimizer.lr",
         "vr": "optimizer.variance_reduction", "cwd": "optimizer.cautious_wd",
         "batch": "data.batch_size"}
BASE = {"ortho": "newton_schulz", "lr": 0.003, "vr": False, "cwd": False, "batch": 32}


def _point(label, **changes):
  return {"label": label, "params": {**BASE, **changes}}


# The baseline is a point of groups A and B (trained once per seed, listed in both); group E's
# point never ran; group G's ran one seed.
GROUPS = {"A": [_point("A0_base"), _point("A1_pe", ortho="polar_express")],
          "B": [_point("B0_base"), _point("B1_vr", vr=True), _point("B2_cwd", cwd=True)],
          "E": [_point("E1_b64", batch=64)],
          "G": [_point("G1_lr", lr=0.006)]}
# {label: (params, {seed: (final val loss, step time s, time to target s or None)})}; 100 steps.
RUNS = {
    "base": (BASE, {0: (3.00, 0.1, 9.0), 1: (3.10, 0.1, 9.8), 2: (3.20, 0.1, None)}),
    # d = (-0.10, -0.05, -0.10): mean -1/12, sd 0.05 / sqrt(3), se = 1/60, t = -5 on 2 dof,
    # p = 1 - |t| / sqrt(2 + t^2) = 1 - 5 / sqrt(27) = 0.037750; the only comparison of group A
    # (Holm over m = 1 leaves it): better. 95% CI -1/12 -+ 4.302653 / 60 = [-0.1550, -0.0116].
    "A1_pe": (GROUPS["A"][1]["params"], {0: (2.90, 0.12, 8.0), 1: (3.05, 0.12, 9.0),
                                         2: (3.10, 0.12, 10.0)}),
    # d = (0.50, 0.52, 0.48): t = 25 sqrt(3) = 43.30, p = 1 - sqrt(1875 / 1877) = 0.00053291.
    "B1_vr": (GROUPS["B"][1]["params"], {0: (3.50, 0.1, None), 1: (3.62, 0.1, None),
                                         2: (3.68, 0.1, None)}),
    # d = (0.30, -0.02, 0.08): t^2 = 1.61194, t = 1.2696, p = 1 - sqrt(1.61194 / 3.61194)
    # = 0.33196. Holm over group B's m = 2: 2 x 0.00053291 = 0.0010658 (worse), then
    # max(0.0010658, 0.33196) = 0.33196 (not resolved). Seed 1 was stopped by the time cap.
    "B2_cwd": (GROUPS["B"][2]["params"], {0: (3.30, 0.1, None), 1: (3.08, 0.125, 10.5),
                                          2: (3.28, 0.1, None)}),
    "G1_lr": (GROUPS["G"][0]["params"], {0: (2.95, 0.1, 7.0)}),
}
CAPPED = ("B2_cwd", 1)
P_A1 = 1 - 5 / math.sqrt(27)
P_B = {"B1_vr": 2 * (1 - math.sqrt(1875 / 1877)), "B2_cwd": 1 - math.sqrt(1.61194 / 3.61194)}
CLOCK = {"kind": "calibrated", "repeats": 3, "steps": 20, "structures": [
    {"label": "orthogonalize=newton_schulz, variance_reduction=False, batch=32",
     "step_time_s": 0.1, "times_s": [0.099, 0.1, 0.104], "spread": 0.05, "during_sweep": False},
    {"label": "orthogonalize=polar_express, variance_reduction=False, batch=32",
     "step_time_s": 0.12, "times_s": [0.12, 0.118, 0.121], "spread": 0.025,
     "during_sweep": True}]}
WARNING = "target_loss 3.1: no pilot run reached it"


def _record(name, params, seed, loss, step_s, ttt, capped=False):
  steps = 88 if capped else 100
  return {"name": name, "study": "gated", "state": "COMPLETE", "params": dict(params),
          "seed": seed, "value": loss, "knobs": {}, "vocab_size": 50304, "error": None,
          "run_dir": "cohort_0", "cohort_index": 0,
          "curve": [{"step": s, "val_loss": loss + (steps - s) / steps, "train_loss": loss}
                    for s in (25, 50, 75, steps)],
          "summary": {"final_val_loss": loss, "best_val_loss": loss,
                      "val_bpb": loss / math.log(2), "steps": steps, "step_time_s": step_s,
                      "train_time_s": steps * step_s, "tokens_per_s": 1000.0 / step_s,
                      "stop_reason": "time_cap" if capped else "steps",
                      "reached_target": ttt is not None, "time_to_target_s": ttt}}


def _records(runs=RUNS):
  out = []
  for label, (params, seeds) in runs.items():
    for seed, (loss, step_s, ttt) in seeds.items():
      out.append(_record(f"t{len(out)}", params, seed, loss, step_s, ttt,
                         capped=(label, seed) == CAPPED))
  return out


def _meta(**changes):
  meta = {"name": "gated-ngpt-ttt", "sampler": "groups", "objective": "efficiency",
          "seeds": [0, 1, 2], "knobs": KNOBS, "baseline": BASE, "groups": GROUPS,
          "loss_ref": 6.0, "time_ref": None, "target_loss": 3.1, "max_time_s": 11.0,
          "clock": CLOCK, "warnings": [WARNING]}
  return {**meta, **changes}


def _section(md, heading):
  return md.split(heading + "\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


def _table(md, heading):
  """The rows of the first table under `heading`, header included, as lists of cells."""
  return [[c.strip() for c in line.split("|")[1:-1]]
          for line in _section(md, heading).splitlines()
          if line.startswith("| ") and not line.startswith("| ---")]


def _by_first(rows):
  return {r[0]: dict(zip(rows[0], r)) for r in rows[1:]}


def _write(tmp_path, records=None, **meta):
  path = report.write_report(_records() if records is None else records, _meta(**meta),
                             str(tmp_path))
  return Path(path).read_text(encoding="utf-8")


def _top(meta, records=None, k=10):
  """{label: row} of the top-k configurations table alone (no plots)."""
  records = _records() if records is None else records
  loss_ref, _ = report.loss_reference(records, meta)
  text = report.top_configurations(records, meta, k, loss_ref,
                                   *report.time_reference(records, meta))
  return _by_first(_table("## Top\n" + text, "## Top"))


def _report_cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxgpt.report", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_group_tables_judge_each_point_against_the_shared_baseline(tmp_path):
  md = _write(tmp_path)
  members = _by_first(_table(md, "## Groups"))
  assert members["A0_base / B0_base"]["group(s)"] == "A, B"  # one configuration, two groups
  assert members["A0_base / B0_base"]["completed"] == "3"
  assert members["A1_pe"]["differs from the baseline"] == "ortho=polar_express"
  assert members["E1_b64"]["trials"] == "0"

  a = _by_first(_table(md, "### Group A"))
  assert list(a) == ["A0_base", "A1_pe"]
  assert a["A0_base"]["verdict"] == "baseline" and a["A0_base"]["p (Holm)"] == "-"
  row = a["A1_pe"]
  assert (row["seeds"], row["val loss"], row["reached target"]) == ("3", "3.0167 ± 0.1041",
                                                                    "3/3")
  assert row["t (dof)"] == "-5 (2)" and row["test"] == "paired"
  assert (row["diff to baseline"], row["95% CI"]) == ("-0.0833", "[-0.1550, -0.0116]")
  assert row["p (Holm)"] == f"{P_A1:.2g}" == "0.038"  # shown to 2 significant digits
  assert row["verdict"] == "better"
  # Efficiency: (6 - loss) / (time / time_ref), time_ref the baseline's mean time 10 s.
  chex.assert_trees_all_close(float(row["efficiency"]),
                              sum((6 - x) / 1.2 for x in (2.90, 3.05, 3.10)) / 3, rtol=1e-3)
  assert "over this table's 1 comparison," in _section(md, "### Group A")

  b = _by_first(_table(md, "### Group B"))
  assert list(b) == ["B0_base", "B1_vr", "B2_cwd"]
  assert b["B1_vr"]["t (dof)"] == "+43.3 (2)" and b["B1_vr"]["verdict"] == "worse"
  assert b["B2_cwd"]["t (dof)"] == "+1.27 (2)"
  assert b["B2_cwd"]["verdict"] == "not resolved with 3 seeds"
  assert [b[label]["p (Holm)"] for label in P_B] == [f"{p:.2g}" for p in P_B.values()] == [
      "0.0011", "0.33"]
  assert "over this table's 2 comparisons" in _section(md, "### Group B")

  # A group without the baseline gets it as its first row; a point not run, one seed.
  e = _by_first(_table(md, "### Group E"))
  assert list(e) == ["A0_base / B0_base", "E1_b64"]
  assert e["E1_b64"]["verdict"] == "no completed run" and e["E1_b64"]["seeds"] == "0"
  g = _by_first(_table(md, "### Group G"))
  assert g["G1_lr"]["verdict"] == "n/a: 1 seed" and g["G1_lr"]["diff to baseline"] == "-"
  for name in "ABEG":
    assert f"![loss vs time, group {name}](loss_vs_time_{name}.png)" in _section(
        md, f"### Group {name}")
    assert os.path.getsize(tmp_path / f"loss_vs_time_{name}.png") > 1000


def test_group_tables_give_verdicts_from_three_seeds_only():
  two = {k: (p, {s: v for s, v in seeds.items() if s < 2}) for k, (p, seeds) in RUNS.items()}
  table = report.group_table([(g["label"], g["params"]) for g in GROUPS["B"]], _records(two),
                             BASE, "B0_base", 6.0, 10.0)
  b = _by_first(_table("## B\n" + table, "## B"))
  # Two seeds: the test's numbers stay, as a description, without a verdict.
  assert b["B1_vr"]["test"] == "paired" and b["B1_vr"]["t (dof)"].endswith("(1)")
  assert b["B1_vr"]["verdict"] == "no verdict: 2 seeds (a verdict needs 3)"


def test_one_seed_everywhere_gives_no_verdicts_and_no_crash(tmp_path):
  one = {k: (p, {0: seeds[0]}) for k, (p, seeds) in RUNS.items()}
  md = _write(tmp_path, _records(one))
  for name in "ABG":
    rows = _by_first(_table(md, f"### Group {name}"))
    assert "One seed: no verdicts" in _section(md, f"### Group {name}")
    for label, row in rows.items():
      assert row["verdict"] == ("baseline" if "base" in label else "one seed: no verdicts")
  assert "No comparisons: the baseline" in md.split("## Seeds", 1)[1].split("\n## ", 1)[0]


def test_top_configurations_follow_the_sweep_objective(tmp_path):
  md = _write(tmp_path)
  rows = _table(md, "## Top 10 configurations")
  assert rows[0] == ["label", "group(s)", "batch", "cwd", "lr", "ortho", "vr", "seeds",
                     "val loss", "time (s)", "tokens/s", "efficiency", "reached target",
                     "median time to target (s)", "capped"]
  top = _by_first(rows)
  # Mean efficiency: G1 3.05, the baseline 2.9, B2 (2.7 + 2.92 / 1.1 + 2.72) / 3 = 2.6915,
  # A1 2.4861, B1 2.4.
  assert list(top) == ["G1_lr", "A0_base / B0_base", "B2_cwd", "A1_pe", "B1_vr"]
  assert top["A0_base / B0_base"]["group(s)"] == "A, B"
  assert [top["A1_pe"][k] for k in ("batch", "cwd", "lr", "ortho", "vr")] == [
      "32", "False", "0.003", "polar_express", "False"]
  assert top["A1_pe"]["time (s)"] == "12" and top["A1_pe"]["tokens/s"] == "8333"
  # Censored: A1 (8, 9, 10) -> 9; the baseline (9, 9.8, never) -> 9.8; B2 1 of 3 -> "-".
  assert [top["A1_pe"][k] for k in ("reached target", "median time to target (s)", "capped")
          ] == ["3/3", "9", "0/3"]
  assert top["A0_base / B0_base"]["median time to target (s)"] == "9.8"
  assert [top["B2_cwd"][k] for k in ("reached target", "median time to target (s)", "capped")
          ] == ["1/3", "-", "1/3"]
  chex.assert_trees_all_close(float(top["B2_cwd"]["efficiency"]),
                              (2.7 + 2.92 / 1.1 + 2.72) / 3, rtol=1e-3)
  assert "time_ref = 10 s (the baseline configuration's mean trial time over its 3 seeds)" in md
  order = {"final_val_loss": ["G1_lr", "A1_pe", "A0_base / B0_base", "B2_cwd", "B1_vr"],
           # reached share first (1, 1, 2/3, 1/3, 0), then the censored median
           "time_to_target_s": ["G1_lr", "A1_pe", "A0_base / B0_base", "B2_cwd", "B1_vr"]}
  for objective, labels in order.items():
    assert list(_top(_meta(objective=objective))) == labels, objective
  assert list(_top(_meta(), k=2)) == ["G1_lr", "A0_base / B0_base"]


def test_how_time_was_measured_and_the_warnings(tmp_path):
  md = _write(tmp_path)
  clock = _section(md, "## How time was measured")
  assert "Calibrated clock" in clock and "3 timed repeats of 20 steps" in clock
  rows = _table(md, "## How time was measured")
  assert rows[1] == ["orthogonalize=newton_schulz, variance_reduction=False, batch=32", "0.1",
                     "0.099, 0.1, 0.104", "5.0%", "before the sweep"]
  assert rows[2][-2:] == ["2.5%", "during the sweep"]
  assert "1 structure was calibrated during the sweep" in clock
  assert "loss_ref = 6.0000 (sweep.json `loss_ref`)" in clock
  assert "time cap per trial: 11 s" in clock
  warned = _section(md, "## Warnings")
  assert f"- {WARNING}" in warned
  capped = [line for line in warned.splitlines() if line.startswith("- capped:")]
  assert len(capped) == 1 and "(B2_cwd, seed 1)" in capped[0] and "at step 88" in capped[0]
  # A given time_ref, and a clock measured at compile.
  meta = _meta(time_ref=20.0, clock={"kind": "measured", "structures": []})
  records = _records()
  clock = report.clock_section(meta, report.loss_reference(records, meta),
                               report.time_reference(records, meta))
  assert "solo step time measured at compile (no repeats)" in clock
  assert "time_ref = 20 s (sweep.json `time_ref`)" in clock
  chex.assert_trees_all_close(float(_top(meta)["G1_lr"]["efficiency"]), (6 - 2.95) / (10 / 20),
                              rtol=1e-3)


def test_old_sweeps_report_as_before(tmp_path):
  meta = {"name": "old", "knobs": {"lr": "optimizer.lr"}, "loss_ref": 6.0, "sampler": "grid"}
  records = [_record(f"t{i}", {"lr": lr}, 0, 3.0 + lr, 0.1, None)
             for i, lr in enumerate((0.01, 0.02))]
  md = Path(report.write_report(records, meta, str(tmp_path))).read_text()
  for heading in ("## Groups", "## How time was measured", "## Warnings", "configurations"):
    assert heading not in md
  assert "## Top 10\n" in md and "(the fastest trial)" in md


def test_the_json_rebuilds_the_same_report(tmp_path):
  records = _records()
  # A diverged trial: NaN and inf become null and 1e308 in strict JSON.
  bad = _record("t99", GROUPS["G"][0]["params"], 1, math.nan, 0.1, None)
  bad["summary"].update(stop_reason="diverged", val_bpb=math.inf)
  bad["value"] = math.inf
  first = report.write_report(records + [bad], _meta(), str(tmp_path / "sweep"))
  doc = json.loads((tmp_path / "sweep" / "trials.json").read_text())
  assert doc["format"] == "jaxgpt.report/1" and doc["meta"]["groups"] == GROUPS
  assert len(doc["trials"]) == len(records) + 1
  assert doc["trials"][0]["curve"] == records[0]["curve"]
  assert doc["trials"][-1]["summary"]["final_val_loss"] is None
  assert doc["trials"][-1]["value"] == 1e308
  out = tmp_path / "elsewhere" / "rebuilt.md"  # no study, no run dirs: the JSON alone
  proc = _report_cli("--from_json", str(tmp_path / "sweep" / "trials.json"),
                     "--markdown", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == str(out)
  assert out.read_text() == Path(first).read_text()
  assert "Diverged (NaN/inf, masked in their cohort): t99." in out.read_text()
  for png in ("loss_curves.png", "loss_vs_time_A.png", "sensitivity.png"):
    assert os.path.getsize(out.parent / png) > 1000  # beside the markdown, linked by name


def test_the_json_of_a_real_sweep_rebuilds_the_same_report(tmp_path):
  """A small grid study run by the real worker (Optuna storage, run directories) with the
  closed-form trainer; the report from storage and the one rebuilt from its JSON."""
  sweep = spec.load_sweep("configs/sweeps/grid2d.py:test")
  sweep.unlock()
  sweep.seeds = (0, 1)
  sweep.lock()
  counts = runner.run_worker(sweep, str(tmp_path / "sweep"), train_fn=closed_form,
                             group_fn=one_group, progress=False, poll_s=0.05)
  assert counts["done"] == 8
  extra = tmp_path / "copy.json"
  proc = _report_cli(str(tmp_path / "sweep"), "--json", str(extra))
  assert proc.returncode == 0, proc.stderr[-3000:]
  stored = tmp_path / "sweep" / "report"
  assert extra.read_text() == (stored / "trials.json").read_text()
  doc = json.loads(extra.read_text())
  assert len(doc["trials"]) == 8 and all(t["curve"] for t in doc["trials"])
  out = tmp_path / "rebuilt" / "report.md"
  proc = _report_cli("--from_json", str(extra), "--markdown", str(out))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert out.read_text() == (stored / "report.md").read_text()


@pytest.mark.parametrize("setup,args,words", [
    (None, ("--from_json", "{tmp}/missing.json"), "no trials JSON at"),
    ({"format": "jaxgpt.other/9", "meta": {}, "trials": []}, ("--from_json", "{tmp}/f.json"),
     "is not a sweep report's trials JSON (format 'jaxgpt.other/9'"),
    ("{not json", ("--from_json", "{tmp}/f.json"), "is not JSON"),
    (None, ("{tmp}", "--from_json", "{tmp}/f.json"), "not both"),
    (None, (), "give one sweep directory"),
    (None, ("{tmp}", "--markdown", "{tmp}/r.md"), "--markdown goes with --from_json"),
])
def test_report_cli_errors_are_one_line(tmp_path, setup, args, words):
  if setup is not None:
    text = setup if isinstance(setup, str) else json.dumps(setup)
    (tmp_path / "f.json").write_text(text)
  proc = _report_cli(*[a.format(tmp=tmp_path) for a in args])
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
  assert words in proc.stderr


def test_a_val_bpb_objective_compares_val_bpb():
  # A1_pe is better than the baseline in val loss (p = 0.037750, above) but its val bpb is
  # worse: d = (0.50, 0.52, 0.48), t = 25 sqrt(3), p = 1 - sqrt(1875 / 1877) = 0.00053291.
  records = _records({k: RUNS[k] for k in ("base", "A1_pe")})
  bpb = {("base", 0): 5.0, ("base", 1): 5.1, ("base", 2): 5.2,
         ("A1_pe", 0): 5.5, ("A1_pe", 1): 5.62, ("A1_pe", 2): 5.68}
  for r in records:
    r["summary"]["val_bpb"] = bpb[("base" if r["params"] == BASE else "A1_pe", r["seed"])]
  assert report.compared_metric(_meta(objective="val_bpb")) == "val_bpb"
  assert report.compared_metric(_meta(objective="efficiency")) == "final_val_loss"
  points = [("A0_base", BASE), ("A1_pe", GROUPS["A"][1]["params"])]
  by_loss = report.group_table(points, records, BASE, "A0_base", 6.0, None)
  by_bpb = report.group_table(points, records, BASE, "A0_base", 6.0, None, "val_bpb")
  row = lambda text: next(ln for ln in text.splitlines() if ln.startswith("| A1_pe"))
  assert "| better |" in row(by_loss) and "| val loss |" in by_loss
  assert "| worse |" in row(by_bpb) and "| val bpb |" in by_bpb
  assert "+0.5000" in row(by_bpb) and "5.6000 ± 0.0917" in row(by_bpb)
  table, _ = report.multi_seed_table(records, 5, BASE, "val_bpb")
  assert "mean val bpb" in table and "| worse |" in table
