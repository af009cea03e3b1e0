"""Sweep reports: `python -m jaxgpt.report DIR [--storage URL] [--json FILE]` -> DIR/report/.

  python -m jaxgpt.report sweeps/grid2d
  python -m jaxgpt.report sweeps/grid2d --storage postgresql://user@host/db --json grid2d.json
  python -m jaxgpt.report --from_json sweeps/grid2d/report/trials.json --markdown out/report.md

Reads the sweep's studies (DIR/study.db by default; `DIR/sweep.json`, written by the workers,
names the studies, knobs and references) and each trial's run files, then writes
DIR/report/trials.json (`{"format": "jaxgpt.report/1", "meta": sweep.json, "trials": one record
per trial, curves included}`, strict JSON: NaN null, +-inf +-1e308; also to FILE with --json)
and, from what that JSON holds, DIR/report/report.md and its PNG files. `--from_json FILE`
rebuilds the same markdown from the JSON alone (no study, no run directories) at `--markdown`
(default report.md beside FILE), PNG files beside it. Errors are one `error:` line, exit 2.

The markdown holds:
- a top-k table: trial, knobs, val loss, the trial's time on its clock
  (`objectives.trial_time`: steps x its step time), the cohort's wall time, tokens/s, and the
  efficiency score `(loss_ref - val_loss) / (time / time_ref)` (`objectives.efficiency`) with
  time_ref sweep.json's `time_ref`, else the fastest trial's time (a groups sweep, or
  `time_ref` null: the baseline configuration's mean time), loss_ref the sweep's `loss_ref`
  (default ln(vocab size));
- a groups sweep (sampler "groups": named groups of variations of one baseline, sweep.json
  `groups`) instead gets the top-k configurations over seeds ranked by the sweep's objective
  (label, group(s), every knob, loss mean +- std, time, tokens/s, efficiency, reached target
  k/n, censored median time to target, capped k/n), each configuration's group(s) and
  label(s) (a point shared by groups, as the baseline, is one configuration), and per group a
  table of its points against the baseline (Holm over the group's comparisons, a verdict only
  with 3 seeds per arm, "one seed: no verdicts" when every arm ran one) and a plot of
  validation loss against time on the clock (`loss_vs_time_<group>.png`, the baseline black);
- how time was measured (sweep.json `clock`: calibrated repeats per structure and their
  spread, or the step time measured at compile) with time_ref and loss_ref and where each comes
  from; warnings (sweep.json `warnings`, and the trials the time cap stopped);
- per-knob sensitivity tables (value, n, val loss mean +- std, val acc, val perplexity); in a
  one-factor-at-a-time sweep (sampler "oat") each knob's table holds only its own axis;
- multi-seed mean and standard deviation per configuration, and the pooled standard deviation
  of the repeats (descriptive only);
- against the pre-set baseline (every knob's `baseline` in the sweep's space; sweep.json
  `baseline`, or `baselines` for oat): per configuration, and per knob value where each value is
  one configuration, the difference to the baseline, its 95% interval, the test (paired over
  the seeds both ran when one arm's seeds hold the other's, else Welch), p Holm-adjusted over
  the table's comparisons and a verdict (better / worse / not resolved with n seeds), all from
  `jaxgpt.stats`. Without a baseline there are no verdicts: the report never compares with the
  best the data picked;
- a time-to-target table, and per knob value the runs that reached the target (k/n) and the
  censored median (time to target is censored: no mean, no test);
- plots: validation loss curves per trial, sensitivity curves, and a 2-D heatmap.
Sweep dirs without the groups sweep's sweep.json keys report as before.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import optuna
from absl import app, flags

from jaxgpt import checks, cli, files
from jaxgpt import stats as stats_lib
from jaxgpt.errors import StatsError
from jaxgpt.sweep import objectives
from jaxgpt.sweep import study as study_lib

METRICS = ("final_val_loss", "val_acc", "val_ppl")
# What the statistics compare: the sweep's objective where it is a per-trial value other than the
# final val loss (val_bpb compares runs whose tokens stand for different bytes, e.g. with and
# without a boundary token), else the final val loss.
COMPARED = {"final_val_loss": "val loss", "best_val_loss": "best val loss", "val_bpb": "val bpb",
            "val_bpb_roundtrip": "round-trip bpb"}


def compared_metric(meta: Mapping) -> str:
  """The summary key the report's comparisons and seed statistics use (`COMPARED`)."""
  objective = meta.get("objective") or "final_val_loss"
  return objective if objective in COMPARED else "final_val_loss"


FORMAT = "jaxgpt.report/1"  # the `format` field of trials.json
MIN_VERDICT_SEEDS = 3  # a group table states a verdict only with this many seeds per arm
# A trial's time and the efficiency score come from the sweep's objectives (the one definition
# the sweep minimises); kept importable here under their old names.
trial_time = objectives.trial_time
efficiency = objectives.efficiency


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


class TrialsFileError(ValueError):
  """A trials.json that cannot be read back: not JSON, or not this report's format."""


def to_json(obj: Any) -> Any:
  """`obj` as strict JSON holds it: tuples become lists, keys strings, numpy scalars Python
  numbers, NaN None and +-inf +-1e308 (`files.finite_or_none`)."""
  if isinstance(obj, Mapping):
    return {str(k): to_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple, np.ndarray)):
    return [to_json(v) for v in obj]
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, np.integer):
    return int(obj)
  return files.finite_or_none(obj)


