"""jaxgpt.stats against numbers worked by hand: paired and Welch t, degrees of freedom, p, the
95% interval, Holm, the verdict words, the degenerate spreads, and one-seed errors.

p-values come from closed forms of the t distribution's CDF where the degrees of freedom are 2
or 4 (two-sided p = I_{v/(v+t^2)}(v/2, 1/2)):
  v = 2: p = 1 - |t| / sqrt(2 + t^2)
  v = 4: p = 1 - |t| / sqrt(4 + t^2) * (1 + 2 / (4 + t^2))
Quantiles quoted to 5 digits: t_{0.975, 2} = 4.3027, t_{0.975, 4} = 2.7764.
"""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from jaxgpt import stats
from jaxgpt.errors import StatsError

ROOT = Path(__file__).resolve().parents[1]
BASE = {0: 1.00, 1: 1.10, 2: 1.20}  # mean 1.10, variance (0.01 + 0 + 0.01) / 2 = 0.01


def _close(a, b, tol=1e-4):
  assert a == pytest.approx(b, abs=tol), (a, b)


def test_paired_resolves_what_welch_does_not():
  arm = {0: 0.97, 1: 1.08, 2: 1.16}
  # Paired: d = arm - base = (-0.03, -0.02, -0.04); mean -0.03; deviations (0, 0.01, -0.01),
  # variance 0.0002 / 2 = 0.0001, sd 0.01; se = 0.01 / sqrt(3) = 0.0057735;
  # t = -0.03 / 0.0057735 = -3 sqrt(3) = -5.1962 on 2 dof; p = 1 - sqrt(27 / 29) = 0.035099;
  # CI = -0.03 -+ 4.3027 x 0.0057735 = (-0.054841, -0.0051587).
  c = stats.compare(arm, BASE)
  assert c.test == "paired" and (c.n_arm, c.n_base) == (3, 3)
  _close(c.diff, -0.03, 1e-12)
  _close(c.t, -3 * math.sqrt(3))
  assert c.dof == 2
  _close(c.p, 1 - math.sqrt(27 / 29), 1e-9)
  _close(c.ci[0], -0.054841, 2e-6)
  _close(c.ci[1], -0.0051587, 2e-6)
  assert stats.verdict(c, c.p) == "better"
  assert stats.verdict(c, c.p, lower_is_better=False) == "worse"  # e.g. accuracy
  # Welch on the same numbers: arm mean 1.07, deviations (-0.10, 0.01, 0.09), variance
  # 0.0182 / 2 = 0.0091; se = sqrt(0.0091 / 3 + 0.01 / 3) = sqrt(0.0191 / 3) = 0.079791;
  # t = -0.03 / 0.079791 = -0.37598; dof = 0.0191^2 / ((0.0091^2 + 0.01^2) / 2) = 3.9911;
  # p = 2 x sf(0.37598; 3.9911) = 0.72606 (scipy's t CDF as the last step).
  w = stats.compare(arm, BASE, paired=False)
  assert w.test == "welch"
  _close(w.t, -0.03 / math.sqrt(0.0191 / 3), 1e-9)
  _close(w.dof, 0.0191 ** 2 / ((0.0091 ** 2 + 0.01 ** 2) / 2), 1e-9)
  _close(w.p, 0.72606)
  assert w.ci[0] < 0 < w.ci[1]
  assert stats.verdict(w, w.p) == "not resolved with 3 seeds"
  # The seeds decide the test: another seed set is Welch, sequences (no seeds) are Welch.
  assert stats.compare({s + 3: v for s, v in arm.items()}, BASE).test == "welch"
  assert stats.compare(list(arm.values()), BASE).test == "welch"


