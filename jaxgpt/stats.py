"""Statistics every report uses: a configuration against the pre-set baseline, over seeds.

  python -m jaxgpt.stats ARM BASELINE [--higher_is_better]
  python -m jaxgpt.stats 0:3.21,1:3.25,2:3.22 0:3.30,1:3.31,2:3.27
  python -m jaxgpt.stats ARM/trials.json BASELINE/trials.json[:val_bpb]   # reports' JSON

- `compare(arm, baseline)`: the difference of the means, mean(arm) - mean(baseline), with its
  95% interval from the t distribution and a two-sided p. A paired t-test on the per-seed
  differences when both arms ran the same seeds (`train.seed` fixes initialisation and data
  order, so seed s of one arm and seed s of the other share both), Welch's t-test otherwise.
  When one arm ran more seeds than the other and its seeds include all of the other's (a study
  that ran 5 seeds where 3 did not resolve, against 3-seed arms), the test is paired over the
  seeds both ran; the extra seeds enter the means and spreads the report lists, not this test.
- `interaction(a11, a10, a01, a00)`: a 2 x 2's interaction, (a11 - a10) - (a01 - a00), tested
  the same way (paired over the seeds all four arms ran, else Welch-Satterthwaite).
- `holm(pvalues)`: Holm's step-down adjustment over the comparisons one table makes.
- `verdict(...)`: "better", "worse", or "not resolved with n seeds" — never "no effect": a
  difference the seeds do not resolve may still be there.
- `compare_all(arms, baseline)`: every arm against the baseline, Holm over the lot, a verdict
  each (what a report table shows); `compare_pairs` the same with a baseline per arm.
- `pooled_std`, `resolvable_difference`: a plan's smallest difference a pilot's seed spread
  lets n seeds resolve (`python -m jaxgpt.sweep ... --plan --pilot trials.json`).
- `censored_median(times, n)`: time to target is censored (a run that did not reach the target
  has no time), so it gets k/n and this median only, never a mean or a t-test.

Inputs are {seed: value} mappings, or plain sequences (no seeds: Welch). Fewer than 2 seeds in
an arm, or a non-finite value, is a `StatsError` naming the arm. Degenerate spreads (formulas in
docs/formulas.md "Comparing with the baseline"): identical arms give t = 0, p = 1 (not
resolved); a difference that is exactly the same on every seed (zero spread of the paired
differences, or two constant arms under Welch) gives t = ±inf, p = 0 and a zero-width interval
— the limit of the test as the spread goes to 0, and scipy's answer; it happens when the seed
changes nothing (a deterministic metric), and then the verdict follows the sign.

numpy and scipy only; imports nothing of jaxgpt but `errors` (and `cli` when run).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence, Union

import numpy as np
from scipy import stats as sps

from jaxgpt.errors import StatsError

Values = Union[Mapping[Any, float], Sequence[float]]
TESTS = ("paired", "welch")
BETTER, WORSE = "better", "worse"


class Comparison(NamedTuple):
  """mean(arm) - mean(baseline), its interval, and the test that judged it."""
  diff: float
  ci: tuple[float, float]  # the 95% (`confidence`) interval of `diff`, per comparison
  t: float
  dof: float
  p: float  # two-sided, before any multiple-comparison adjustment
  test: str  # "paired" | "welch"
  n_arm: int
  n_base: int


class Judged(NamedTuple):
  """One arm of `compare_all`: its comparison (None with fewer than 2 seeds), the Holm-adjusted
  p (None without a comparison) and the verdict."""
  comparison: Comparison | None
  p_adjusted: float | None
  verdict: str


def _tolerance(*arrays: np.ndarray) -> float:
  """Spreads and differences at or below this are exactly zero (float round-off of values of
  this size)."""
  scale = max([1.0] + [float(np.max(np.abs(a))) for a in arrays if a.size])
  return 1e-12 * scale


def _arm(name: str, values: Values) -> tuple[list | None, np.ndarray]:
  """(seeds or None, values as float64); a StatsError naming `name` for < 2 values or a
  non-finite one."""
  if isinstance(values, Mapping):
    seeds = sorted(values, key=str)
    raw = [values[s] for s in seeds]
  else:
    seeds, raw = None, list(values)
  try:
    a = np.asarray(raw, np.float64)
  except (TypeError, ValueError):
    raise StatsError(f"{name} has a value that is not a number: {raw!r}") from None
  if a.ndim != 1 or a.size < 2:
    raise StatsError(f"{name} has {a.size} seed{'s' * (a.size != 1)}; a comparison needs at "
                     "least 2 seeds per arm (add seeds: train.seed / the sweep's `seeds`)")
  if not np.all(np.isfinite(a)):
    bad = [s for s, x in zip(seeds or range(a.size), a) if not math.isfinite(x)]
    where = "seed" if seeds is not None else "index"
    raise StatsError(f"{name} has a non-finite value at {where} {bad[0]!r} (a diverged run is "
                     "reported apart, not averaged)")
  return seeds, a


def _t_result(diff: float, se: float, dof: float, tol: float, confidence: float
              ) -> tuple[tuple[float, float], float, float]:
  """(interval, t, p) of `diff` with standard error `se` on `dof` degrees of freedom."""
  if se <= tol:  # no spread: the limit of the test (module docstring)
    if abs(diff) <= tol:
      return (diff, diff), 0.0, 1.0
    return (diff, diff), math.copysign(math.inf, diff), 0.0
  t = diff / se
  half = float(sps.t.ppf(0.5 + confidence / 2, dof)) * se
  return (diff - half, diff + half), t, float(2.0 * sps.t.sf(abs(t), dof))


def welch_dof(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
  """Welch–Satterthwaite degrees of freedom; n_a + n_b - 2 when both variances are 0 (0/0)."""
  qa, qb = var_a / n_a, var_b / n_b
  den = qa * qa / (n_a - 1) + qb * qb / (n_b - 1)
  return (qa + qb) ** 2 / den if den > 0 else float(n_a + n_b - 2)


def shared_seeds(seeds_a: list | None, seeds_b: list | None) -> list | None:
  """The seeds a paired test runs over: the smaller arm's, when the other arm ran every one of
  them too (equal sets included) and there are at least 2; None (Welch) otherwise."""
  if seeds_a is None or seeds_b is None:
    return None
  small, large = sorted((seeds_a, seeds_b), key=len)
  return small if len(small) >= 2 and set(small) <= set(large) else None


def compare(arm: Values, baseline: Values, *, paired: bool | None = None,
            arm_name: str = "arm", base_name: str = "baseline",
            confidence: float = 0.95) -> Comparison:
  """`arm` against `baseline`. paired=None: paired over the shared seeds when both are
  {seed: value} mappings and one's seeds include the other's (`shared_seeds`), else Welch;
  True: paired (shared seeds required); False: Welch over every value."""
  seeds_a, a = _arm(arm_name, arm)
  seeds_b, b = _arm(base_name, baseline)
  shared = shared_seeds(seeds_a, seeds_b)
  if paired and shared is None:
    raise StatsError(f"a paired test needs {arm_name} and {base_name} on the same seeds (got "
                     f"{seeds_a} and {seeds_b})")
  if not 0 < confidence < 1:
    raise StatsError(f"confidence={confidence!r} must be in (0, 1)")
  if shared is not None and (paired is None or paired):
    a = np.asarray([arm[s] for s in shared], np.float64)
    b = np.asarray([baseline[s] for s in shared], np.float64)
  tol = _tolerance(a, b)
  if shared is not None and (paired is None or paired):
    d = a - b
    n = d.size
    diff, se, dof, test = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n), n - 1, "paired"
  else:
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    diff, se = float(a.mean() - b.mean()), math.sqrt(va / a.size + vb / b.size)
    dof, test = welch_dof(va, a.size, vb, b.size), "welch"
  ci, t, p = _t_result(diff, se, float(dof), tol, confidence)
  return Comparison(diff, ci, t, float(dof), p, test, int(a.size), int(b.size))


def interaction(a11: Values, a10: Values, a01: Values, a00: Values, *,
                names: Sequence[str] = ("a11", "a10", "a01", "a00"),
                confidence: float = 0.95) -> Comparison:
  """The interaction of a 2 x 2: (a11 - a10) - (a01 - a00), how much the second factor's
  effect changes when the first factor is on (e.g. a11 Muon + STE, a10 Muon, a01 Adam + STE,
  a00 Adam: > 0 means STE costs more under Muon). Paired when the four arms share at least 2
  seeds (the t-test of the per-seed contrast over the seeds all four ran); otherwise each
  arm's mean, the variance sum_i var_i / n_i and Satterthwaite's degrees of freedom
  (sum_i q_i)^2 / sum_i q_i^2 / (n_i - 1), q_i = var_i / n_i (Welch's test for 4 arms).
  `Comparison.n_arm` / `n_base`: the fewest / most seeds of an arm."""
  arms = [_arm(n, v) for n, v in zip(names, (a11, a10, a01, a00))]
  if not 0 < confidence < 1:
    raise StatsError(f"confidence={confidence!r} must be in (0, 1)")
  signs = np.asarray([1.0, -1.0, -1.0, 1.0])
  seeds = [s for s, _ in arms]
  common = None
  if all(x is not None for x in seeds):
    common = sorted(set.intersection(*map(set, seeds)), key=str)
    common = common if len(common) >= 2 else None
  values = (a11, a10, a01, a00)
  tol = _tolerance(*(a for _, a in arms))
  if common is not None:
    d = sum(sg * np.asarray([v[x] for x in common], np.float64)
            for sg, v in zip(signs, values))
    diff, se, dof, test = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(d.size), \
        d.size - 1, "paired"
    ns = [d.size] * 4
  else:
    q = [float(a.var(ddof=1)) / a.size for _, a in arms]
    ns = [a.size for _, a in arms]
    diff = float(sum(sg * a.mean() for sg, (_, a) in zip(signs, arms)))
    se = math.sqrt(sum(q))
    den = sum(qi * qi / (n - 1) for qi, n in zip(q, ns))
    dof, test = (sum(q) ** 2 / den if den > 0 else float(sum(ns) - 4)), "welch"
  ci, t, p = _t_result(diff, se, float(dof), tol, confidence)
  return Comparison(diff, ci, t, float(dof), p, test, int(min(ns)), int(max(ns)))


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
  """Holm's step-down adjustment: with p sorted ascending p_(1) <= ... <= p_(m),
  p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); reject where p_adj <= alpha. Returned in
  the input's order."""
  p = np.asarray(pvalues, np.float64)
  if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
    raise StatsError(f"p-values must be numbers in [0, 1] (got {list(pvalues)!r})")
  m = p.size
  order = np.argsort(p, kind="stable")
  stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
  adjusted = np.empty(m)
  adjusted[order] = np.maximum.accumulate(stepped) if m else stepped
  return [float(x) for x in adjusted], [bool(x <= alpha) for x in adjusted]


