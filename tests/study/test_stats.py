"""The study's intervals, paired tests and Holm correction, against scipy and textbook values."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from nodulelearn.study.stats import (
    estimate,
    hanley_mcneil_se,
    holm,
    holm_adjust,
    newcombe_interval,
    paired_difference,
    sign_test_difference,
    single_difference,
    two_proportion_p,
    wilson_interval,
)


def test_several_seeds_use_mean_sd_and_the_t_interval():
    est = estimate([0.8, 0.9, 1.0])
    assert est.k == 3 and est.mean == pytest.approx(0.9) and est.sd == pytest.approx(0.1)
    half = scipy_stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert (est.lo, est.hi) == pytest.approx((0.9 - half, 0.9 + half))
    assert est.text() == "0.900 ± 0.100"


def test_wilson_against_textbook_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605;
    # 0/10 -> 0 to 0.2775 (where Wald's interval has no width).
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    # statsmodels' proportion_confint(100, 100, method="wilson") = (0.96301, 1.0)
    one = estimate([1.0], metric="accuracy", n=100)
    assert (one.lo, one.hi) == pytest.approx((0.96301, 1.0), abs=1e-5)
    assert one.text() == "1.000 [0.963, 1.000]"


def test_one_seed_intervals_of_other_metrics():
    # sensitivity is estimated on one class only: a wider interval than accuracy
    acc = estimate([0.9], metric="accuracy", n=100)
    sens = estimate([0.9], metric="sensitivity", n=100)
    assert sens.hi - sens.lo > acc.hi - acc.lo
    # Hanley & McNeil (1982), eq. 2 by hand: A = 0.8, 50 per class: Q1 = 2/3, Q2 = 0.7111,
    # var = (0.16 + 49 * 0.02667 + 49 * 0.07111) / 2500 = 0.0019804, SE = 0.0445
    assert hanley_mcneil_se(0.8, 50, 50) == pytest.approx(0.0445, abs=1e-4)
    auc = estimate([0.8], metric="auc", n=100)
    assert (auc.lo, auc.hi) == pytest.approx((0.8 - 1.96 * 0.0445, 0.8 + 1.96 * 0.0445), abs=1e-3)
    given = estimate([0.3], interval=(0.25, 0.4))
    assert (given.lo, given.hi) == (0.25, 0.4)
    unknown = estimate([0.7], metric="something")
    assert not unknown.has_interval
    empty = estimate([None, float("nan")])
    assert empty.k == 0 and math.isnan(empty.mean)


def test_paired_difference_matches_scipy():
    a = [0.91, 0.88, 0.93, 0.90, 0.89]
    b = [0.89, 0.87, 0.90, 0.90, 0.86]
    diff = paired_difference("ce", "supcon", "accuracy", a, b)
    d = np.subtract(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    assert diff.p == pytest.approx(ref.pvalue)
    assert diff.diff == pytest.approx(d.mean())
    lo, hi = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (diff.lo, diff.hi) == pytest.approx((lo, hi))
    assert diff.k == 5 and diff.test == "paired t"
    assert diff.text() == f"ce − supcon: {d.mean():.3f} [{lo:.3f}, {hi:.3f}]"
    negative = paired_difference("supcon", "ce", "accuracy", b, a)
    assert negative.text().startswith("supcon − ce: −0.018 [−")
    same = paired_difference("a", "b", "accuracy", [1.0, 1.0], [1.0, 1.0])
    assert (same.diff, same.lo, same.hi, same.p) == (0.0, 0.0, 0.0, 1.0)


def test_a_constant_difference_over_seeds_gets_the_exact_permutation_p():
    # 512/512 vs 511/512 on each of 3 seeds: sd 0, the t-test is undefined. Before, p was 0 and
    # such a difference "held" after Holm; the exact sign-flip test gives 2 / 2**3.
    a, b = [1.0, 1.0, 1.0], [511 / 512] * 3
    diff = paired_difference("ce", "simclr", "accuracy", a, b)
    ref = scipy_stats.permutation_test(
        (a, b), lambda x, y: np.mean(np.subtract(x, y)), permutation_type="samples",
        n_resamples=np.inf,
    )  # fmt: skip
    assert diff.p == pytest.approx(ref.pvalue) == pytest.approx(0.25)
    assert diff.lo == diff.hi == diff.diff == pytest.approx(1 / 512)
    with pytest.raises(ValueError, match="same length >= 2"):
        paired_difference("a", "b", "accuracy", [0.9], [0.8])


def test_single_seed_difference():
    # Newcombe (1998), Table II example (method 10): 56/70 - 48/80 -> 0.0524 to 0.3339
    assert newcombe_interval(56 / 70, 70, 48 / 80, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    # the pooled z-test equals the chi-square test without continuity correction
    table = [[56, 14], [48, 32]]
    chi2 = scipy_stats.chi2_contingency(table, correction=False)
    assert two_proportion_p(56 / 70, 70, 48 / 80, 80) == pytest.approx(chi2.pvalue)
    diff = single_difference("a", "b", "accuracy", 1.0, 0.98, 200)
    assert diff.lo < 0 < diff.hi and diff.hi > 0.02  # a width at accuracy 1.0
    assert single_difference("a", "b", "auc", 0.9, 0.9, 200).p == pytest.approx(1.0)
    with pytest.raises(ValueError, match="No single-seed comparison.*accuracy"):
        single_difference("a", "b", "loss", 0.3, 0.2, 100)


def test_holm_against_a_worked_example():
    # p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> monotone
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, math.nan])[0] == pytest.approx(0.5) and math.isnan(holm([0.5, math.nan])[1])
    diffs = holm_adjust([
        paired_difference("a", "b", "accuracy", [0.9, 0.92, 0.91], [0.8, 0.81, 0.8]),
        paired_difference("a", "c", "accuracy", [0.9, 0.92, 0.91], [0.91, 0.9, 0.92]),
    ])  # fmt: skip
    assert diffs[0].holds and not diffs[1].holds
    assert diffs[0].p_holm == pytest.approx(min(1.0, 2 * diffs[0].p))


def test_sign_test_difference_counts_signs_exactly():
    # 27 of 27 pairs one way: p = 2 / 2**27 (the two-sided exact binomial test); ties drop out.
    d = sign_test_difference("a", "b", "shortcut_bias", [0.5] * 27 + [0.0], [0.0] * 27 + [0.0])
    assert d.p == pytest.approx(2 / 2**27) and d.k == 28 and d.test == "sign"
    assert d.diff == pytest.approx(27 * 0.5 / 28) and d.lo < d.diff < d.hi
    # 5 up, 5 down: no evidence, whatever the sizes (the t-test would see a mean of +0.45).
    up_down = sign_test_difference("a", "b", "m", [1.0] * 5 + [-0.1] * 5, [0.0] * 10)
    assert up_down.p == pytest.approx(1.0) and up_down.diff == pytest.approx(0.45)
    # 9 of 10 up: the textbook value 22/1024.
    nine = sign_test_difference("a", "b", "m", [0.2] * 9 + [-0.2], [0.0] * 10)
    assert nine.p == pytest.approx(22 / 1024)
    assert sign_test_difference("a", "b", "m", [0.3, 0.3], [0.3, 0.3]).p == 1.0
    with pytest.raises(ValueError, match="same length >= 2"):
        sign_test_difference("a", "b", "m", [0.1], [0.2])