def test_paired_over_the_shared_seeds_when_one_arm_ran_more():
  # A baseline with 5 seeds (a study that ran 2 more where 3 did not resolve) against the
  # 3-seed arm of test_paired_resolves_what_welch_does_not: paired over seeds 0..2, the same
  # t, dof and p as there; seeds 3 and 4 do not enter the test.
  arm = {0: 0.97, 1: 1.08, 2: 1.16}
  base5 = {**BASE, 3: 9.0, 4: -9.0}
  assert stats.shared_seeds([0, 1, 2], [0, 1, 2, 3, 4]) == [0, 1, 2]
  c = stats.compare(arm, base5)
  assert c.test == "paired" and (c.n_arm, c.n_base) == (3, 3)
  _close(c.diff, -0.03, 1e-12)
  _close(c.p, 1 - math.sqrt(27 / 29), 1e-9)
  # Either way round, and with paired=True.
  assert stats.compare(base5, arm).test == "paired"
  _close(stats.compare(arm, base5, paired=True).p, 1 - math.sqrt(27 / 29), 1e-9)
  # Welch when asked: every value enters (5 baseline seeds).
  w = stats.compare(arm, base5, paired=False)
  assert w.test == "welch" and (w.n_arm, w.n_base) == (3, 5)
  # Overlapping but not nested (0..2 against 1..3): Welch; paired=True is an error naming both.
  other = {1: 1.1, 2: 1.2, 3: 1.3}
  assert stats.shared_seeds([0, 1, 2], [1, 2, 3]) is None
  assert stats.compare(arm, other).test == "welch"
  with pytest.raises(StatsError, match="same seeds"):
    stats.compare(arm, other, paired=True)
  # One shared seed is too few to pair.
  assert stats.shared_seeds([0], [0, 1]) is None


def test_welch_equal_variances_closed_form():
  # arm (0.90, 1.00, 1.10): mean 1.00, variance 0.01; base mean 1.10, variance 0.01.
  # se = sqrt(0.01 / 3 + 0.01 / 3) = 0.081650; t = -0.1 / 0.081650 = -sqrt(1.5) = -1.2247;
  # dof = (0.02 / 3)^2 / (2 (0.01 / 3)^2 / 2) = 4; p = 1 - sqrt(1.5 / 5.5) (1 + 2 / 5.5)
  # = 1 - 0.52223 x 1.36364 = 0.28786; CI = -0.1 -+ 2.7764 x 0.081650 = (-0.32670, 0.12670).
  c = stats.compare([0.90, 1.00, 1.10], list(BASE.values()))
  assert c.test == "welch"
  _close(c.t, -math.sqrt(1.5), 1e-9)
  _close(c.dof, 4.0, 1e-9)
  _close(c.p, 1 - math.sqrt(1.5 / 5.5) * (1 + 2 / 5.5), 1e-9)
  _close(c.p, 0.28786)
  _close(c.ci[0], -0.32670, 5e-5)
  _close(c.ci[1], 0.12670, 5e-5)


def test_welch_unequal_variances_and_counts():
  # arm (0.8, 1.0, 1.2): mean 1.0, variance 0.04; base (1.1 .. 1.5): mean 1.3, variance
  # (0.04 + 0.01 + 0 + 0.01 + 0.04) / 4 = 0.025. qa = 0.04 / 3 = 1/75, qb = 0.025 / 5 = 1/200,
  # qa + qb = 11/600; t = -0.3 / sqrt(11/600) = -2.2156;
  # dof = (11/600)^2 / ((1/75)^2 / 2 + (1/200)^2 / 4) = (121 / 360000) / (34.25 / 360000)
  # = 3.5328; p = 2 x sf(2.2156; 3.5328) = 0.09998 (scipy's t CDF as the last step).
  c = stats.compare([0.8, 1.0, 1.2], [1.1, 1.2, 1.3, 1.4, 1.5])
  _close(c.t, -0.3 / math.sqrt(11 / 600), 1e-9)
  _close(c.dof, 121 / 34.25, 1e-9)
  _close(c.p, 0.09998)
  assert (c.n_arm, c.n_base) == (3, 5)
  assert stats.verdict(c, c.p) == "not resolved with 3 and 5 seeds"
  # An independent implementation agrees on every number.
  ref = sps.ttest_ind([0.8, 1.0, 1.2], [1.1, 1.2, 1.3, 1.4, 1.5], equal_var=False)
  ci = ref.confidence_interval()
  np.testing.assert_allclose([c.t, c.dof, c.p, *c.ci],
                             [ref.statistic, ref.df, ref.pvalue, ci.low, ci.high], rtol=1e-9)


