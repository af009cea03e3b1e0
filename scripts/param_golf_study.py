"""Rebuilds the tables of docs/studies/param_golf.md from the studies' committed JSON.

  python scripts/param_golf_study.py            # rewrite the page's tables and its plots
  python scripts/param_golf_study.py --check    # exit 1 if the page differs from a rebuild

Reads docs/studies/param_golf/{trials.json, head_div/, artifacts/, int6_tune/, int6/} (each a
report's trials.json); what each table is: `jaxgpt/bench/param_golf_study.py`.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from jaxgpt import cli
from jaxgpt.bench import param_golf_study as study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PAGE = flags.DEFINE_string("page", os.path.join(ROOT, "docs", "studies", "param_golf.md"),
                            "The study page whose tables are rebuilt.")
_FOLDER = flags.DEFINE_string("folder", os.path.join(ROOT, "docs", "studies", "param_golf"),
                              "The folder of the studies' trials.json files.")
_CHECK = flags.DEFINE_boolean("check", False, "Only compare: exit 1 if the page differs.")


def main(argv):
  del argv
  if _CHECK.value:
    with open(_PAGE.value, encoding="utf-8") as f:
      text = f.read()
    want = text.split(study.BEGIN, 1)[0] + study.BEGIN + "\n\n" + study.render(_FOLDER.value)
    if not text.startswith(want):
      print(f"{_PAGE.value}: its tables differ from a rebuild", file=sys.stderr)
      return 1
    print(f"{_PAGE.value}: tables match their rebuild")
    return 0
  for path in study.write_plots(_FOLDER.value):  # first: the page links the plots it finds
    print(f"wrote {path}")
  changed = study.update_page(_PAGE.value, _FOLDER.value)
  print(f"{_PAGE.value}: {'rewritten' if changed else 'unchanged'}")
  return 0


if __name__ == "__main__":
  cli.run(main)
