"""Sweep reports: `python -m jaxgpt.report DIR [--storage URL]` -> DIR/report/report.md + PNGs.

  python -m jaxgpt.report sweeps/grid2d
  python -m jaxgpt.report sweeps/grid2d --storage postgresql://user@host/db

Reads the sweep's studies (DIR/study.db by default; `DIR/sweep.json`, written by the workers,
names the studies, knobs and references) and each trial's run files, then writes:
- a top-k table: trial, knobs, val loss, solo-equivalent training time (steps x the measured
  solo step time of its configuration), the cohort's wall time, tokens/s, and the efficiency
  score `(loss_ref - val_loss) / (time / time_ref)` with time_ref the fastest trial's time and
  loss_ref the sweep's `loss_ref` (default ln(vocab size));
- per-knob sensitivity tables (value, n, val loss mean +- std, val acc, val perplexity); in a
  one-factor-at-a-time sweep (sampler "oat") each knob's table holds only its own axis;
- multi-seed mean and standard deviation per configuration, and the pooled standard deviation
  of the repeats (descriptive only);
- against the pre-set baseline (every knob's `baseline` in the sweep's space; sweep.json
  `baseline`, or `baselines` for oat): per configuration, and per knob value where each value is
  one configuration, the difference to the baseline, its 95% interval, the test (paired over
  seeds when both ran the same seeds, else Welch), p Holm-adjusted over the table's comparisons
  and a verdict (better / worse / not resolved with n seeds), all from `jaxgpt.stats`. Without
  a baseline there are no verdicts: the report never compares with the best the data picked;
- a time-to-target table, and per knob value the runs that reached the target (k/n) and the
  censored median (time to target is censored: no mean, no test);
- plots: validation loss curves per trial, sensitivity curves, and a 2-D heatmap.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import optuna
from absl import app, flags

from jaxgpt import checks, cli
from jaxgpt import stats as stats_lib
from jaxgpt.errors import StatsError
from jaxgpt.sweep import study as study_lib

METRICS = ("final_val_loss", "val_acc", "val_ppl")


# ------------------------------------------------------------------------------------------
# Loading.

def _curve(workdir: str, run_dir: str | None, index: int | None) -> list[dict]:
  if run_dir is None or index is None:
    return []
  d = os.path.join(workdir, run_dir, f"trial_{index}")
  path = os.path.join(d, "summary.json")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      curve = json.load(f).get("curve")
    if curve:
      return [p for p in curve if p.get("val_loss") is not None]
  path = os.path.join(d, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r.get("val_loss") is not None]
  return []


def load_records(workdir: str, storage: str | None = None) -> tuple[list[dict], dict]:
  """One record per trial of the sweep's studies, and the sweep's metadata."""
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  meta_path = os.path.join(workdir, "sweep.json")
  meta = {}
  if os.path.exists(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      meta = json.load(f)
  url = study_lib.storage_url(workdir, storage or meta.get("storage"))
  db = study_lib.sqlite_path(url)
  if db and not os.path.exists(db):
    raise FileNotFoundError(f"no study database at {db} (run python -m jaxgpt.sweep first, or "
                            "pass --storage)")
  rdb = study_lib.open_storage(url)  # under the claim lock: a live worker may be creating tables
  names = [s.study_name for s in optuna.get_all_study_summaries(rdb)]
  studies = [n for n in meta.get("studies", names) if n in names]
  records = []
  for stage, name in enumerate(studies, 1):
    study = optuna.load_study(study_name=name, storage=rdb)
    for t in study.get_trials(deepcopy=False):
      ua = t.user_attrs
      run = ua.get("run", {})
      records.append({
          "name": f"s{stage}#{t.number}", "study": name, "state": t.state.name,
          "params": dict(t.params), "seed": ua.get("seed", 0), "value": t.value,
          "summary": ua.get("summary", {}), "knobs": run.get("knobs", {}),
          "vocab_size": run.get("vocab_size"), "error": ua.get("error"),
          "run_dir": run.get("run_dir"), "cohort_index": run.get("cohort_index"),
          "curve": _curve(workdir, run.get("run_dir"), run.get("cohort_index"))})
  return records, meta


# ------------------------------------------------------------------------------------------
# Statistics.

def _finite(v: Any) -> bool:
  return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def mean_std(xs: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (0 for a single value)."""
  a = np.asarray(xs, np.float64)
  return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def noise_floor(groups: Iterable[Sequence[float]]) -> tuple[float | None, int]:
  """Pooled within-configuration standard deviation of repeats, and its degrees of freedom: a
  description of the seed spread; verdicts come from `jaxgpt.stats`, never from it."""
  ss, dof = 0.0, 0
  for g in groups:
    g = np.asarray([x for x in g if _finite(x)], np.float64)
    if g.size > 1:
      ss += float(((g - g.mean()) ** 2).sum())
      dof += g.size - 1
  return (math.sqrt(ss / dof), dof) if dof else (None, 0)