def test_interaction_paired_hand_worked():
  """Per-seed contrasts a11 - a10 - a01 + a00: 0.01, 0.03, 0.00; mean 0.013333, sd 0.0152753,
  t = 1.51186 on 2 dof; with 2 dof the t tail has a closed form, P(T > t) = (1 - t /
  sqrt(t^2 + 2)) / 2 = 0.134852, so p = 0.269703."""
  a11 = {0: 1.50, 1: 1.52, 2: 1.49}
  a10 = {0: 1.48, 1: 1.49, 2: 1.47}
  a01 = {0: 1.60, 1: 1.61, 2: 1.60}
  a00 = {0: 1.59, 1: 1.61, 2: 1.58, 3: 1.70}  # seed 3: not in every arm, left out
  c = stats.interaction(a11, a10, a01, a00)
  assert c.test == "paired" and c.dof == 2 and (c.n_arm, c.n_base) == (3, 3)
  assert c.diff == pytest.approx(0.0133333, abs=1e-6)
  assert c.t == pytest.approx(1.51186, abs=1e-4)
  assert c.p == pytest.approx(0.269703, abs=1e-5)
  half = 4.302653 * 0.0152753 / math.sqrt(3)  # t_{0.975, 2} = 4.302653
  assert c.ci == pytest.approx((0.0133333 - half, 0.0133333 + half), abs=1e-5)
  # the interaction is antisymmetric in the first factor
  flipped = stats.interaction(a01, a00, a11, a10)
  assert flipped.diff == pytest.approx(-c.diff) and flipped.p == pytest.approx(c.p)


def test_interaction_welch_hand_worked():
  """No seeds: means 2, 2, 2, 1 (diff 2 - 2 - 2 + 1 = -1), q = var / n = 1/3, 1, 0, 1, se =
  sqrt(7/3) = 1.527525, dof = (7/3)^2 / ((1/3)^2 / 2 + 1 + 0 + 1) = 2.648649."""
  c = stats.interaction([1.0, 2.0, 3.0], [1.0, 3.0], [2.0, 2.0, 2.0], [0.0, 2.0])
  assert c.test == "welch" and (c.n_arm, c.n_base) == (2, 3)
  assert c.diff == pytest.approx(-1.0)
  assert c.t == pytest.approx(-1.0 / 1.527525, rel=1e-6)
  assert c.dof == pytest.approx(2.648649, rel=1e-6)
  assert c.p == pytest.approx(2 * sps.t.sf(1.0 / 1.527525, 2.648649), rel=1e-6)
  with pytest.raises(StatsError, match="^a01 has 1 seed"):
    stats.interaction([1.0, 2.0], [1.0, 2.0], [1.0], [1.0, 2.0])


def test_pooled_std_and_resolvable_difference_hand_worked():
  """Groups (1, 2, 3) and (2, 4): squares about the means 2 and 2 + 2 = 4 on 2 + 1 dof, so
  sigma = sqrt(4 / 3) = 1.154701; a lone value adds nothing. With 3 seeds and sigma = 1 the
  paired test resolves t_{0.975, 2} sqrt(2) / sqrt(3) = 4.302653 x 0.816497 = 3.513101."""
  sigma, dof = stats.pooled_std([[1.0, 2.0, 3.0], [2.0, 4.0], [7.0]])
  assert dof == 3 and sigma == pytest.approx(1.154701, abs=1e-6)
  assert stats.resolvable_difference(1.0, 3) == pytest.approx(3.513101, abs=1e-5)
  assert stats.resolvable_difference(0.01, 5) == pytest.approx(
      2.776445 * math.sqrt(2) * 0.01 / math.sqrt(5), rel=1e-6)
  with pytest.raises(StatsError, match="needs a configuration with at least 2 seeds"):
    stats.pooled_std([[1.0], [2.0]])


