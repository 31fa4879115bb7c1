"""Interval code against scipy and textbook values."""

import numpy as np
import pytest
from scipy import stats

from nodulelearn.binary_metrics import roc_auc
from nodulelearn.sensitivity.intervals import delong_auc, delong_interval, wilson_interval
from nodulelearn.sensitivity.metrics import baseline_metrics


@pytest.mark.parametrize("successes, n", [(0, 10), (10, 10), (81, 263), (1, 2), (500, 1000),
                                          (199, 200)])
def test_wilson_matches_scipy(successes, n):
    expected = stats.binomtest(successes, n).proportion_ci(0.95, method="wilson")
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_textbook_values_and_errors():
    # Newcombe (1998), Table I: 0/10 -> [0, 0.2775]; 81/263 -> [0.2553, 0.3662].
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    # Accuracy 1.0 on 200 images: not a zero-width interval (Wald's would be [1, 1]).
    low, high = wilson_interval(200, 200)
    assert high == 1.0 and 0.97 < low < 0.985
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)


def _hanley_mcneil():
    # Hanley & McNeil (1982), Table 1: 5-point ratings of 58 normal and 51 abnormal CT images.
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    return np.r_[np.zeros(58), np.ones(51)], np.r_[normal, abnormal].astype(float)


def test_delong_on_the_hanley_mcneil_ratings():
    labels, scores = _hanley_mcneil()
    auc, variance = delong_auc(labels, scores)
    assert auc == pytest.approx(0.893, abs=5e-4)  # the paper's area
    assert auc == pytest.approx(roc_auc(labels, scores))
    # The paper's standard error (its exponential approximation) is 0.032.
    assert np.sqrt(variance) == pytest.approx(0.032, abs=0.002)
    # DeLong's variance is the bootstrap's, to sampling error, on the same data.
    rng = np.random.default_rng(0)
    rows = rng.integers(0, labels.size, size=(3000, labels.size))
    boot = roc_auc(labels[rows], scores[rows])
    assert np.sqrt(variance) == pytest.approx(np.nanstd(boot), rel=0.1)


def test_delong_edge_cases():
    assert delong_interval(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == (1.0, 1.0)
    assert delong_interval(np.array([1, 1]), np.array([0.1, 0.2])) == (None, None)
    low, high = delong_interval(*_hanley_mcneil())
    assert low < 0.893 < high and high - low == pytest.approx(2 * 1.96 * 0.0307, abs=0.004)


def test_baseline_metrics_carry_the_intervals():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([0.2, 0.6, 0.7, 0.9, 0.4])
    base = baseline_metrics(labels, probs)
    expected = stats.binomtest(3, 5).proportion_ci(0.95, method="wilson")
    assert base["accuracy"] == pytest.approx(0.6)
    assert (base["accuracy_ci_low"], base["accuracy_ci_high"]) == pytest.approx(
        (expected.low, expected.high))
    assert base["auc_ci_low"] <= base["auc"] <= base["auc_ci_high"]
