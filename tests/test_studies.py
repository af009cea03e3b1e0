"""Every committed study rebuilds from its JSON alone: docs/studies/<study>/trials.json through
`jaxgpt.report.rebuild` gives, byte for byte, the docs/studies/<study>/report.md beside it (the
tables the study's page quotes), without the study's storage or run directories."""

import pathlib

import pytest

from jaxgpt import report

ROOT = pathlib.Path(__file__).resolve().parents[1]
# a study's folder, or each arm's folder of a study run as several sweeps (nested_vs_muon/...)
STUDIES = sorted(p.parent for p in (ROOT / "docs" / "studies").glob("**/trials.json"))


IDS = [str(p.relative_to(ROOT / "docs" / "studies")) for p in STUDIES]


@pytest.mark.parametrize("study", STUDIES, ids=IDS)
def test_study_report_rebuilds_from_its_json(study, tmp_path):
  out = report.rebuild(str(study / "trials.json"), str(tmp_path / "report.md"))
  assert pathlib.Path(out).read_text() == (study / "report.md").read_text(), (
      f"{study}/report.md differs from its rebuild; regenerate it with: python -m jaxgpt.report "
      f"--from_json {study.relative_to(ROOT)}/trials.json --markdown "
      f"{study.relative_to(ROOT)}/report.md")


def test_every_study_page_has_its_json():
  pages = sorted((ROOT / "docs" / "studies").glob("*.md"))
  for page in pages:
    folder = page.with_suffix("")
    assert (folder / "trials.json").exists(), f"{page.name} has no {folder.name}/trials.json"
