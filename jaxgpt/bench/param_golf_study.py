"""The tables of docs/studies/param_golf.md, from the studies' committed per-trial JSON alone.

Folders under docs/studies/param_golf/ (each a report's trials.json, `python -m jaxgpt.report
DIR --json ...`): `./` the ladder study (`param_golf_ladder.py`: groups ladder, loo, horizon),
`head_div/` (`param_golf_ladder.py:head_div`), `artifacts/` (`param_golf_ladder.py:artifacts`),
`int6_tune/` (`param_golf_int6.py:tune`), `int6/` (`param_golf_int6.py`). A folder not there
yet leaves its tables out with one line saying so. Every comparison is `jaxgpt.stats.compare`
(paired over the seeds both arms ran, Welch otherwise), Holm over the comparisons one table
makes; an arm with fewer than 2 finished seeds is listed without a test.

`render(folder)` returns the markdown; `update_page(page, folder)` writes it between the page's
BEGIN / END markers (`scripts/param_golf_study.py`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from jaxgpt import report
from jaxgpt import stats as stats_lib

BEGIN = "<!-- tables: python scripts/param_golf_study.py (do not edit below) -->"
END = "<!-- end of tables -->"
PUBLISHED = {  # PR #1434's ladder on its RTX 4000 Ada proxy (val_bpb after each step)
    "L00_baseline": 1.6117, "L01_tidal": 1.5906, "L02_softcap20_rope5000": 1.5744,
    "L03_parallel": 1.5600, "L04_silu2": 1.5527, "L05_encoder1": 1.5377,
    "L06_softcap15_lr0.10": 1.5354, "L07_lr0.11": 1.5341, "L08_kv2": 1.5329,
    "L09_untied": 1.5211, "L10_decoder_final": 1.5207}
FINAL = "L10_decoder_final"
HORIZON_LOO = {"baseline": None, "lr": "LOO_lr", "tidal": "LOO_tidal", "rope": "LOO_rope",
               "decoder": "LOO_decoder"}  # horizon arm -> its 1x counterpart (LOO label)


# ------------------------------------------------------------------------------------------
# Reading.

class Study:
  """One study's trials by label: {label: {seed: summary}} of the finished trials."""

  def __init__(self, path: str):
    records, meta = report.read_trials_json(path)
    self.meta = meta
    self.groups = report.group_points(meta)
    self.by_label: dict[str, dict[int, dict]] = {}
    done = report.finished(records)
    for g, points in self.groups.items():
      for label, params in points:
        runs = [r for r in done if report.matches(r["params"], params)]
        self.by_label[label] = {int(r["seed"]): r["summary"] for r in runs}

  def progress(self) -> str:
    """'k of n trials finished' (n: each distinct point x the sweep's seeds)."""
    points = {report.config_key(p) for pts in self.groups.values() for _, p in pts}
    done = sum(len(v) for v in self.by_label_unique().values())
    return f"{done} of {len(points) * len(self.meta.get('seeds') or [])} trials finished"

  def by_label_unique(self) -> dict[str, dict[int, dict]]:
    """by_label with a point listed in several groups counted once."""
    out, seen = {}, set()
    for g, points in self.groups.items():
      for label, params in points:
        key = report.config_key(params)
        if key not in seen:
          seen.add(key)
          out[label] = self.by_label.get(label, {})
    return out

  def labels(self, group: str) -> list[str]:
    return [label for label, _ in self.groups.get(group, [])]

  def values(self, label: str, metric: str) -> dict[int, float]:
    return {s: float(v[metric]) for s, v in self.by_label.get(label, {}).items()
            if _finite(v.get(metric))}


def load(folder: str, name: str) -> Study | None:
  path = os.path.join(folder, name, "trials.json") if name else os.path.join(folder,
                                                                               "trials.json")
  return Study(path) if os.path.isfile(path) else None


# ------------------------------------------------------------------------------------------
# Cells.