def trial_time(summary: Mapping) -> float | None:
  """Solo-equivalent training time: steps x the configuration's measured solo step time."""
  steps, step_s = summary.get("steps"), summary.get("solo_step_time_s")
  if _finite(steps) and _finite(step_s):
    return float(steps) * float(step_s)
  return summary.get("cohort_train_time_s")


def efficiency(loss: float, time_s: float, loss_ref: float, time_ref: float) -> float:
  return (loss_ref - loss) / (time_s / time_ref)


def config_key(params: Mapping) -> str:
  return json.dumps(sorted(params.items()))


# ------------------------------------------------------------------------------------------
# Tables.

def _fmt(v: Any, digits: int = 4) -> str:
  if v is None:
    return "-"
  if isinstance(v, bool):
    return str(v)
  if isinstance(v, float):
    if not math.isfinite(v):
      return str(v)
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.{digits}g}"
  return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  for r in rows:
    lines.append("| " + " | ".join(c if isinstance(c, str) else _fmt(c) for c in r) + " |")
  return "\n".join(lines)


def _knobs(r: Mapping) -> str:
  return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r["params"].items())) + \
      f", seed={r['seed']}"


def completed(records: Sequence[Mapping]) -> list[Mapping]:
  return [r for r in records if r["state"] == "COMPLETE" and
          _finite(r["summary"].get("final_val_loss"))]


def top_table(records, k: int, loss_ref: float) -> str:
  done = completed(records)
  if not done:
    return "No completed trial with a finite validation loss yet."
  times = [trial_time(r["summary"]) for r in done]
  time_ref = min(t for t in times if _finite(t) and t > 0) if any(
      _finite(t) and t > 0 for t in times) else None
  rows = []
  for r, t in zip(done, times):
    s = r["summary"]
    eff = efficiency(s["final_val_loss"], t, loss_ref, time_ref) if time_ref and _finite(t) \
        and t > 0 else None
    rows.append((r, t, eff))
  rows.sort(key=lambda x: x[0]["summary"]["final_val_loss"])
  body = [(r["name"], _knobs(r), r["summary"]["final_val_loss"], r["summary"].get("val_bpb"),
           t, r["summary"].get("cohort_wall_time_s"), r["summary"].get("tokens_per_s"), eff)
          for r, t, eff in rows[:k]]
  return (f"Efficiency score = (loss_ref - val_loss) / (time / time_ref), loss_ref = "
          f"{loss_ref:.4f}, time_ref = {_fmt(time_ref)} s (the fastest trial). Time is the "
          "solo-equivalent training time (steps x the configuration's measured solo step "
          "time); the cohort's wall time is shown apart.\n\n" + _table(
              ("trial", "knobs", "val loss", "val bpb", "time (s)", "cohort wall (s)",
               "tokens/s", "efficiency"), body))


def _sort_values(values: Iterable[Any]) -> list:
  values = list(values)
  try:
    return sorted(values)
  except TypeError:
    return sorted(values, key=str)


def on_axis(params: Mapping, knob: str, baselines: Mapping | None) -> bool:
  """One factor at a time: a record belongs to `knob`'s axis when every other knob sits at its
  baseline. Without baselines (grid, random, TPE) every record does (a marginal)."""
  return baselines is None or all(params.get(k) == v for k, v in baselines.items() if k != knob)


def baseline_of(meta: Mapping) -> dict | None:
  """The sweep's pre-set baseline configuration: sweep.json `baseline` (every knob named a
  `baseline`, any sampler), else `baselines` (oat); None when not every knob named one."""
  base = meta.get("baseline") or meta.get("baselines")
  return dict(base) if base else None


