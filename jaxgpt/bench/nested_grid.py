"""The nested depth grid against the controller's starting multiplier: does depth matter?
(scripts/nested_grid_plot.py).

In seed mode the momentum network never touches the update and the controller's multipliers
barely move over the nested grid's 9 meta-updates, so a trial's final loss may be set by the
multiplier its random initialisation produced rather than by its depths M and C. `load_rows`
reads every finished trial of a `configs/sweeps/nested_grid.py` workdir (each cohort's
`trials.json`, each trial's `summary.json` and `metrics.jsonl`) and:

1. fits the final validation loss as a quadratic in log(first logged core multiplier) and
   reports the share of the variance it explains (R^2);
2. tests whether the cell (M, C), M alone or C alone explains what is left: a one-way ANOVA of
   the fit's residuals by group (F and p), beside the same ANOVA of the raw losses;
3. repeats 1. and 2. on the trials whose multiplier started at or above `--min_mult` (1.0 by
   default), where the loss is nearly flat in the multiplier: there a misfit of the quadratic at
   small multipliers (where shallow controllers' draws crowd) cannot pose as a depth effect;
4. prints one row per trial, writes OUT.json (rows and statistics) and OUT.png (the loss against
   the multiplier, coloured by C, with the fit).
"""

import glob
import json
import os

import numpy as np
from scipy import stats

from jaxgpt.bench import output

MULT_KEY = "opt/lr_mult_core"


def _first_metric(path: str, key: str):
  """(first, last) logged value of `key` in a metrics.jsonl, or (None, None)."""
  first = last = None
  with open(path, encoding="utf-8") as f:
    for line in f:
      if not line.endswith("\n"):
        continue  # a line being written
      value = json.loads(line).get(key)
      if value is not None:
        first = value if first is None else first
        last = value
  return first, last


def load_rows(workdir: str) -> list[dict]:
  """One dict per finished trial: M, C, seed, first / last core multiplier, final val loss."""
  rows = []
  for trials_path in sorted(glob.glob(os.path.join(workdir, "runs", "*", "trials.json"))):
    run_dir = os.path.dirname(trials_path)
    with open(trials_path, encoding="utf-8") as f:
      trials = json.load(f)
    for t in trials:
      trial_dir = os.path.join(run_dir, f"trial_{t['index']}")
      summary_path = os.path.join(trial_dir, "summary.json")
      if not os.path.exists(summary_path):
        continue  # the cohort has not finished
      with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
      loss = summary.get("final_val_loss")
      m0, m1 = _first_metric(os.path.join(trial_dir, "metrics.jsonl"), MULT_KEY)
      if loss is None or m0 is None or not np.isfinite(loss):
        continue
      rows.append({"M": int(t["params"]["M"]), "C": int(t["params"]["C"]),
                   "seed": int(t["seed"]), "mult_first": float(m0), "mult_last": float(m1),
                   "final_val_loss": float(loss), "run": os.path.basename(run_dir)})
  return rows


def _anova(values: np.ndarray, groups: list) -> dict:
  """One-way ANOVA of `values` grouped by `groups` (F, p, eta^2); None where undefined."""
  keys = sorted(set(groups))
  samples = [values[[g == k for g in groups]] for k in keys]
  if len(keys) < 2 or all(len(s) < 2 for s in samples):
    return {"groups": len(keys), "F": None, "p": None, "eta2": None}
  f, p = stats.f_oneway(*samples)
  total = float(np.sum((values - values.mean()) ** 2))
  between = float(sum(len(s) * (s.mean() - values.mean()) ** 2 for s in samples))
  return {"groups": len(keys), "F": float(f), "p": float(p),
          "eta2": between / total if total > 0 else None}


def analyse_above(rows: list[dict], min_mult: float) -> dict | None:
  """`analyse` on the trials whose first multiplier is >= min_mult; None below 4 trials."""
  kept = [r for r in rows if r["mult_first"] >= min_mult]
  return {"min_mult": min_mult, **analyse(kept)} if len(kept) >= 4 else None


