"""Estimates over seeds and the intervals that decide whether a difference is marked."""

import math

import pytest

from nodulelearn.study.stats import estimate


def test_several_seeds_use_mean_and_sd():
    est = estimate([0.8, 0.9, 1.0])
    assert est.k == 3 and est.mean == pytest.approx(0.9) and est.sd == pytest.approx(0.1)
    assert (est.lo, est.hi) == pytest.approx((0.8, 1.0))
    assert est.text() == "0.900 ± 0.100"
    assert est.overlaps(estimate([0.95, 1.05]))
    assert not est.overlaps(estimate([0.5, 0.6]))
    # touching intervals overlap despite rounding: 0.999 ± 0.001 reaches 1.0
    assert estimate([0.998, 0.999, 1.0]).overlaps(estimate([1.0, 1.0, 1.0]))


def test_one_seed_uses_the_test_sampling_interval():
    est = estimate([0.9], metric="accuracy", n=100)
    half = 1.959964 * math.sqrt(0.9 * 0.1 / 100)
    assert (est.lo, est.hi) == pytest.approx((0.9 - half, 0.9 + half))
    assert est.text() == "0.900"
    # sensitivity is estimated on one class only: a wider interval
    sens = estimate([0.9], metric="sensitivity", n=100)
    assert sens.hi - sens.lo > est.hi - est.lo
    auc = estimate([0.9], metric="auc", n=100)
    assert auc.lo < 0.9 < auc.hi
    given = estimate([0.3], interval=(0.25, 0.4))
    assert (given.lo, given.hi) == (0.25, 0.4)


def test_unknown_intervals_are_not_compared():
    est = estimate([0.7], metric="something")
    assert not est.has_interval and not est.overlaps(estimate([0.7], metric="accuracy", n=10))
    empty = estimate([None, float("nan")])
    assert empty.k == 0 and math.isnan(empty.mean)