def seeds_phrase(c: Comparison) -> str:
  """'3 seeds' (paired, or equal counts) or '3 and 2 seeds'."""
  n = c.n_arm if c.n_arm == c.n_base else f"{c.n_arm} and {c.n_base}"
  return f"{n} seeds"


def verdict(c: Comparison, p_adjusted: float, alpha: float = 0.05,
            lower_is_better: bool = True) -> str:
  """'better' / 'worse' (than the baseline) when the adjusted p is at most alpha, else
  'not resolved with n seeds'."""
  if p_adjusted > alpha or c.diff == 0:
    return f"not resolved with {seeds_phrase(c)}"
  return BETTER if (c.diff < 0) == lower_is_better else WORSE


def compare_pairs(pairs: Mapping[str, tuple[Values, Values]], *, alpha: float = 0.05,
                  lower_is_better: bool = True, base_name: str = "baseline",
                  paired: bool | None = None, confidence: float = 0.95) -> dict[str, Judged]:
  """{name: (arm, baseline)} judged pair by pair, each against its own baseline (a ladder's
  step against the one before it), Holm over the pairs whose two sides both have at least 2
  seeds. A pair with a side that has none gets no comparison and the verdict 'not run yet';
  one with a side of 1 seed, 'n/a: 1 seed'."""
  comps: dict[str, Comparison] = {}
  out: dict[str, Judged] = {}
  for name, (values, baseline) in pairs.items():
    n = min(len(values), len(baseline))
    if n == 0:
      out[name] = Judged(None, None, "not run yet")
    elif n < 2:
      out[name] = Judged(None, None, "n/a: 1 seed")
    else:
      comps[name] = compare(values, baseline, paired=paired, arm_name=name,
                            base_name=base_name, confidence=confidence)
  adjusted, _ = holm([c.p for c in comps.values()], alpha)
  for (name, c), p in zip(comps.items(), adjusted):
    out[name] = Judged(c, p, verdict(c, p, alpha, lower_is_better))
  return {name: out[name] for name in pairs}