def from_json(obj: Any) -> Any:
  """The inverse of `to_json` where one exists: +-1e308 (what an infinity became) is +-inf
  again. NaN stays None, which every table treats as a missing value, as it treats NaN."""
  if isinstance(obj, dict):
    return {k: from_json(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [from_json(v) for v in obj]
  if isinstance(obj, float) and abs(obj) >= 1e308:
    return math.copysign(math.inf, obj)
  return obj


def trials_document(records: Sequence[Mapping], meta: Mapping) -> dict:
  """What trials.json holds: {"format": FORMAT, "meta": meta, "trials": records}, curves
  included, as strict JSON; enough to rebuild the whole report (`from_document`)."""
  return to_json({"format": FORMAT, "meta": meta, "trials": list(records)})


def from_document(doc: Any, where: str = "the document") -> tuple[list[dict], dict]:
  """(records, meta) of a trials.json document, with key order and values exactly as a
  round trip through the file gives them; TrialsFileError when it is not one."""
  if not isinstance(doc, dict) or doc.get("format") != FORMAT:
    got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
    raise TrialsFileError(f"{where} is not a sweep report's trials JSON (format {got!r}, "
                          f"expected {FORMAT!r})")
  if not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("trials"), list):
    raise TrialsFileError(f"{where} needs a `meta` object and a `trials` list")
  doc = from_json(json.loads(json.dumps(doc, sort_keys=True)))
  return doc["trials"], doc["meta"]


def read_trials_json(path: str) -> tuple[list[dict], dict]:
  """(records, meta) from a trials.json; FileNotFoundError or TrialsFileError."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no trials JSON at {path}")
  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise TrialsFileError(f"{path} is not JSON: {e}") from None
  return from_document(doc, path)


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


def fastest_time(records) -> float | None:
  """The shortest positive trial time among the completed trials (None without one)."""
  times = [trial_time(r["summary"]) for r in completed(records)]
  times = [t for t in times if _finite(t) and t > 0]
  return min(times) if times else None


def top_table(records, k: int, loss_ref: float, time_ref: float | None = None,
              time_source: str = "the fastest trial") -> str:
  """The k trials of lowest final val loss, each with its time and efficiency score (time_ref
  defaults to the fastest trial's time)."""
  done = completed(records)
  if not done:
    return "No completed trial with a finite validation loss yet."
  if time_ref is None:
    time_ref = fastest_time(done)
  rows = []
  for r in sorted(done, key=lambda r: r["summary"]["final_val_loss"])[:k]:
    s = r["summary"]
    eff = objectives.trial_efficiency(s, loss_ref, time_ref) if time_ref else None
    rows.append((r["name"], _knobs(r), s["final_val_loss"], s.get("val_bpb"), trial_time(s),
                 s.get("cohort_wall_time_s"), s.get("tokens_per_s"), eff))
  return (f"Efficiency score = (loss_ref - val_loss) / (time / time_ref), loss_ref = "
          f"{loss_ref:.4f}, time_ref = {_fmt(time_ref)} s ({time_source}). Time is the "
          "solo-equivalent training time (steps x the configuration's measured solo step "
          "time); the cohort's wall time is shown apart.\n\n" + _table(
              ("trial", "knobs", "val loss", "val bpb", "time (s)", "cohort wall (s)",
               "tokens/s", "efficiency"), rows))


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


def by_seed(records: Sequence[Mapping], metric: str = "final_val_loss") -> dict | list:
  """{seed: metric} (what a paired test needs), or a list when a seed repeats."""
  losses = {r["seed"]: r["summary"][metric] for r in records}
  if len(losses) == len(records):
    return losses
  return [r["summary"][metric] for r in records]


def with_metric(records: Sequence[Mapping], metric: str) -> list[Mapping]:
  """The records with a finite `metric` (all completed ones for the final val loss)."""
  return [r for r in records if _finite(r["summary"].get(metric))]


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
  return judged, (f"Against the baseline ({base_label}): diff = mean - the baseline's mean over "
                  "the seeds the test used, its 95% interval (per comparison, not adjusted), a "
                  "paired t-test over the seeds both ran (where one's seeds hold the other's), "
                  "Welch's otherwise; p Holm-adjusted over this table's "
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
                reference: Any = None, metric: str = "final_val_loss") -> tuple[str, list]:
  """Per value of `knob`: n, val loss mean +- std, val acc, val ppl. With `baselines` (an oat
  sweep) only the knob's own axis counts. With `reference` (the knob's pre-set baseline value)
  and one configuration per value, each value against it (`judge`); a marginal over other knobs
  gets no verdicts."""
  by_value: dict[Any, list] = {}
  for r in with_metric(completed(records), metric):
    if knob in r["params"] and on_axis(r["params"], knob, baselines):
      by_value.setdefault(r["params"][knob], []).append(r)
  stats = []
  for v in _sort_values(by_value):
    ss = [r["summary"] for r in by_value[v]]
    loss = mean_std([s[metric] for s in ss])
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
    arms = {v: by_seed(rs, metric) for v, rs in by_value.items() if v != reference}
    judged, note = judge({_fmt(v): a for v, a in arms.items()},
                         None if base is None else by_seed(base, metric),
                         f"{knob}={_fmt(reference)}")
  rows = []
  for v, n, (m, sd), acc, ppl in stats:
    if judged is not None and v == reference:
      cells = ("-", "-", "-", "-", "baseline")
    else:
      cells = compare_cells(None if judged is None else judged[_fmt(v)])
    rows.append((_fmt(v), n, f"{m:.4f} ± {sd:.4f}", acc, ppl) + cells)
  return note + "\n\n" + _table((knob, "n", COMPARED[metric], "val acc", "val ppl")
                                + COMPARE_HEADER, rows), stats


def seed_groups(records, metric: str = "final_val_loss") -> list[tuple[dict, list[Mapping]]]:
  groups: dict[str, tuple[dict, list]] = {}
  for r in with_metric(completed(records), metric):
    groups.setdefault(r["study"] + config_key(r["params"]), (r["params"], []))[1].append(r)
  return list(groups.values())


def multi_seed_table(records, k: int, baseline: Mapping | None = None,
                     metric: str = "final_val_loss") -> tuple[str, float | None]:
  """Mean and std over seeds per configuration (the k lowest means, and the baseline), each
  against the pre-set `baseline` configuration (`judge`, Holm over every configuration's
  comparison, shown or not); the pooled standard deviation of the repeats, descriptive."""
  groups = seed_groups(records, metric)
  sigma, dof = noise_floor([[r["summary"][metric] for r in g] for _, g in groups])
  if not groups:
    return "No completed trial yet.", sigma
  stats = []
  for params, g in groups:
    m, sd = mean_std([r["summary"][metric] for r in g])
    stats.append((params, g, m, sd))
  stats.sort(key=lambda x: x[2])
  base_i = None if baseline is None else next(
      (i for i, (params, *_) in enumerate(stats) if dict(params) == dict(baseline)), None)
  judged, note = None, NO_BASELINE
  if baseline is not None:
    arms = {str(i): by_seed(g, metric) for i, (_, g, _, _) in enumerate(stats) if i != base_i}
    judged, note = judge(arms, None if base_i is None else by_seed(stats[base_i][1], metric),
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
      ("configuration", "seeds", f"mean {COMPARED[metric]}", "std") + COMPARE_HEADER, rows), sigma


def time_to_target_table(records, knobs: Sequence[str], target: float | None) -> str:
  done = [r for r in records if r["state"] in ("COMPLETE", "PRUNED") and r["summary"]]
  reached = [r for r in done if r["summary"].get("reached_target")]
  if target is None and not reached:
    return "No target loss was set (`train.target_loss`), so no time to target."
  reached.sort(key=lambda r: r["summary"].get("time_to_target_s") or math.inf)
  rows = [(r["name"], _knobs(r), r["summary"].get("step_to_target"), step_time(r["summary"]),
           r["summary"].get("time_to_target_s")) for r in reached]
  out = (f"Target loss: {_fmt(target)}. {len(reached)} of {len(done)} finished trials reached "
         "it. Time to target = steps to target x the trial's step time on its clock.\n\n")
  out += _table(("trial", "knobs", "step to target", "step time (s)", "time to target (s)"),
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
# Configurations over seeds, groups of variations (sampler "groups"), references and the clock.

FINISHED = ("COMPLETE", "PRUNED")


def finished(records: Sequence[Mapping]) -> list[Mapping]:
  """Trials that ran to an end (completed, capped or pruned) and left a summary: the n of
  reached k/n and capped k/n."""
  return [r for r in records if r["state"] in FINISHED and r["summary"]]


def _same(a: Any, b: Any) -> bool:
  if checks.is_number(a) and checks.is_number(b) and not isinstance(a, bool) \
      and not isinstance(b, bool):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
  return a == b


def matches(params: Mapping, point: Mapping) -> bool:
  """A trial's params are the point's: every knob the point names has the point's value."""
  return all(k in params and _same(params[k], v) for k, v in point.items())


def _mean(xs: Iterable[Any]) -> float | None:
  xs = [float(x) for x in xs if _finite(x)]
  return float(np.mean(xs)) if xs else None


class ConfigStats(NamedTuple):
  """One configuration over its seeds."""
  params: dict
  runs: list  # completed trials (a finite final val loss): the loss, time and efficiency
  ended: list  # finished trials: the n of reached k/n and capped k/n
  loss: tuple[float, float] | None  # mean, sample std of the final val loss
  time_s: float | None  # mean trial time (objectives.trial_time)
  tokens_per_s: float | None
  efficiency: float | None  # mean over seeds of objectives.trial_efficiency
  reached: int
  median_ttt: float  # censored median time to target; inf when fewer than half reached
  capped: int  # stopped by the time cap (stop_reason "time_cap")
  compared: tuple[float, float] | None = None  # mean, std of the compared metric (val bpb ...)
  compared_runs: list | None = None  # the runs with a finite compared metric


def config_stats(params: Mapping, records: Sequence[Mapping], loss_ref: float,
                 time_ref: float | None, metric: str = "final_val_loss") -> ConfigStats:
  """The statistics of one configuration's trials (`records`, every seed); `compared`: the
  mean and std of `metric` (`compared_metric`)."""
  runs, ended = completed(records), finished(records)
  with_m = with_metric(runs, metric)
  eff = [objectives.trial_efficiency(r["summary"], loss_ref, time_ref) for r in runs] \
      if time_ref else []
  ttt = [r["summary"]["time_to_target_s"] for r in ended if r["summary"].get("reached_target")
         and _finite(r["summary"].get("time_to_target_s"))]
  return ConfigStats(
      dict(params), runs, ended,
      mean_std([r["summary"]["final_val_loss"] for r in runs]) if runs else None,
      _mean(trial_time(r["summary"]) for r in runs),
      _mean(r["summary"].get("tokens_per_s") for r in runs), _mean(eff), len(ttt),
      stats_lib.censored_median(ttt, len(ended)) if ended else math.inf,
      sum(r["summary"].get("stop_reason") == "time_cap" for r in ended),
      mean_std([r["summary"][metric] for r in with_m]) if with_m else None, with_m)


def configurations(records: Sequence[Mapping]) -> list[tuple[dict, list[Mapping]]]:
  """(params, trials) per configuration of the finished trials, over studies and seeds, in
  order of first appearance."""
  out: dict[str, tuple[dict, list]] = {}
  for r in finished(records):
    out.setdefault(config_key(r["params"]), (r["params"], []))[1].append(r)
  return list(out.values())


def group_points(meta: Mapping) -> dict[str, list[tuple[str, dict]]]:
  """{group: [(label, params), ...]} of sweep.json `groups` (sampler "groups"), in order."""
  return {g: [(str(p["label"]), dict(p["params"])) for p in points]
          for g, points in (meta.get("groups") or {}).items()}


def memberships(params: Mapping, groups: Mapping[str, list]) -> list[tuple[str, str]]:
  """(group, label) of every group point a configuration is (the shared baseline is in
  several)."""
  return [(g, label) for g, points in groups.items() for label, p in points
          if matches(params, p)]


def _unique(xs: Iterable[str]) -> list[str]:
  return list(dict.fromkeys(xs))


def labels_of(params: Mapping, groups: Mapping[str, list]) -> tuple[str, str]:
  """("label / label", "group, group") of a configuration; "-" outside every group."""
  m = memberships(params, groups)
  return (" / ".join(_unique(label for _, label in m)) or "-",
          ", ".join(_unique(g for g, _ in m)) or "-")


def differs(params: Mapping, baseline: Mapping | None) -> str:
  """The knobs whose value is not the baseline's ("(the baseline)" when none is)."""
  if baseline is None:
    return _label(params)
  diff = {k: v for k, v in params.items() if not _same(v, baseline.get(k))}
  return _label(diff) if diff else "(the baseline)"


def loss_reference(records: Sequence[Mapping], meta: Mapping) -> tuple[float, str]:
  """(loss_ref, where it comes from): sweep.json `loss_ref`, else ln(vocab size), else 6."""
  if _finite(meta.get("loss_ref")):
    return float(meta["loss_ref"]), "sweep.json `loss_ref`"
  vocab = next((r["vocab_size"] for r in records if r.get("vocab_size")), None)
  if vocab:
    return math.log(vocab), f"ln(vocab size {vocab}), the loss of a uniform prediction"
  return 6.0, "6.0, the default (no vocab size recorded)"


def time_reference(records: Sequence[Mapping], meta: Mapping) -> tuple[float | None, str]:
  """(time_ref, where it comes from). sweep.json `time_ref` when it is a number; when it is
  null (or the sweep is a groups sweep) the baseline configuration's mean trial time over its
  seeds; otherwise, or before the baseline has a timed trial, the fastest trial's time."""
  v = meta.get("time_ref")
  if _finite(v) and v > 0:
    return float(v), "sweep.json `time_ref`"
  base, why = baseline_of(meta), ""
  if "time_ref" in meta or meta.get("groups"):
    times = [] if base is None else [
        trial_time(r["summary"]) for r in completed(records) if matches(r["params"], base)]
    times = [t for t in times if _finite(t) and t > 0]
    if times:
      n = len(times)
      return (float(np.mean(times)), "the baseline configuration's mean trial time over its "
              f"{n} seed{'s' * (n != 1)}")
    why = "; the baseline has no timed trial yet" if base is not None else "; no baseline"
  t = fastest_time(records)
  return t, ("the fastest trial" + why) if t is not None else "no timed trial yet"


RANKING = {
    "final_val_loss": "mean final val loss over seeds, lowest first",
    "best_val_loss": "mean best val loss over seeds, lowest first",
    "val_bpb": "mean val bpb over seeds, lowest first",
    "val_bpb_roundtrip": "mean round-trip val bpb of the artifacts over seeds, lowest first",
    "efficiency": "mean efficiency over seeds, highest first",
    "time_to_target_s": ("the share of seeds that reached the target, highest first, then the "
                         "censored median time to target, lowest first"),
}


def rank_key(c: ConfigStats, objective: str) -> tuple:
  """Sort key of a configuration under the sweep's objective (best first; ties by the mean
  val loss). Unscored configurations go last."""
  loss = c.loss[0] if c.loss else math.inf
  if objective == "efficiency":
    return (-c.efficiency if c.efficiency is not None else math.inf, loss)
  if objective == "time_to_target_s":
    n = len(c.ended)
    return (-(c.reached / n) if n else 0.0, c.median_ttt, loss)
  v = _mean(r["summary"].get(objective) for r in c.runs)
  return (v if v is not None else math.inf, loss)


def _loss_cell(c: ConfigStats) -> str:
  return f"{c.loss[0]:.4f} ± {c.loss[1]:.4f}" if c.loss else "-"


def _ttt_cell(c: ConfigStats) -> Any:
  return c.median_ttt if math.isfinite(c.median_ttt) else "-"


def top_configurations(records: Sequence[Mapping], meta: Mapping, k: int, loss_ref: float,
                       time_ref: float | None, time_source: str) -> str:
  """The k best configurations (aggregated over seeds) under the sweep's objective, with
  their group(s), every knob, loss, time, tokens/s, efficiency, target and time cap."""
  objective = meta.get("objective") or "final_val_loss"
  groups, knobs = group_points(meta), _knob_names(records, meta)
  stats = [config_stats(p, rs, loss_ref, time_ref) for p, rs in configurations(records)]
  if not stats:
    return "No finished trial yet."
  stats.sort(key=lambda c: rank_key(c, objective))
  extra = objective in ("best_val_loss", "val_bpb", "val_bpb_roundtrip")
  rows = []
  for c in stats[:k]:
    label, gs = labels_of(c.params, groups)
    row = [label, gs] + [_fmt(c.params.get(knob)) for knob in knobs]
    row += [len(c.runs), _loss_cell(c)]
    if extra:
      row.append(_mean(r["summary"].get(objective) for r in c.runs))
    row += [c.time_s, c.tokens_per_s, c.efficiency, f"{c.reached}/{len(c.ended)}",
            _ttt_cell(c), f"{c.capped}/{len(c.ended)}"]
    rows.append(row)
  header = ["label", "group(s)"] + knobs + ["seeds", "val loss"] + \
      ([objective] if extra else []) + [
      "time (s)", "tokens/s", "efficiency", "reached target", "median time to target (s)",
      "capped"]
  how = RANKING.get(objective, f"mean {objective} over seeds, lowest first")
  return (f"{len(stats)} configurations, ranked by the sweep's objective `{objective}` ({how}); "
          f"the best {min(k, len(stats))} shown. Means over each configuration's seeds: the "
          "time is each trial's time on its clock (steps x its step time), efficiency = "
          f"(loss_ref - val loss) / (time / time_ref) with loss_ref = {loss_ref:.4f} and "
          f"time_ref = {_fmt(time_ref)} s ({time_source}). Time to target is censored: reached "
          "k/n, and the median over all n with the others counted as never (\"-\" when fewer "
          "than half reached it). Capped: stopped by the time cap.\n\n" + _table(header, rows))


def _knob_names(records: Sequence[Mapping], meta: Mapping) -> list[str]:
  return list(meta.get("knobs") or sorted({k for r in records for k in r["params"]}))


def _cap_verdict(j: stats_lib.Judged) -> stats_lib.Judged:
  """No verdict below MIN_VERDICT_SEEDS seeds in an arm (docs/formulas.md): the test's numbers
  stay, as a description."""
  c = j.comparison
  if c is None or min(c.n_arm, c.n_base) >= MIN_VERDICT_SEEDS:
    return j
  return j._replace(verdict=f"no verdict: {stats_lib.seeds_phrase(c)} (a verdict needs "
                            f"{MIN_VERDICT_SEEDS})")


ONE_SEED = "one seed: no verdicts"
GROUP_HEADER = ("point", "differs from the baseline", "seeds", "val loss", "time (s)",
                "efficiency", "reached target", "t (dof)") + COMPARE_HEADER


def group_header(metric: str) -> tuple[str, ...]:
  """GROUP_HEADER with the compared metric's column."""
  return tuple(COMPARED[metric] if h == "val loss" else h for h in GROUP_HEADER)


def _t_cell(j: stats_lib.Judged | None) -> str:
  c = None if j is None else j.comparison
  return "-" if c is None else f"{c.t:+.3g} ({c.dof:.3g})"


def group_table(points: Sequence[tuple[str, dict]], records: Sequence[Mapping],
                baseline: Mapping | None, base_label: str, loss_ref: float,
                time_ref: float | None, metric: str = "final_val_loss") -> str:
  """One group: each point (label, the knobs it changes, seeds, loss, time, efficiency,
  reached) against the pre-set baseline (`judge`, Holm over this group's comparisons; a
  verdict only with MIN_VERDICT_SEEDS seeds per arm). The baseline is the first row when the
  group does not list it."""
  if baseline is not None and not any(matches(p, baseline) for _, p in points):
    points = [(base_label, dict(baseline))] + list(points)
  stats = [config_stats(p, [r for r in records if matches(r["params"], p)], loss_ref, time_ref,
                        metric) for _, p in points]
  is_base = [baseline is not None and matches(p, baseline) for _, p in points]
  base = next((c for c, b in zip(stats, is_base) if b), None)
  arms = {str(i): by_seed(c.compared_runs, metric) for i, c in enumerate(stats)
          if not is_base[i] and c.compared_runs}
  base_seeds = (by_seed(base.compared_runs, metric)
                if base is not None and base.compared_runs else None)
  one_seed = base_seeds is not None and len(base_seeds) <= 1 and all(
      len(a) <= 1 for a in arms.values())
  if baseline is None:
    judged, note = None, NO_BASELINE
  elif one_seed:
    judged, note = None, (f"{ONE_SEED[0].upper()}{ONE_SEED[1:]}: the baseline and every point "
                          "ran one seed so far; a comparison needs 2 seeds per arm, a verdict "
                          f"{MIN_VERDICT_SEEDS}.")
  else:
    judged, note = judge(arms, base_seeds, base_label)
    if judged is not None:
      judged = {i: _cap_verdict(j) for i, j in judged.items()}
      note += (f" A verdict needs {MIN_VERDICT_SEEDS} seeds in each arm; with 2 the numbers are "
               "a description.")
  rows = []
  for i, ((label, params), c) in enumerate(zip(points, stats)):
    if is_base[i]:
      cells = ("-",) * 5 + ("baseline",)
    elif not c.compared_runs:
      cells = ("-",) * 5 + ("no completed run",)
    elif judged is None:
      cells = ("-",) * 5 + (ONE_SEED if one_seed else "-",)
    else:
      cells = (_t_cell(judged[str(i)]),) + compare_cells(judged[str(i)])
    value = (f"{c.compared[0]:.4f} ± {c.compared[1]:.4f}" if c.compared else "-")
    rows.append((label, differs(params, baseline), len(c.compared_runs), value, c.time_s,
                 c.efficiency, f"{c.reached}/{len(c.ended)}") + cells)
  return note + "\n\n" + _table(group_header(metric), rows)


def baseline_label(baseline: Mapping | None, groups: Mapping[str, list]) -> str:
  """The baseline's label(s) in the groups, else its knobs."""
  if baseline is None:
    return "none"
  label, _ = labels_of(baseline, groups)
  return label if label != "-" else _label(baseline)


def membership_table(records: Sequence[Mapping], meta: Mapping) -> str:
  """Every configuration (each group point, then any trained configuration outside the
  groups): its label(s), group(s), the knobs it changes, and its trials."""
  groups, baseline = group_points(meta), baseline_of(meta)
  params = [p for points in groups.values() for _, p in points]
  params += [p for p, _ in configurations(records)]
  seen, rows = [], []
  for p in params:
    if any(matches(p, q) and matches(q, p) for q in seen):
      continue
    seen.append(p)
    rs = [r for r in records if matches(r["params"], p)]
    label, gs = labels_of(p, groups)
    rows.append((label, gs, differs(p, baseline), len(completed(rs)), len(finished(rs)),
                 len(rs)))
  return ("Each configuration's group(s) and label(s): a point shared by several groups (the "
          "baseline) is trained once per seed and counted in each.\n\n" + _table(
              ("label(s)", "group(s)", "differs from the baseline", "completed", "finished",
               "trials"), rows))


def clock_section(meta: Mapping, loss_ref: tuple[float, str],
                  time_ref: tuple[float | None, str]) -> str:
  """How a trial's time was measured (sweep.json `clock`), and the references of the
  efficiency score with where each comes from."""
  clock = meta.get("clock")
  if not clock:
    out = ("No clock record in sweep.json: a trial's time is its summary's `train_time_s` "
           "(steps x `step_time_s`), else steps x the solo step time measured at compile.")
  elif clock.get("kind") == "measured":
    out = ("Measured clock: times are the solo step time measured at compile (no repeats): a "
           "trial's time is steps x that step time.")
  else:
    out = (f"Calibrated clock: before the sweep, each structure (the static knobs that change "
           f"the program) ran {clock.get('repeats', '?')} timed repeats of "
           f"{clock.get('steps', '?')} steps alone on the device; its step time is the median, "
           "and a trial's time is steps x that step time (its solo-equivalent time).")
  structures = (clock or {}).get("structures") or []
  if structures:
    rows = [(s.get("label", "?"), s.get("step_time_s"),
             ", ".join(_fmt(t) for t in s.get("times_s") or ()) or "-",
             f"{100 * s['spread']:.1f}%" if _finite(s.get("spread")) else "-",
             "during the sweep" if s.get("during_sweep") else "before the sweep")
            for s in structures]
    out += "\n\n" + _table(("structure", "median s/step", "each repeat (s/step)", "spread",
                            "calibrated"), rows)
    late = sum(bool(s.get("during_sweep")) for s in structures)
    if late:
      out += (f"\n\n{late} structure{'s were' if late != 1 else ' was'} calibrated during the "
              "sweep (not in the calibration pass before it).")
  out += (f"\n\nSpread = (max - min) / median of the repeats. time_ref = {_fmt(time_ref[0])} s "
          f"({time_ref[1]}); loss_ref = {loss_ref[0]:.4f} ({loss_ref[1]}).")
  if meta.get("target_loss") is not None or meta.get("max_time_s") is not None:
    out += (f" Target loss: {_fmt(meta.get('target_loss'))}; time cap per trial: "
            f"{_fmt(meta.get('max_time_s'))} s.")
  return out


def capped_trials(records: Sequence[Mapping]) -> list[Mapping]:
  return [r for r in finished(records) if r["summary"].get("stop_reason") == "time_cap"]


def warnings_section(records: Sequence[Mapping], meta: Mapping) -> str | None:
  """sweep.json `warnings`, and the trials stopped by the time cap; None when neither."""
  lines = [f"- {w}" for w in meta.get("warnings") or ()]
  groups = group_points(meta)
  for r in capped_trials(records):
    label, _ = labels_of(r["params"], groups)
    s = r["summary"]
    lines.append(f"- capped: {r['name']} ({label if label != '-' else _label(r['params'])}, "
                 f"seed {r['seed']}) stopped by the time cap "
                 f"(max_time_s = {_fmt(meta.get('max_time_s'))} s) at step {_fmt(s.get('steps'))}"
                 f", {_fmt(trial_time(s))} s.")
  return "\n".join(lines) if lines else None


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


def step_time(summary: Mapping) -> float | None:
  """Seconds per step on the trial's clock: `step_time_s`, else its time / steps."""
  if _finite(summary.get("step_time_s")):
    return float(summary["step_time_s"])
  t, steps = trial_time(summary), summary.get("steps")
  return t / steps if _finite(t) and _finite(steps) and steps > 0 else None


def time_curve(record: Mapping) -> list[tuple[float, float]]:
  """[(time on the trial's clock = step x step time, val loss)] of one trial's curve."""
  st = step_time(record["summary"])
  if st is None:
    return []
  return [(p["step"] * st, p["val_loss"]) for p in record["curve"]
          if _finite(p.get("step")) and _finite(p.get("val_loss"))]


def mean_time_curve(records: Sequence[Mapping]) -> list[tuple[float, float]]:
  """The mean over seeds at each step every seed evaluated (a capped seed ends the mean where
  it stopped), at step x the mean step time."""
  curves, times = [], []
  for r in records:
    st = step_time(r["summary"])
    pts = {p["step"]: p["val_loss"] for p in r["curve"]
           if _finite(p.get("step")) and _finite(p.get("val_loss"))}
    if st is not None and pts:
      curves.append(pts)
      times.append(st)
  if not curves:
    return []
  st = float(np.mean(times))
  steps = sorted(set.intersection(*(set(c) for c in curves)))
  return [(s * st, float(np.mean([c[s] for c in curves]))) for s in steps]


def plot_loss_vs_time(lines: Sequence[tuple[str, Sequence[Mapping], bool]], path: str,
                      title: str) -> bool:
  """Validation loss against time on the clock: per (label, trials, is baseline) the mean over
  seeds (thick; the baseline black) and each seed (thin)."""
  lines = [(label, rs, base) for label, rs, base in lines if mean_time_curve(rs)]
  if not lines:
    return False
  plt = _plt()
  fig, ax = plt.subplots(figsize=(8, 5))
  for i, (label, rs, base) in enumerate(lines):
    color = "black" if base else f"C{i % 10}"
    for r in rs:
      xy = time_curve(r)
      if xy:
        ax.plot(*zip(*xy), color=color, lw=0.6, alpha=0.3)
    ax.plot(*zip(*mean_time_curve(rs)), color=color, lw=2.2 if base else 1.6, marker=".",
            label=label + (" (baseline)" if base else ""))
  ax.set_xlabel("time on the trial's clock (s): step x step time")
  ax.set_ylabel("validation loss")
  ax.set_title(title)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def _numeric(values) -> bool:
  return all(map(checks.is_number, values))


def plot_sensitivity(all_stats: Mapping[str, list], path: str,
                     ylabel: str = "val loss") -> bool:
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
    ax.set_ylabel(f"{ylabel} (mean ± std)")
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


def groups_section(records: Sequence[Mapping], meta: Mapping, outdir: str, loss_ref: float,
                   time_ref: float | None) -> list[str]:
  """The markdown lines of a groups sweep's groups: who is in which, then one table and one
  loss-versus-time plot per group."""
  groups, baseline = group_points(meta), baseline_of(meta)
  base_label = baseline_label(baseline, groups)
  md = ["## Groups", "", membership_table(records, meta)]
  ended = finished(records)
  for g, points in groups.items():
    md += ["", f"### Group {g}", "",
           group_table(points, records, baseline, base_label, loss_ref, time_ref,
                       compared_metric(meta))]
    lines = [(label, [r for r in ended if matches(r["params"], p)],
              baseline is not None and matches(p, baseline)) for label, p in points]
    if baseline is not None and not any(base for *_, base in lines):
      lines.insert(0, (base_label, [r for r in ended if matches(r["params"], baseline)], True))
    name = f"loss_vs_time_{_slug(g)}.png"
    if plot_loss_vs_time(lines, os.path.join(outdir, name),
                         f"group {g}: validation loss against time (mean over seeds)"):
      md += ["", f"![loss vs time, group {g}]({name})"]
  return md


def render(records: Sequence[Mapping], meta: Mapping, outdir: str,
           name: str = "report.md") -> str:
  """Writes outdir/name (the markdown) and its PNG files beside it from `records` and `meta`
  alone; returns the markdown's path."""
  os.makedirs(outdir, exist_ok=True)
  knobs = _knob_names(records, meta)
  top_k = int(meta.get("report", {}).get("top_k") or 10)
  loss_ref, loss_source = loss_reference(records, meta)
  time_ref, time_source = time_reference(records, meta)
  counts: dict[str, dict[str, int]] = {}
  for r in records:
    c = counts.setdefault(r["study"], {})
    c[r["state"]] = c.get(r["state"], 0) + 1
  diverged = [r for r in records if r["summary"].get("stop_reason") == "diverged"]
  md = [f"# Sweep report: {meta.get('name', '')}", ""]
  objective = meta.get("objective", "final_val_loss")
  how = "maximised: Optuna minimises its negative" if objective == "efficiency" else "minimised"
  md.append(f"Objective: `{objective}` ({how}); sampler "
            f"`{meta.get('sampler', '?')}`; seeds {meta.get('seeds', '?')}; cohort size "
            f"{meta.get('cohort_size', '?')}; base `{meta.get('base', {}).get('config', '?')}`.")
  md += ["", _table(("study", "complete", "running", "waiting", "pruned", "failed"),
                    [(s, c.get("COMPLETE", 0), c.get("RUNNING", 0), c.get("WAITING", 0),
                      c.get("PRUNED", 0), c.get("FAIL", 0)) for s, c in counts.items()])]
  if diverged:
    md += ["", f"Diverged (NaN/inf, masked in their cohort): "
               f"{', '.join(r['name'] for r in diverged)}."]
  warned = warnings_section(records, meta)
  if warned:
    md += ["", "## Warnings", "", warned]
  if any(k in meta for k in ("clock", "time_ref", "groups")):
    md += ["", "## How time was measured", "",
           clock_section(meta, (loss_ref, loss_source), (time_ref, time_source))]
  if meta.get("groups"):
    md += ["", f"## Top {top_k} configurations", "",
           top_configurations(records, meta, top_k, loss_ref, time_ref, time_source)]
    md += [""] + groups_section(records, meta, outdir, loss_ref, time_ref)
  else:
    md += ["", f"## Top {top_k}", "", top_table(records, top_k, loss_ref, time_ref, time_source)]
  baseline = baseline_of(meta)
  metric = compared_metric(meta)
  ms_text, _ = multi_seed_table(records, max(top_k, 20), baseline, metric)
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
                               None if baseline is None else baseline.get(knob), metric)
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
  if plot_sensitivity(all_stats, os.path.join(outdir, "sensitivity.png"), COMPARED[metric]):
    md.append("![sensitivity](sensitivity.png)")
  rep = meta.get("report", {})
  hx, hy = rep.get("heatmap_x"), rep.get("heatmap_y")
  if (hx is None or hy is None) and len(knobs) == 2:
    hx, hy = knobs
  if hx and hy and plot_heatmap(records, hx, hy, os.path.join(outdir, "heatmap.png")):
    md.append(f"![{hx} x {hy} heatmap](heatmap.png)")
  path = os.path.join(outdir, name)
  files.atomic_write_text(path, "\n".join(md) + "\n")
  return path


def write_report(records: Sequence[Mapping], meta: Mapping, outdir: str,
                 json_paths: Sequence[str] = ()) -> str:
  """Writes outdir/trials.json (and each of `json_paths`), then outdir/report.md and its PNG
  files from what that JSON holds, so a report rebuilt from it (`rebuild`) is the same
  markdown; returns the markdown's path."""
  doc = trials_document(records, meta)
  for path in (os.path.join(outdir, "trials.json"), *json_paths):
    files.atomic_write_json(path, doc)
  records, meta = from_document(doc)
  return render(records, meta, outdir)


def rebuild(json_path: str, markdown: str | None = None) -> str:
  """The report from a trials.json alone (no study database, no run directories): the
  markdown at `markdown` (default: report.md beside the JSON), its PNG files beside it;
  returns the markdown's path."""
  records, meta = read_trials_json(json_path)
  out = os.path.abspath(markdown or os.path.join(os.path.dirname(json_path), "report.md"))
  return render(records, meta, os.path.dirname(out), os.path.basename(out))


def generate(workdir: str, storage: str | None = None, json_path: str | None = None) -> str:
  """Reads the sweep in `workdir` (or `storage`) and writes its report (and trials.json, also
  to `json_path` when given); returns report.md's path. FileNotFoundError when there is no
  study database."""
  records, meta = load_records(workdir, storage)
  return write_report(records, meta, os.path.join(workdir, "report"),
                      [json_path] if json_path else [])


USAGE = ("give one sweep directory: python -m jaxgpt.report DIR [--storage URL] [--json FILE], "
         "or rebuild from a report's JSON: python -m jaxgpt.report --from_json FILE "
         "[--markdown OUT]")


def main(argv: Sequence[str]) -> int:
  f = flags.FLAGS
  if f.from_json is not None:
    if len(argv) > 1:
      raise app.UsageError(f"give a sweep directory or --from_json, not both ({USAGE})")
    if f.storage or f.json:
      raise app.UsageError("--storage and --json read a sweep directory; --from_json reads "
                           "the JSON alone")
  elif len(argv) != 2:
    raise app.UsageError(USAGE)
  elif f.markdown:
    raise app.UsageError("--markdown goes with --from_json (a sweep directory's report is "
                         "DIR/report/report.md)")
  try:
    if f.from_json is not None:
      path = rebuild(f.from_json, f.markdown)
    else:
      path = generate(argv[1], f.storage, f.json)
  except (FileNotFoundError, StatsError, TrialsFileError) as e:
    cli.fail(str(e))
  print(path)
  return 0


if __name__ == "__main__":
  # Defined only when run: importing this module (tests, notebooks) defines no flags, so it
  # never collides with jaxgpt.sweep's --storage.
  flags.DEFINE_string("storage", None, "Optuna storage URL (default: the one in DIR/sweep.json, "
                      "else DIR/study.db).")
  flags.DEFINE_string("json", None, "Also write the report's JSON (DIR/report/trials.json: "
                      "meta and every trial, curves included) to this file.")
  flags.DEFINE_string("from_json", None, "Rebuild the report from this JSON alone (a "
                      "trials.json), instead of a sweep directory.")
  flags.DEFINE_string("markdown", None, "With --from_json: the markdown to write (PNG files "
                      "beside it); default report.md beside the JSON.")
  cli.run(main)