def test_holm_hand_worked():
  # p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005 (#3), 0.01 (#0), 0.03 (#2), 0.04 (#1);
  # times (4, 3, 2, 1): 0.02, 0.03, 0.06, 0.04; running maximum: 0.02, 0.03, 0.06, 0.06.
  # Back in order: (0.03, 0.06, 0.06, 0.02); at alpha 0.05 reject #0 and #3 only. #1's 0.04
  # alone would pass, but Holm stops at the first hypothesis it keeps (#2).
  adjusted, reject = stats.holm([0.01, 0.04, 0.03, 0.005], 0.05)
  np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
  assert reject == [True, False, False, True]
  # Capped at 1, monotone in the sorted order, ties kept, nothing to adjust.
  adjusted, reject = stats.holm([0.5, 0.4, 0.9], 0.05)  # 3 x 0.4 = 1.2 -> 1
  assert adjusted == [1.0, 1.0, 1.0] and reject == [False] * 3
  assert stats.holm([0.02, 0.02], 0.05) == ([0.04, 0.04], [True, True])
  assert stats.holm([], 0.05) == ([], [])
  with pytest.raises(StatsError, match="p-values"):
    stats.holm([0.1, 1.5])


def test_old_rule_and_new_rule_disagree():
  # Seeds 3..5 against the baseline's 0..2: not the same runs, so Welch.
  arm = {3: 1.12, 4: 1.22, 5: 1.32}  # mean 1.22, variance 0.01
  # Old rule: pooled sigma = sqrt((0.02 + 0.02) / 4) = 0.1; 2 sigma / sqrt(3) = 0.11547 < 0.12:
  # "outside the noise".
  sigma = math.sqrt((0.02 + 0.02) / 4)
  assert 0.12 > 2 * sigma / math.sqrt(3)
  # New rule: t = 0.12 / sqrt(0.02 / 3) = sqrt(2.16) = 1.4697 on 4 dof;
  # p = 1 - sqrt(2.16 / 6.16) (1 + 2 / 6.16) = 0.21558: not resolved.
  c = stats.compare(arm, BASE)
  assert c.test == "welch"
  _close(c.t, math.sqrt(2.16), 1e-9)
  _close(c.p, 1 - math.sqrt(2.16 / 6.16) * (1 + 2 / 6.16), 1e-9)
  _close(c.p, 0.21558)
  assert stats.verdict(c, c.p) == "not resolved with 3 seeds"
  # The other way round: the paired case of test_paired_resolves_what_welch_does_not differs by
  # 0.03 < 2 sigma / sqrt(3) = 0.1128 (sigma^2 = (0.0182 + 0.02) / 4): "inside the noise" then,
  # "better" now.
  paired = stats.compare({0: 0.97, 1: 1.08, 2: 1.16}, BASE)
  assert 0.03 < 2 * math.sqrt((0.0182 + 0.02) / 4) / math.sqrt(3)
  assert stats.verdict(paired, paired.p) == "better"


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy, on the constant reference
def test_zero_spread():
  # Identical arms: t = 0, p = 1, a zero-width interval at 0, not resolved (paired and Welch).
  same = stats.compare(dict(BASE), BASE)
  assert (same.t, same.p, same.ci, same.test) == (0.0, 1.0, (0.0, 0.0), "paired")
  assert stats.verdict(same, same.p) == "not resolved with 3 seeds"
  welch = stats.compare(list(BASE.values()), list(BASE.values()))
  assert (welch.t, welch.p) == (0.0, 1.0)
  # The same difference on every seed (up to round-off): the test's limit, t = -inf, p = 0,
  # as scipy's ttest_rel says too.
  arm = {s: v - 0.05 for s, v in BASE.items()}
  c = stats.compare(arm, BASE)
  assert c.t == -math.inf and c.p == 0.0
  _close(c.ci[0], -0.05, 1e-12)
  _close(c.ci[1], -0.05, 1e-12)
  assert stats.verdict(c, c.p) == "better"
  ref = sps.ttest_rel([1.0, 1.0, 1.0], [1.5, 1.5, 1.5])
  assert ref.statistic == -math.inf and ref.pvalue == 0.0
  # Two constant arms under Welch: variances 0/0 in Welch–Satterthwaite; dof n_a + n_b - 2.
  w = stats.compare([2.0, 2.0], [1.0, 1.0, 1.0])
  assert (w.t, w.p, w.dof, w.test) == (math.inf, 0.0, 3.0, "welch")
  assert stats.verdict(w, w.p) == "worse"