def compare_all(arms: Mapping[str, Values], baseline: Values, *, alpha: float = 0.05,
                lower_is_better: bool = True, base_name: str = "baseline",
                confidence: float = 0.95) -> dict[str, Judged]:
  """Every arm against `baseline` (paired where the seeds match), Holm over the arms that have
  at least 2 seeds (`compare_pairs` with one baseline); an arm with fewer gets no comparison
  and the verdict 'n/a: 1 seed' ('not run yet' with none). The baseline itself needs 2 seeds
  (StatsError otherwise)."""
  _arm(base_name, baseline)
  return compare_pairs({name: (values, baseline) for name, values in arms.items()},
                       alpha=alpha, lower_is_better=lower_is_better, base_name=base_name,
                       confidence=confidence)


def pooled_std(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
  """(sqrt(sum_i (n_i - 1) s_i^2 / sum_i (n_i - 1)), sum_i (n_i - 1)): the seed spread pooled
  over configurations (s_i the sample std of configuration i's n_i seed values); groups with
  fewer than 2 values add nothing. A StatsError when no group has 2."""
  ss, dof = 0.0, 0
  for g in groups:
    a = np.asarray(list(g), np.float64)
    if a.size >= 2:
      ss += float(((a - a.mean()) ** 2).sum())
      dof += a.size - 1
  if dof == 0:
    raise StatsError("a pooled spread needs a configuration with at least 2 seeds")
  return math.sqrt(ss / dof), dof


def resolvable_difference(sigma: float, n: int, confidence: float = 0.95) -> float:
  """The smallest mean difference a paired test over n seeds resolves before any correction
  (its interval excludes 0) when each arm's seed values spread by sigma and the two arms' draws
  are independent (the per-seed difference then spreads by sqrt(2) sigma):
  t_{(1 + confidence) / 2, n - 1} x sqrt(2) sigma / sqrt(n). Pairing that correlates the arms
  resolves less; Holm over m comparisons asks for more."""
  if n < 2:
    raise StatsError(f"n={n} seeds: a comparison needs at least 2")
  return float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(2.0) * sigma / math.sqrt(n)


def pilot_groups(path: str, metric: str) -> list[list[float]]:
  """Each configuration's seed values of `metric` in a report's trials.json (its completed
  trials, grouped by knobs): what `pooled_std` reads for a plan."""
  import json  # the pilot's reader

  try:
    with open(path, encoding="utf-8") as f:
      trials = json.load(f)["trials"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise StatsError(f"pilot {path!r} is not a report's trials.json ({e})") from None
  groups: dict[str, list[float]] = {}
  for t in trials:
    v = (t.get("summary") or {}).get(metric)
    if t.get("state") == "COMPLETE" and isinstance(v, (int, float)) and math.isfinite(v):
      groups.setdefault(json.dumps(t.get("params"), sort_keys=True), []).append(float(v))
  return list(groups.values())


def censored_median(times: Sequence[float], n: int) -> float:
  """The median time to target over `n` runs of which those in `times` reached it, the others
  counted as never (+inf): inf when half or more did not reach it (even n: the mean of the two
  middle values, inf if either is)."""
  if n < len(times) or n < 1:
    raise StatsError(f"{len(times)} times to target from {n} runs")
  xs = sorted(float(t) for t in times) + [math.inf] * (n - len(times))
  lo, hi = xs[(n - 1) // 2], xs[n // 2]
  return math.inf if math.isinf(hi) else 0.5 * (lo + hi)


# ------------------------------------------------------------------------------------------
# The command line.

def values_from_json(name: str, path: str, metric: str = "final_val_loss") -> Values:
  """{seed: summary[metric]} of the completed trials in a report's trials.json (`python -m
  jaxgpt.report DIR --json FILE`), which must hold one configuration."""
  import json  # the command line's only JSON reader

  try:
    with open(path, encoding="utf-8") as f:
      trials = json.load(f)["trials"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise StatsError(f"{name}={path!r} is not a report's trials.json ({e})") from None
  done = [t for t in trials if t.get("state") == "COMPLETE"]
  configs = {json.dumps(t.get("params"), sort_keys=True) for t in done}
  if len(configs) != 1:
    raise StatsError(f"{name}={path!r} holds {len(configs)} configurations; one is needed")
  missing = [t["seed"] for t in done if not isinstance(t["summary"].get(metric), (int, float))]
  if missing:
    raise StatsError(f"{name}={path!r} has no {metric} for seed {missing[0]}")
  out = {int(t["seed"]): float(t["summary"][metric]) for t in done}
  return out if len(out) == len(done) else [float(t["summary"][metric]) for t in done]


def parse_values(name: str, text: str) -> Values:
  """'0:3.21,1:3.25' -> {0: 3.21, 1: 3.25}; '3.21,3.25' -> [3.21, 3.25];
  'trials.json' or 'trials.json:val_bpb' -> `values_from_json`."""
  path, _, metric = text.partition(".json")
  if _ == ".json" and (not metric or metric.startswith(":")):
    return values_from_json(name, path + ".json", metric[1:] or "final_val_loss")
  items = [s for s in text.split(",") if s.strip()]
  try:
    if items and all(":" in s for s in items):
      pairs = [s.split(":", 1) for s in items]
      out = {int(k): float(v) for k, v in pairs}
      if len(out) != len(pairs):
        raise StatsError(f"{name}={text!r} names a seed twice")
      return out
    return [float(s) for s in items]
  except ValueError:
    raise StatsError(f"{name}={text!r} must be comma-separated values, or seed:value pairs "
                     "(0:3.21,1:3.25)") from None


def describe(c: Comparison, p_adjusted: float, words: str) -> str:
  """One line: diff [CI], test, t, dof, p, verdict."""
  return (f"diff {c.diff:+.4g} [{c.ci[0]:+.4g}, {c.ci[1]:+.4g}] ({c.test}, t = {c.t:.3g}, "
          f"dof = {c.dof:.3g}, p = {p_adjusted:.3g}): {words}")


def main(argv: Sequence[str]) -> int:
  # Imported here: the library part needs no absl and no jaxgpt.cli.
  from absl import app, flags

  if len(argv) != 3:
    raise app.UsageError("give two arms: python -m jaxgpt.stats ARM BASELINE (each 0:x,1:y,..., "
                         "x,y,... or a report's trials.json[:metric])")
  try:
    arm, base = parse_values("ARM", argv[1]), parse_values("BASELINE", argv[2])
    c = compare(arm, base, arm_name="ARM", base_name="BASELINE")
  except StatsError as e:  # one line `error: ...`, exit 2 (jaxgpt.cli.run)
    raise app.UsageError(str(e)) from None
  print(describe(c, c.p, verdict(c, c.p, lower_is_better=not flags.FLAGS.higher_is_better)))
  return 0


if __name__ == "__main__":
  # Imported when run only: the library imports nothing of jaxgpt but `errors`.
  from absl import flags

  from jaxgpt import cli
  flags.DEFINE_boolean("higher_is_better", False, "A larger value is better (accuracy); by "
                       "default a smaller one is (loss).")
  cli.run(main)
