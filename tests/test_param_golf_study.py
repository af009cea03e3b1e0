"""jaxgpt/bench/param_golf_study.py: the study page's tables from trials JSON alone — each ladder
step against the one before it (not against the baseline), the 2 x 2's interaction, a folder not
run yet said in one line — and the committed page matches a rebuild from the committed JSON."""

import json
import pathlib

import pytest

from jaxgpt import report
from jaxgpt.bench import param_golf_study as study

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_study(folder, groups, values, metrics=("val_bpb",)):
  """trials.json of `groups` ({group: [(label, params)]}) with `values` {label: {seed: v}}."""
  meta = {"objective": "val_bpb",
          "groups": {g: [{"label": lab, "params": p} for lab, p in pts]
                     for g, pts in groups.items()}}
  params = {lab: p for pts in groups.values() for lab, p in pts}
  trials = [{"name": f"s1#{i}", "study": "s", "state": "COMPLETE", "params": params[lab],
             "seed": seed, "value": v, "summary": {m: v for m in metrics} | {"final_val_loss": v},
             "knobs": {}, "curve": []}
            for i, (lab, seed, v) in enumerate((lab, s, v) for lab, d in values.items()
                                               for s, v in d.items())]
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "trials.json").write_text(json.dumps(report.trials_document(trials, meta)))


def test_ladder_steps_are_compared_with_the_step_before(tmp_path):
  groups = {"ladder": [("L00_baseline", {"x": 0}), ("L01_tidal", {"x": 1}),
                       ("L02_softcap20_rope5000", {"x": 2})]}
  values = {"L00_baseline": {0: 1.70, 1: 1.71, 2: 1.69},
            "L01_tidal": {0: 1.60, 1: 1.62, 2: 1.61},  # -0.09 against L00 (d sd 0.01)
            "L02_softcap20_rope5000": {0: 1.60, 1: 1.63, 2: 1.60}}  # +0.0 against L01
  write_study(tmp_path, groups, values, metrics=("val_bpb", "val_bpb_pg"))
  s = study.load(str(tmp_path), "")
  text = study.ladder_table(s)
  rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
  assert "-0.0900 [" in rows["L01_tidal"] and "better" in rows["L01_tidal"]
  assert "0.0000 [-0.0248, +0.0248]" in rows["L02_softcap20_rope5000"]  # (float zero's sign)
  assert "not resolved with 3 seeds" in rows["L02_softcap20_rope5000"]
  assert "1.5906" in rows["L01_tidal"] and "-0.0211" in rows["L01_tidal"]  # published
  assert study.plot_ladder(s, str(tmp_path / "ladder.png"))
  assert (tmp_path / "ladder.png").stat().st_size > 1000
  assert not study.plot_loo(s, str(tmp_path / "loo.png"))  # no leave-one-out arm: no plot
  page = study.render(str(tmp_path))
  assert "Not run yet (no int6/trials.json)." in page
  assert "Not run yet (no head_div/trials.json)." in page


def test_rerun_loo_arms_are_compared_with_their_own_final_configuration(tmp_path):
  final = ("L10_decoder_final", {"x": 10})
  groups = {"ladder": [final], "loo": [("LOO_kv", {"x": 11}), ("LOO_untied", {"x": 12})]}
  values = {"L10_decoder_final": {0: 1.50, 1: 1.52, 2: 1.51},
            "LOO_kv": {0: 1.53, 1: 1.55, 2: 1.54}}  # +0.03 on every seed; LOO_untied skipped
  write_study(tmp_path, groups, values)
  rerun = {"loo_embed": [final, ("LOO_untied", {"x": 13})]}
  write_study(tmp_path / "loo_embed", rerun, {"L10_decoder_final": {0: 1.60, 1: 1.61, 2: 1.62},
                                              "LOO_untied": {0: 1.65, 1: 1.66, 2: 1.67}})
  ladder, redo = study.load(str(tmp_path), ""), study.load(str(tmp_path), "loo_embed")
  rows = {line.split(" | ")[0].strip("| "): line
          for line in study.loo_table(ladder, None).splitlines()}
  assert "not run yet" in rows["LOO_untied"] and "+0.0300 [" in rows["LOO_kv"]
  rows = {line.split(" | ")[0].strip("| "): line
          for line in study.loo_table(ladder, redo).splitlines()}
  # against the rerun's own final (1.61), not the ladder's (1.51): +0.05, not +0.15
  assert "+0.0500 [" in rows["LOO_untied *"] and "+0.0300 [" in rows["LOO_kv"]
  assert "1.6100" in rows["L10_decoder_final (loo_embed/)"]
  assert study.plot_loo(ladder, str(tmp_path / "loo.png"), rerun=redo)


def test_the_horizon_sign_says_which_horizons_resolve_it():
  def judged(diff, verdict):
    c = study.stats_lib.Comparison(diff, (diff - 0.01, diff + 0.01), 0.0, 2.0, 0.5, "paired", 3, 3)
    return study.stats_lib.Judged(c, 0.5, verdict)
  nr = "not resolved with 3 seeds"
  assert study.sign_cell(judged(-0.01, "better"), judged(-0.02, "better")) == (
      "same sign (both resolved)")
  assert study.sign_cell(judged(-0.01, nr), judged(+0.02, "worse")) == (
      "sign flips (4x resolved only)")
  assert study.sign_cell(judged(-0.01, nr), judged(+0.001, nr)) == "sign flips (neither resolved)"


def test_the_int6_tables_give_the_interaction(tmp_path):
  arms = ("muon", "muon_ste", "adamw", "adamw_ste")
  groups = {form: [(f"{form}_{a}", {"form": form, "arm": a}) for a in arms]
            for form in ("quantile", "late")}
  base = {"muon": 1.50, "muon_ste": 1.53, "adamw": 1.60, "adamw_ste": 1.61}
  jitter = {0: 0.0, 1: 0.01, 2: -0.005}
  noise = {0: 0.001, 1: -0.002, 2: 0.0}  # on Muon + STE only: the contrast's spread
  values = {f"{form}_{a}": {s: base[a] + jitter[s] + (noise[s] if a == "muon_ste" else 0)
                            for s in jitter}
            for form in groups for a in arms}
  write_study(tmp_path / "int6", groups, values, metrics=("val_bpb", "val_bpb_roundtrip"))
  text = study.int6_tables(study.load(str(tmp_path), "int6"))
  # (1.53 - 1.50) - (1.61 - 1.60) = +0.02, plus the mean of the noise (-0.000333)
  assert "| quantile | +0.0197 [" in text and "| late | +0.0197 [" in text


def test_the_committed_page_matches_its_rebuild():
  page = ROOT / "docs" / "studies" / "param_golf.md"
  if not page.exists():
    pytest.skip("docs/studies/param_golf.md is not written yet")
  text = page.read_text()
  want = study.BEGIN + "\n\n" + study.render(str(ROOT / "docs" / "studies" / "param_golf"))
  assert want + "\n" + study.END in text, (
      "docs/studies/param_golf.md's tables differ from the committed JSON; rebuild them with "
      "python scripts/param_golf_study.py")