def test_errors_name_the_arm():
  with pytest.raises(StatsError, match=r"^lr=0.02 has 1 seed; .*at least 2 seeds"):
    stats.compare({0: 1.0}, BASE, arm_name="lr=0.02")
  with pytest.raises(StatsError, match=r"^baseline has 0 seeds"):
    stats.compare(BASE, {})
  with pytest.raises(StatsError, match=r"same seeds"):
    stats.compare({3: 1.0, 4: 1.1}, BASE, paired=True)
  with pytest.raises(StatsError, match=r"arm has a non-finite value at seed 1"):
    stats.compare({0: 1.0, 1: math.nan, 2: 1.2}, BASE)
  with pytest.raises(StatsError, match=r"baseline has 1 seed"):
    stats.compare_all({"a": BASE}, {0: 1.0})


def test_compare_all_holm_over_the_table():
  arms = {
      # paired p = 0.035099 (test_paired_resolves_what_welch_does_not)
      "a": {0: 0.97, 1: 1.08, 2: 1.16},
      # Welch p = 0.21558 (test_old_rule_and_new_rule_disagree)
      "b": {3: 1.12, 4: 1.22, 5: 1.32},
      "c": {0: 1.0},  # one seed: no comparison
  }
  got = stats.compare_all(arms, BASE)
  assert list(got) == ["a", "b", "c"]
  # Holm over m = 2: 0.035099 x 2 = 0.070198 (kept: not resolved any more), then
  # max(0.070198, 0.21558 x 1) = 0.21558.
  _close(got["a"].p_adjusted, 2 * (1 - math.sqrt(27 / 29)), 1e-9)
  _close(got["b"].p_adjusted, 1 - math.sqrt(2.16 / 6.16) * (1 + 2 / 6.16), 1e-9)
  assert got["a"].verdict == "not resolved with 3 seeds"
  assert got["b"].verdict == "not resolved with 3 seeds"
  assert got["c"] == stats.Judged(None, None, "n/a: 1 seed")
  # Alone, "a" is resolved: the correction is what keeps it.
  assert stats.compare_all({"a": arms["a"]}, BASE)["a"].verdict == "better"


def test_compare_pairs_judges_each_arm_against_its_own_baseline():
  shifted = {s: v + 0.5 for s, v in BASE.items()}
  pairs = {
      # the same arm against BASE (paired p = 0.035099, as above) and against BASE + 0.5
      "step 1": ({0: 0.97, 1: 1.08, 2: 1.16}, BASE),
      "step 2": ({s: v + 0.5 for s, v in {0: 0.97, 1: 1.08, 2: 1.16}.items()}, shifted),
      "step 3": ({}, shifted),  # not run yet
      "step 4": ({0: 1.0}, BASE),  # one seed
  }
  got = stats.compare_pairs(pairs)
  assert list(got) == list(pairs)
  # the same paired differences twice: p equal, Holm over m = 2 doubles both
  p = 1 - math.sqrt(27 / 29)
  _close(got["step 1"].comparison.p, p, 1e-9)
  _close(got["step 2"].comparison.p, p, 1e-9)
  _close(got["step 1"].p_adjusted, 2 * p, 1e-9)
  _close(got["step 2"].p_adjusted, 2 * p, 1e-9)
  assert got["step 3"] == stats.Judged(None, None, "not run yet")
  assert got["step 4"] == stats.Judged(None, None, "n/a: 1 seed")
  # one baseline for all: compare_all's answer
  one = stats.compare_pairs({"a": pairs["step 1"]})
  assert one["a"] == stats.compare_all({"a": pairs["step 1"][0]}, BASE)["a"]
  assert one["a"].verdict == "better"