def _finite(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _f(v: Any, digits: int = 4) -> str:
  return f"{v:.{digits}f}" if _finite(v) else "-"


def mean_cell(values: Mapping[int, float], digits: int = 4) -> str:
  xs = list(values.values())
  if not xs:
    return "-"
  if len(xs) == 1:
    return f"{xs[0]:.{digits}f} (1 seed)"
  return f"{np.mean(xs):.{digits}f} ± {np.std(xs, ddof=1):.{digits}f}"


def judge_all(pairs: Sequence[tuple[str, Mapping, Mapping]]) -> dict[str, stats_lib.Judged]:
  """{name: Judged} of (name, arm, baseline) pairs (`stats.compare_pairs`: Holm over those with
  2+ seeds in both arms; where no test can be made, the verdict says why)."""
  return stats_lib.compare_pairs({name: (a, b) for name, a, b in pairs})


def diff_cells(j: stats_lib.Judged, digits: int = 4) -> list[str]:
  c, p, words = j
  if c is None:  # no test: the verdict says why
    return ["-", "-", "-", words]
  return [f"{c.diff:+.{digits}f} [{c.ci[0]:+.{digits}f}, {c.ci[1]:+.{digits}f}]", f"{c.p:.3g}",
          f"{p:.3g}", words]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
  return "\n".join(lines)


DIFF = ["difference [95% interval]", "p", "Holm p", "verdict"]


# ------------------------------------------------------------------------------------------
# Tables.

def ladder_table(s: Study, metric: str = "val_bpb") -> str:
  """Each ladder step against the step before it (the published progression beside it)."""
  labels = s.labels("ladder")
  pairs = [(cur, s.values(cur, metric), s.values(prev, metric))
           for prev, cur in zip(labels, labels[1:])]
  judged = judge_all(pairs)
  rows = []
  for i, label in enumerate(labels):
    pub = PUBLISHED.get(label)
    prev_pub = PUBLISHED.get(labels[i - 1]) if i else None
    pub_step = f"{pub - prev_pub:+.4f}" if i and pub and prev_pub else "-"
    cells = diff_cells(judged[label]) if i else ["(the baseline)", "", "", ""]
    rows.append([label, _f(pub), pub_step, mean_cell(s.values(label, metric)),
                 mean_cell(s.values(label, "val_bpb_pg")), *cells])
  return table(["step", "published bpb", "published step", f"{metric} (mean ± std)",
                "val_bpb_pg", "step vs the one before: " + DIFF[0], *DIFF[1:]], rows)


def loo_arms(ladder: Study, rerun: Study | None) -> list[tuple[str, Study]]:
  """The leave-one-out arms in the ladder's order, each with the study whose runs it reads: the
  arms the `loo_embed` study reran (the ladder study defined them wrongly and skipped them)
  from it, each compared with that study's own final configuration."""
  redone = set(rerun.labels("loo_embed")) if rerun is not None else set()
  return [(a, rerun if a in redone else ladder) for a in ladder.labels("loo")]


def loo_table(ladder: Study, rerun: Study | None, metric: str = "val_bpb",
              extra: Sequence[str] = ("val_bpb_pg",)) -> str:
  """Every leave-one-out arm against the final configuration of its own study, Holm over the
  table."""
  arms = loo_arms(ladder, rerun)
  judged = judge_all([(a, s.values(a, metric), s.values(FINAL, metric)) for a, s in arms])
  rows = [[FINAL, mean_cell(ladder.values(FINAL, metric)),
           *[mean_cell(ladder.values(FINAL, e)) for e in extra], "(compared with)", "", "", ""]]
  if rerun is not None:
    rows.append([f"{FINAL} (loo_embed/)", mean_cell(rerun.values(FINAL, metric)),
                 *[mean_cell(rerun.values(FINAL, e)) for e in extra],
                 "(compared with, by the arms marked *)", "", "", ""])
  rows += [[a + (" *" if s is rerun else ""), mean_cell(s.values(a, metric)),
            *[mean_cell(s.values(a, e), 4) for e in extra], *diff_cells(judged[a])]
           for a, s in arms]
  return table(["arm", metric, *extra, *DIFF], rows)


def sign_cell(one: stats_lib.Judged, four: stats_lib.Judged) -> str:
  """Whether the mean difference keeps its sign from 1x to 4x, and at which horizons a verdict
  resolves it (a sign neither resolves is the point estimates' only)."""
  same = np.sign(one.comparison.diff) == np.sign(four.comparison.diff)
  resolved = [h for h, j in (("1x", one), ("4x", four))
              if j.verdict in (stats_lib.BETTER, stats_lib.WORSE)]
  where = ("both resolved" if len(resolved) == 2 else
           f"{resolved[0]} resolved only" if resolved else "neither resolved")
  return f"{'same sign' if same else 'sign flips'} ({where})"


def horizon_table(s: Study, metric: str = "val_bpb") -> str:
  """Each doubted finding's leave-one-out difference from the final configuration at 1x and at
  4x the steps: does it keep its sign?"""
  one = {"baseline": s.values("L00_baseline", metric)}
  one.update({k: s.values(v, metric) for k, v in HORIZON_LOO.items() if v})
  final1, final4 = s.values(FINAL, metric), s.values("H4_final", metric)
  pairs1 = [(k, one[k], final1) for k in HORIZON_LOO]
  pairs4 = [(k, s.values(f"H4_{k}", metric), final4) for k in HORIZON_LOO]
  j1, j4 = judge_all(pairs1), judge_all(pairs4)
  rows = []
  for k in HORIZON_LOO:
    a, b = j1[k], j4[k]
    keeps = "-" if a.comparison is None or b.comparison is None else sign_cell(a, b)
    rows.append([k, diff_cells(a)[0], a.verdict, diff_cells(b)[0], b.verdict, keeps])
  rows.append(["(final configuration)", mean_cell(final1), "", mean_cell(final4), "", ""])
  return table(["arm (the final configuration without it)", "1x: arm - final", "1x verdict",
                "4x: arm - final", "4x verdict", "sign"], rows)


def head_div_table(s: Study, metric: str = "val_bpb") -> str:
  labels = s.labels("head_div")
  base = labels[0]
  judged = judge_all([(a, s.values(a, metric), s.values(base, metric)) for a in labels[1:]])
  rows = []
  for a in labels:
    cells = diff_cells(judged[a]) if a != base else ["(compared with)", "", "", ""]
    rows.append([a, mean_cell(s.values(a, "metric/head_cos"), 4),
                 mean_cell(s.values(a, "metric/head_cos_sq"), 5), mean_cell(s.values(a, metric)),
                 *cells])
  return table(["weight", "mean off-diagonal cosine", "mean squared cosine", metric, *DIFF], rows)


def tune_table(s: Study, metric: str = "val_bpb") -> str:
  rows = []
  for group in s.groups:
    for label, params in s.groups[group]:
      rows.append([group, params.get("opt"), params.get("lr"), mean_cell(s.values(label, metric)),
                   len(s.values(label, metric))])
  return table(["group", "optimizer", "lr", metric, "seeds"], rows)


def int6_tables(s: Study) -> str:
  """Per form: each arm's float and round-trip bpb, the artifact, STE's effect under each
  optimizer, and the interaction."""
  out = []
  inter = {}
  for form in s.groups:
    labels = {n: f"{form}_{n}" for n in ("muon", "muon_ste", "adamw", "adamw_ste")}
    rows = []
    for name, label in labels.items():
      rt, fl = s.values(label, "val_bpb_roundtrip"), s.values(label, "val_bpb")
      gap = {k: rt[k] - fl[k] for k in rt if k in fl}
      rows.append([label, mean_cell(fl), mean_cell(rt), mean_cell(gap),
                   mean_cell(s.values(label, "artifact_bytes"), 0),
                   mean_cell(s.values(label, "metric/qat_floor_share"), 3)])
    out.append(f"**{form}** (round trip: the int6 artifact read back in a fresh process)\n\n" +
               table(["arm", "val_bpb (float)", "val_bpb_roundtrip", "round trip - float",
                      "artifact bytes", "QAT floor share"], rows))
    v = {n: s.values(lab, "val_bpb_roundtrip") for n, lab in labels.items()}
    effects = judge_all([("STE under Muon", v["muon_ste"], v["muon"]),
                         ("STE under AdamW", v["adamw_ste"], v["adamw"])])
    out.append(table(["round-trip bpb", *DIFF], [[k, *diff_cells(j)]
                                                 for k, j in effects.items()]))
    if all(len(x) >= 2 for x in v.values()):
      inter[form] = stats_lib.interaction(v["muon_ste"], v["muon"], v["adamw_ste"], v["adamw"])
  if inter:
    adjusted, _ = stats_lib.holm([c.p for c in inter.values()])
    rows = [[form, *diff_cells(stats_lib.Judged(c, p, stats_lib.verdict(c, p)))]
            for (form, c), p in zip(inter.items(), adjusted)]
    out.append("The interaction, (Muon + STE - Muon) - (AdamW + STE - AdamW) in round-trip bpb "
               "(above 0: STE costs Muon more), Holm over the two forms:\n\n" +
               table(["form", *DIFF], rows))
  return "\n\n".join(out)


def systematic_table(ladder: Study, int6: Study) -> str:
  """PR #141's settings (the int6 study's Muon no-STE arm) beside the ladder's two ends, Welch
  (another sequence length: seed s reads other batches)."""
  ss = int6.values("quantile_muon", "val_bpb")
  judged = stats_lib.compare_pairs(
      {name: (ss, ladder.values(label, "val_bpb"))
       for name, label in (("vs the ladder's baseline", "L00_baseline"),
                           ("vs the ladder's final configuration", FINAL))},
      paired=False)
  rows = [[n, *diff_cells(j)] for n, j in judged.items()]
  head = f"PR #141's settings (Muon, no QAT): val_bpb {mean_cell(ss)}\n\n"
  return head + table(["PR #141 - arm", *DIFF], rows)


def artifacts_table(art: Study, ladder: Study | None) -> str:
  """The ladder's two ends retrained with the int8 artifact: float and round-trip bpb (both
  counts), bytes; and the largest difference from the ladder's own runs of the same seeds."""
  rows = []
  for label in art.labels("artifacts"):
    mine = art.values(label, "val_bpb")
    theirs = ladder.values(label, "val_bpb") if ladder is not None else {}
    same = [abs(mine[k] - theirs[k]) for k in mine if k in theirs]
    rows.append([label, mean_cell(mine), mean_cell(art.values(label, "val_bpb_roundtrip")),
                 mean_cell(art.values(label, "val_bpb_pg")),
                 mean_cell(art.values(label, "artifact_bytes"), 0),
                 f"{max(same):.1e}" if same else "-"])
  return table(["configuration", "val_bpb (float)", "val_bpb_roundtrip (int8)", "val_bpb_pg",
                "artifact bytes", "max |float - the ladder's run|"], rows)


# ------------------------------------------------------------------------------------------
# Plots.

def _errorbar(ax, xs, comps, horizontal: bool = False, **kw):
  """Differences with their 95% intervals (`Comparison`s; None where no test) at positions xs,
  drawn along the y axis (along x when horizontal)."""
  pts = [(x, c) for x, c in zip(xs, comps) if c is not None]
  if not pts:
    return
  at, diffs = [x for x, _ in pts], [c.diff for _, c in pts]
  err = [[c.diff - c.ci[0] for _, c in pts], [c.ci[1] - c.diff for _, c in pts]]
  if horizontal:
    ax.errorbar(diffs, at, xerr=err, fmt="o", capsize=3, **kw)
  else:
    ax.errorbar(at, diffs, yerr=err, fmt="o-", capsize=3, **kw)


def _comparisons(s: Study, arms: Sequence[str], base: str, metric: str) -> list:
  """Each arm against `base` (its Comparison, None where no test can be made)."""
  judged = judge_all([(a, s.values(a, metric), s.values(base, metric)) for a in arms])
  return [judged[a].comparison for a in arms]


def plot_ladder(s: Study, path: str, metric: str = "val_bpb") -> bool:
  """Each ladder step's bpb minus the baseline's (paired, with its 95% interval) beside the
  published progression's; False when no step can be compared yet."""
  labels = s.labels("ladder")
  comps = [None] + _comparisons(s, labels[1:], labels[0], metric)
  if not any(c is not None for c in comps):
    return False
  plt = report._plt()
  fig, ax = plt.subplots(figsize=(9, 4.5))
  xs = list(range(len(labels)))
  pub = [PUBLISHED[x] - PUBLISHED[labels[0]] for x in labels]
  ax.plot(xs, pub, "s--", color="gray", label="PR #1434 (RTX 4000 Ada proxy, one run each)")
  ax.plot([0], [0.0], "o", color="C0")
  _errorbar(ax, xs, comps, color="C0", label="this proxy: mean over seeds, paired 95% interval")
  ax.axhline(0.0, color="black", lw=0.5)
  ax.set_xticks(xs, [x.split("_", 1)[1] for x in labels], rotation=35, ha="right")
  ax.set_ylabel(f"{metric} - the baseline's")
  ax.set_title("The ladder: each configuration against the PR's baseline")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def plot_loo(s: Study, path: str, metric: str = "val_bpb", rerun: Study | None = None) -> bool:
  """Each leave-one-out arm minus the final configuration (of its own study, `loo_arms`), with
  its 95% interval (above 0: removing the knob hurts, so the final configuration needs it)."""
  pairs = loo_arms(s, rerun)
  arms = [a for a, _ in pairs]
  judged = judge_all([(a, st.values(a, metric), st.values(FINAL, metric)) for a, st in pairs])
  comps = [judged[a].comparison for a in arms]
  if not any(c is not None for c in comps):
    return False
  plt = report._plt()
  fig, ax = plt.subplots(figsize=(6, 4.5))
  ys = list(range(len(arms)))
  _errorbar(ax, ys, comps, horizontal=True)
  ax.axvline(0.0, color="black", lw=0.5)
  ax.set_yticks(ys, [x[len("LOO_"):] for x in arms])
  ax.invert_yaxis()
  ax.set_xlabel(f"{metric}: without the knob - the final configuration")
  ax.set_title("Leave-one-out from the final configuration")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def write_plots(folder: str) -> list[str]:
  """The ladder and leave-one-out plots beside the ladder's JSON; the paths written."""
  ladder, rerun = load(folder, ""), load(folder, "loo_embed")
  out = []
  if ladder is not None:
    for name, draw in (("ladder.png", lambda p: plot_ladder(ladder, p)),
                       ("loo.png", lambda p: plot_loo(ladder, p, rerun=rerun))):
      if draw(os.path.join(folder, name)):
        out.append(os.path.join(folder, name))
  return out


# ------------------------------------------------------------------------------------------
# The page.

def render(folder: str) -> str:
  ladder, hd = load(folder, ""), load(folder, "head_div")
  tune, int6 = load(folder, "int6_tune"), load(folder, "int6")
  art, rerun = load(folder, "artifacts"), load(folder, "loo_embed")
  parts = []

  def section(title: str, study: Study | None, fn, where: str):
    body = fn() if study is not None else f"Not run yet (no {where}/trials.json)."
    parts.append(f"### {title}\n\n{body}")

  done = [(name, s.progress()) for name, s in (
      ("the ladder study", ladder), ("the embedding arms' rerun", rerun), ("head diversity", hd),
      ("the artifacts", art), ("the LR tune", tune), ("the int6 study", int6)) if s is not None]
  if done:
    parts.append("Finished so far: " + "; ".join(f"{n}, {p}" for n, p in done) + ". Each "
                 "table's Holm adjustment is over the comparisons it can make with the trials "
                 "finished; a table with arms still to run will be judged again.")

  def image(name: str, alt: str) -> str:
    return f"\n\n![{alt}](param_golf/{name})" if os.path.exists(os.path.join(folder, name)) else ""

  section("The ladder, each step against the one before", ladder,
          lambda: ladder_table(ladder) + image("ladder.png", "the ladder against the PR's"),
          "param_golf")
  section("Leave-one-out from the final configuration", ladder,
          lambda: loo_table(ladder, rerun)
          + image("loo.png", "leave-one-out differences"), "param_golf")
  section("4x the horizon", ladder, lambda: horizon_table(ladder), "param_golf")
  section("Head diversity: the weight scan", hd, lambda: head_div_table(hd), "head_div")
  section("The ladder's two ends as artifacts", art, lambda: artifacts_table(art, ladder),
          "artifacts")
  section("Each optimizer's LR (no QAT)", tune, lambda: tune_table(tune), "int6_tune")
  section("PR #141's systematic search", int6 if ladder is not None else None,
          lambda: systematic_table(ladder, int6), "int6")
  section("int6 QAT: STE x optimizer, per form", int6, lambda: int6_tables(int6), "int6")
  return "\n\n".join(parts) + "\n"


def update_page(page: str, folder: str) -> bool:
  """Rewrites the tables between BEGIN and END in `page`; True if the page changed."""
  with open(page, encoding="utf-8") as f:
    text = f.read()
  if BEGIN not in text or END not in text:
    raise ValueError(f"{page} has no {BEGIN!r} ... {END!r} markers")
  head, rest = text.split(BEGIN, 1)
  _, tail = rest.split(END, 1)
  new = head + BEGIN + "\n\n" + render(folder) + "\n" + END + tail
  if new != text:
    with open(page, "w", encoding="utf-8") as f:
      f.write(new)
  return new != text