def by_seed(records: Sequence[Mapping]) -> dict | list:
  """{seed: final val loss} (what a paired test needs), or a list when a seed repeats."""
  losses = {r["seed"]: r["summary"]["final_val_loss"] for r in records}
  if len(losses) == len(records):
    return losses
  return [r["summary"]["final_val_loss"] for r in records]


NO_BASELINE = ("No pre-set baseline: give every knob of the sweep's space a `baseline` (the oat "
               "sampler requires one) to compare each configuration with it. Nothing is compared "
               "with the best configuration: picking the best from the data, then testing "
               "against it, overstates every difference.")
COMPARE_HEADER = ("diff to baseline", "95% CI", "test", "p (Holm)", "verdict")


def judge(arms: Mapping[str, Any], base: Any, base_label: str
          ) -> tuple[dict[str, stats_lib.Judged] | None, str]:
  """Every arm against the baseline's {seed: loss} (None: the baseline was not run), Holm over
  the arms; (judgements, a note) or (None, why there are none)."""
  if base is None:
    return None, f"The baseline ({base_label}) has no completed trial, so no comparisons."
  try:
    judged = stats_lib.compare_all(arms, base, base_name=f"the baseline ({base_label})")
  except StatsError as e:
    return None, f"No comparisons: {e}."
  m = sum(j.comparison is not None for j in judged.values())
  return judged, (f"Against the baseline ({base_label}): diff = mean - the baseline's mean, its "
                  "95% interval (per comparison, not adjusted), a paired t-test over seeds where "
                  "both ran the same seeds, Welch's otherwise; p Holm-adjusted over this table's "
                  f"{m} comparison{'s' * (m != 1)}, and the verdict from it (so an interval "
                  "clear of 0 can still be not resolved). *Not resolved* is not *no effect*: "
                  "these seeds do not tell the difference from zero.")


def compare_cells(j: stats_lib.Judged | None) -> tuple[str, ...]:
  """The COMPARE_HEADER cells of one row."""
  if j is None:
    return ("-",) * 5
  c = j.comparison
  if c is None:
    return ("-", "-", "-", "-", j.verdict)
  return (f"{c.diff:+.4f}", f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]", c.test, _fmt(j.p_adjusted, 2),
          j.verdict)


def _label(params: Mapping) -> str:
  return ", ".join(f"{a}={_fmt(b)}" for a, b in sorted(params.items()))


def sensitivity(records, knob: str, baselines: Mapping | None = None,
                reference: Any = None) -> tuple[str, list]:
  """Per value of `knob`: n, val loss mean +- std, val acc, val ppl. With `baselines` (an oat
  sweep) only the knob's own axis counts. With `reference` (the knob's pre-set baseline value)
  and one configuration per value, each value against it (`judge`); a marginal over other knobs
  gets no verdicts."""
  by_value: dict[Any, list] = {}
  for r in completed(records):
    if knob in r["params"] and on_axis(r["params"], knob, baselines):
      by_value.setdefault(r["params"][knob], []).append(r)
  stats = []
  for v in _sort_values(by_value):
    ss = [r["summary"] for r in by_value[v]]
    loss = mean_std([s["final_val_loss"] for s in ss])
    acc = [s["val_acc"] for s in ss if _finite(s.get("val_acc"))]
    ppl = [s["val_ppl"] for s in ss if _finite(s.get("val_ppl"))]
    stats.append((v, len(ss), loss, mean_std(acc)[0] if acc else None,
                  mean_std(ppl)[0] if ppl else None))
  if not stats:
    return "", []
  single = all(len({config_key(r["params"]) for r in rs}) == 1 for rs in by_value.values())
  judged, note = None, "No pre-set baseline: no verdicts (see the seeds table)."
  if reference is not None and not single:
    note = (f"A marginal over the other knobs (several configurations per value of {knob}): no "
            "verdicts here; the seeds table compares each configuration with the baseline.")
  elif reference is not None:
    base = by_value.get(reference)
    arms = {v: by_seed(rs) for v, rs in by_value.items() if v != reference}
    judged, note = judge({_fmt(v): a for v, a in arms.items()},
                         None if base is None else by_seed(base), f"{knob}={_fmt(reference)}")
  rows = []
  for v, n, (m, sd), acc, ppl in stats:
    if judged is not None and v == reference:
      cells = ("-", "-", "-", "-", "baseline")
    else:
      cells = compare_cells(None if judged is None else judged[_fmt(v)])
    rows.append((_fmt(v), n, f"{m:.4f} ± {sd:.4f}", acc, ppl) + cells)
  return note + "\n\n" + _table((knob, "n", "val loss", "val acc", "val ppl") + COMPARE_HEADER,
                                rows), stats