def analyse(rows: list[dict]) -> dict:
  """The multiplier fit and the ANOVAs of raw losses and of the fit's residuals."""
  y = np.array([r["final_val_loss"] for r in rows], np.float64)
  x = np.log(np.array([r["mult_first"] for r in rows], np.float64))
  coef = np.polyfit(x, y, 2)
  resid = y - np.polyval(coef, x)
  ss_tot = float(np.sum((y - y.mean()) ** 2))
  r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else None
  by = {"cell": [(r["M"], r["C"]) for r in rows], "M": [r["M"] for r in rows],
        "C": [r["C"] for r in rows]}
  return {"n": len(rows), "fit_coef_log_mult": [float(c) for c in coef], "r2_mult": r2,
          "resid_std": float(resid.std(ddof=3)) if len(rows) > 3 else None,
          "anova_loss": {k: _anova(y, g) for k, g in by.items()},
          "anova_resid": {k: _anova(resid, g) for k, g in by.items()}}


def plot(rows: list[dict], result: dict, path: str, title: str) -> None:
  """The loss against the first multiplier, coloured by C, with the fit, as a PNG at `path`."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x = np.array([r["mult_first"] for r in rows])
  y = np.array([r["final_val_loss"] for r in rows])
  c = np.array([r["C"] for r in rows])
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  sc = ax.scatter(x, y, c=c, cmap="viridis", s=28, edgecolors="k", linewidths=0.3)
  fig.colorbar(sc, ax=ax, label="controller depth C")
  grid = np.geomspace(max(x.min(), 1e-3), x.max(), 200)
  ax.plot(grid, np.polyval(result["fit_coef_log_mult"], np.log(grid)), "r-", lw=1,
          label=f"quadratic in log mult, R^2 = {result['r2_mult']:.3f}")
  ax.set_xscale("log")
  ax.set_xlabel("core lr multiplier at the first log (step 10)")
  ax.set_ylabel("final val loss")
  ax.set_title(title)
  ax.legend(loc="upper right", fontsize=8)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)


def fmt_anova(a: dict) -> str:
  """One ANOVA as a line of text."""
  if a["F"] is None:
    return f"{a['groups']} groups: undefined"
  return f"{a['groups']} groups: F = {a['F']:.2f}, p = {a['p']:.3g}, eta^2 = {a['eta2']:.3f}"


def report(workdir: str, rows: list[dict], min_mult: float, out: str, title: str | None) -> dict:
  """The analyses of `rows` (at least 4), printed; OUT.json and OUT.png written."""
  result = analyse(rows)
  print("| M | C | seed | mult first | mult last | final val loss |")
  print("| --- | --- | --- | --- | --- | --- |")
  for r in sorted(rows, key=lambda r: (r["C"], r["M"], r["seed"])):
    print(f"| {r['M']} | {r['C']} | {r['seed']} | {r['mult_first']:.3f} | "
          f"{r['mult_last']:.3f} | {r['final_val_loss']:.4f} |")
  print(f"\n{result['n']} trials; R^2 of the loss on log(mult): {result['r2_mult']:.3f}; "
        f"residual std {result['resid_std']:.4f}")
  for what in ("anova_loss", "anova_resid"):
    label = "raw loss" if what == "anova_loss" else "residual"
    for k, a in result[what].items():
      print(f"ANOVA of the {label} by {k}: {fmt_anova(a)}")
  result["above"] = above = analyse_above(rows, min_mult)
  if above is not None:
    print(f"\nThe {above['n']} trials with a first multiplier >= {min_mult:g}: R^2 "
          f"{above['r2_mult']:.3f}, residual std {above['resid_std']:.4f}")
    for k, a in above["anova_resid"].items():
      print(f"ANOVA of the residual by {k}: {fmt_anova(a)}")
  output.write_json(out + ".json", {"workdir": workdir, "rows": rows, **result})
  plot(rows, result, out + ".png", title or os.path.basename(os.path.normpath(workdir)))
  print(f"wrote {out}.json, {out}.png")
  return result