def test_censored_median():
  # Unreached runs count as +inf: (10, 20, inf) -> 20; (10, 20, inf, inf) -> inf (half never
  # got there); (10, 20, 30, inf) -> (20 + 30) / 2 = 25.
  assert stats.censored_median([20.0, 10.0], 3) == 20.0
  assert stats.censored_median([10.0, 20.0], 4) == math.inf
  assert stats.censored_median([10.0, 20.0, 30.0], 4) == 25.0
  assert stats.censored_median([], 2) == math.inf
  with pytest.raises(StatsError):
    stats.censored_median([1.0, 2.0], 1)


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "jaxgpt.stats", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)


def test_cli():
  proc = _cli("0:0.97,1:1.08,2:1.16", "0:1.00,1:1.10,2:1.20")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("diff -0.03 [-0.05484, -0.005159] (paired, t = -5.2, dof = 2, "
                                "p = 0.0351): better"), proc.stdout
  proc = _cli("1.0", "1.0,1.1")  # one seed: one line through jaxgpt.cli, exit 2
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
  assert "ARM has 1 seed" in proc.stderr
  # The other refusals, in-process (each subprocess costs seconds of start-up).
  from absl import app
  for argv, words in ((["stats", "1.0,x", "1.0,1.1"], "ARM='1.0,x' must be"),
                      (["stats", "1.0,1.1"], "give two arms")):
    with pytest.raises(app.UsageError, match=re.escape(words)):
      stats.main(argv)


def _trials_json(path, losses, params=None):
  trials = [{"state": "COMPLETE", "seed": s, "params": params or {"lr": 0.1},
             "summary": {"final_val_loss": v, "val_bpb": 2 * v}} for s, v in losses.items()]
  trials.append({"state": "FAIL", "seed": 9, "params": {"lr": 0.1}, "summary": {}})
  path.write_text(json.dumps({"format": "jaxgpt.report/1", "meta": {}, "trials": trials}))
  return str(path)


def test_values_from_a_reports_json(tmp_path):
  arm = _trials_json(tmp_path / "a.json", {0: 0.97, 1: 1.08, 2: 1.16})
  base = _trials_json(tmp_path / "b.json", BASE)
  assert stats.parse_values("ARM", arm) == {0: 0.97, 1: 1.08, 2: 1.16}
  assert stats.parse_values("ARM", arm + ":val_bpb") == {0: 1.94, 1: 2.16, 2: 2.32}
  c = stats.compare(stats.parse_values("ARM", arm), stats.parse_values("BASELINE", base))
  _close(c.p, 1 - math.sqrt(27 / 29), 1e-9)  # test_paired_resolves_what_welch_does_not
  mixed = tmp_path / "m.json"
  data = json.loads((tmp_path / "a.json").read_text())
  data["trials"][0]["params"] = {"lr": 0.2}
  mixed.write_text(json.dumps(data))
  with pytest.raises(StatsError, match="holds 2 configurations"):
    stats.parse_values("ARM", str(mixed))
  with pytest.raises(StatsError, match="has no val_acc"):
    stats.parse_values("ARM", arm + ":val_acc")
  with pytest.raises(StatsError, match="is not a report's trials.json"):
    stats.parse_values("ARM", str(tmp_path / "none.json"))