def seed_groups(records) -> list[tuple[dict, list[Mapping]]]:
  groups: dict[str, tuple[dict, list]] = {}
  for r in completed(records):
    groups.setdefault(r["study"] + config_key(r["params"]), (r["params"], []))[1].append(r)
  return list(groups.values())


def multi_seed_table(records, k: int, baseline: Mapping | None = None
                     ) -> tuple[str, float | None]:
  """Mean and std over seeds per configuration (the k lowest means, and the baseline), each
  against the pre-set `baseline` configuration (`judge`, Holm over every configuration's
  comparison, shown or not); the pooled standard deviation of the repeats, descriptive."""
  groups = seed_groups(records)
  sigma, dof = noise_floor([[r["summary"]["final_val_loss"] for r in g] for _, g in groups])
  if not groups:
    return "No completed trial yet.", sigma
  stats = []
  for params, g in groups:
    m, sd = mean_std([r["summary"]["final_val_loss"] for r in g])
    stats.append((params, g, m, sd))
  stats.sort(key=lambda x: x[2])
  base_i = None if baseline is None else next(
      (i for i, (params, *_) in enumerate(stats) if dict(params) == dict(baseline)), None)
  judged, note = None, NO_BASELINE
  if baseline is not None:
    arms = {str(i): by_seed(g) for i, (_, g, _, _) in enumerate(stats) if i != base_i}
    judged, note = judge(arms, None if base_i is None else by_seed(stats[base_i][1]),
                         _label(baseline))
  shown = list(range(min(k, len(stats))))
  if base_i is not None and base_i not in shown:
    shown.append(base_i)
  rows = []
  for i in shown:
    params, g, m, sd = stats[i]
    if judged is None:
      cells = compare_cells(None)
    elif i == base_i:
      cells = ("-", "-", "-", "-", "baseline")
    else:
      cells = compare_cells(judged[str(i)])
    rows.append((_label(params), len(g), f"{m:.4f}", f"{sd:.4f}") + cells)
  if sigma is None:
    spread = ("Seed spread: unknown (no configuration was repeated with another seed; add "
              "seeds to the sweep to tell a difference from seed noise).")
  else:
    spread = (f"Seed spread: pooled standard deviation of the repeats sigma = {sigma:.4f} "
              f"({dof} degrees of freedom), descriptive only: no verdict comes from it.")
  shown_note = (f" {len(stats)} configurations; the {len(shown)} shown are the lowest means and "
                "the baseline." if len(shown) < len(stats) else "")
  return spread + "\n\n" + note + shown_note + "\n\n" + _table(
      ("configuration", "seeds", "mean val loss", "std") + COMPARE_HEADER, rows), sigma


def time_to_target_table(records, knobs: Sequence[str], target: float | None) -> str:
  done = [r for r in records if r["state"] in ("COMPLETE", "PRUNED") and r["summary"]]
  reached = [r for r in done if r["summary"].get("reached_target")]
  if target is None and not reached:
    return "No target loss was set (`train.target_loss`), so no time to target."
  reached.sort(key=lambda r: r["summary"].get("time_to_target_s") or math.inf)
  rows = [(r["name"], _knobs(r), r["summary"].get("step_to_target"),
           r["summary"].get("solo_step_time_s"), r["summary"].get("time_to_target_s"))
          for r in reached]
  out = (f"Target loss: {_fmt(target)}. {len(reached)} of {len(done)} finished trials reached "
         "it. Time to target = steps to target x the configuration's measured solo step "
         "time.\n\n")
  out += _table(("trial", "knobs", "step to target", "solo step (s)", "time to target (s)"),
                rows) if rows else "No trial reached the target."
  group_rows = []
  for knob in knobs:
    by_value: dict[Any, list] = {}
    for r in done:
      if knob in r["params"]:
        by_value.setdefault(r["params"][knob], []).append(r)
    for v in _sort_values(by_value):
      rs = by_value[v]
      ttt = [r["summary"]["time_to_target_s"] for r in rs if r["summary"].get("reached_target")
             and _finite(r["summary"].get("time_to_target_s"))]
      median = stats_lib.censored_median(ttt, len(rs))
      group_rows.append((knob, _fmt(v), f"{len(ttt)}/{len(rs)}",
                         median if math.isfinite(median) else "not reached by half",
                         min(ttt) if ttt else None))
  if group_rows:
    out += ("\n\nBy knob value. Time to target is censored (a run that did not reach the target "
            "has no time): the runs that reached it (k/n) and the median over all n with the "
            "others counted as never; no mean and no test.\n\n") + _table(
        ("knob", "value", "reached", "median time to target (s)", "best (s)"), group_rows)
  return out


# ------------------------------------------------------------------------------------------
# Plots.

def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_curves(records, path: str, highlight: set) -> bool:
  rs = [r for r in records if r["curve"]]
  if not rs:
    return False
  plt = _plt()
  fig, ax = plt.subplots(figsize=(8, 5))
  for r in rs:
    steps = [p["step"] for p in r["curve"]]
    vals = [p["val_loss"] for p in r["curve"]]
    top = r["name"] in highlight
    ax.plot(steps, vals, lw=1.6 if top else 0.7, alpha=1.0 if top else 0.4,
            label=f"{r['name']} {_knobs(r)}" if top else None)
  ax.set_xlabel("step")
  ax.set_ylabel("validation loss")
  ax.set_title("validation loss per trial (best highlighted)")
  if highlight:
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def _numeric(values) -> bool:
  return all(map(checks.is_number, values))


def plot_sensitivity(all_stats: Mapping[str, list], path: str) -> bool:
  items = [(k, s) for k, s in all_stats.items() if s]
  if not items:
    return False
  plt = _plt()
  fig, axes = plt.subplots(1, len(items), figsize=(4 * len(items), 3.6), squeeze=False)
  for ax, (knob, stats) in zip(axes[0], items):
    vals = [s[0] for s in stats]
    means = [s[2][0] for s in stats]
    stds = [s[2][1] for s in stats]
    xs = vals if _numeric(vals) else list(range(len(vals)))
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3)
    if _numeric(vals) and min(vals) > 0 and max(vals) / min(vals) >= 10:
      ax.set_xscale("log")
    if not _numeric(vals):
      ax.set_xticks(xs, [str(v) for v in vals])
    ax.set_xlabel(knob)
    ax.set_ylabel("val loss (mean ± std)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def plot_heatmap(records, x: str, y: str, path: str) -> bool:
  cells: dict[tuple, list] = {}
  for r in completed(records):
    if x in r["params"] and y in r["params"]:
      cells.setdefault((r["params"][x], r["params"][y]), []).append(
          r["summary"]["final_val_loss"])
  if not cells:
    return False
  xs = _sort_values({k[0] for k in cells})
  ys = _sort_values({k[1] for k in cells})
  grid = np.full((len(ys), len(xs)), np.nan)
  for (a, b), v in cells.items():
    grid[ys.index(b), xs.index(a)] = float(np.mean(v))
  plt = _plt()
  fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.5, 0.9 * len(ys) + 2))
  im = ax.imshow(grid, cmap="viridis_r", origin="lower", aspect="auto")
  ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs])
  ax.set_yticks(range(len(ys)), [_fmt(v) for v in ys])
  for i in range(len(ys)):
    for j in range(len(xs)):
      if np.isfinite(grid[i, j]):
        ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
  ax.set_xlabel(x)
  ax.set_ylabel(y)
  ax.set_title("mean val loss over seeds")
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


# ------------------------------------------------------------------------------------------
# The report.

def _slug(s: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in s)


def write_report(records: Sequence[Mapping], meta: Mapping, outdir: str) -> str:
  """Writes outdir/report.md and its PNG files; returns the markdown's path."""
  os.makedirs(outdir, exist_ok=True)
  knobs = list(meta.get("knobs") or sorted({k for r in records for k in r["params"]}))
  top_k = int(meta.get("report", {}).get("top_k") or 10)
  loss_ref = meta.get("loss_ref")
  if loss_ref is None:
    vocab = next((r["vocab_size"] for r in records if r.get("vocab_size")), None)
    loss_ref = math.log(vocab) if vocab else 6.0
  counts: dict[str, dict[str, int]] = {}
  for r in records:
    c = counts.setdefault(r["study"], {})
    c[r["state"]] = c.get(r["state"], 0) + 1
  diverged = [r for r in records if r["summary"].get("stop_reason") == "diverged"]
  md = [f"# Sweep report: {meta.get('name', '')}", ""]
  md.append(f"Objective: `{meta.get('objective', 'final_val_loss')}` (minimised); sampler "
            f"`{meta.get('sampler', '?')}`; seeds {meta.get('seeds', '?')}; cohort size "
            f"{meta.get('cohort_size', '?')}; base `{meta.get('base', {}).get('config', '?')}`.")
  md += ["", _table(("study", "complete", "running", "waiting", "pruned", "failed"),
                    [(s, c.get("COMPLETE", 0), c.get("RUNNING", 0), c.get("WAITING", 0),
                      c.get("PRUNED", 0), c.get("FAIL", 0)) for s, c in counts.items()])]
  if diverged:
    md += ["", f"Diverged (NaN/inf, masked in their cohort): "
               f"{', '.join(r['name'] for r in diverged)}."]
  md += ["", f"## Top {top_k}", "", top_table(records, top_k, loss_ref)]
  baseline = baseline_of(meta)
  ms_text, _ = multi_seed_table(records, max(top_k, 20), baseline)
  md += ["", "## Seeds: mean, standard deviation, and each configuration against the baseline",
         "", ms_text]
  md += ["", "## Sensitivity per knob", ""]
  all_stats = {}
  baselines = meta.get("baselines")
  if baselines:
    md += ["One factor at a time: each knob's table holds the runs with every other knob at "
           "its baseline (" + ", ".join(f"{k}={_fmt(v)}" for k, v in baselines.items()) + ").",
           ""]
  for knob in knobs:
    table, stats = sensitivity(records, knob, baselines,
                               None if baseline is None else baseline.get(knob))
    if table:
      all_stats[knob] = stats
      key = meta.get("knobs", {}).get(knob, "")
      md += [f"### {knob}" + (f" (`{key}`)" if key else ""), "", table, ""]
  md += ["## Time to target", "", time_to_target_table(records, knobs, meta.get("target_loss"))]
  failed = [r for r in records if r["state"] == "FAIL" and r.get("error")]
  if failed:
    md += ["", "## Failed trials", ""] + [f"- {r['name']}: {r['error'][:300]}" for r in failed]
  md += ["", "## Plots", ""]
  best = sorted(completed(records), key=lambda r: r["summary"]["final_val_loss"])[:5]
  if plot_curves(records, os.path.join(outdir, "loss_curves.png"), {r["name"] for r in best}):
    md.append("![validation loss curves](loss_curves.png)")
  if plot_sensitivity(all_stats, os.path.join(outdir, "sensitivity.png")):
    md.append("![sensitivity](sensitivity.png)")
  rep = meta.get("report", {})
  hx, hy = rep.get("heatmap_x"), rep.get("heatmap_y")
  if (hx is None or hy is None) and len(knobs) == 2:
    hx, hy = knobs
  if hx and hy and plot_heatmap(records, hx, hy, os.path.join(outdir, "heatmap.png")):
    md.append(f"![{hx} x {hy} heatmap](heatmap.png)")
  path = os.path.join(outdir, "report.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(md) + "\n")
  return path


def generate(workdir: str, storage: str | None = None) -> str:
  """Reads the sweep in `workdir` (or `storage`) and writes its report; returns report.md's
  path. FileNotFoundError when there is no study database."""
  records, meta = load_records(workdir, storage)
  return write_report(records, meta, os.path.join(workdir, "report"))


def main(argv: Sequence[str]) -> int:
  if len(argv) != 2:
    raise app.UsageError("give one sweep directory: python -m jaxgpt.report DIR [--storage URL]")
  try:
    path = generate(argv[1], flags.FLAGS.storage)
  except (FileNotFoundError, StatsError) as e:
    cli.fail(str(e))
  print(path)
  return 0


if __name__ == "__main__":
  # Defined only when run: importing this module (tests, notebooks) defines no flags, so it
  # never collides with jaxgpt.sweep's --storage.
  flags.DEFINE_string("storage", None, "Optuna storage URL (default: the one in DIR/sweep.json, "
                      "else DIR/study.db).")
  cli.run(main)
