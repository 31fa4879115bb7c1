"""Metrics and intervals of the sensitivity analysis, against brute-force definitions."""

import numpy as np
import pytest

from nodulelearn.binary_metrics import roc_auc
from nodulelearn.sensitivity import intervals, metrics


def _pairwise_auc(labels, probs):
    pos, neg = probs[labels == 1], probs[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(5, 60))
    probs = np.round(rng.random((5, 60)), 1)  # rounding creates many ties
    expected = [_pairwise_auc(y, p) for y, p in zip(labels, probs, strict=True)]
    np.testing.assert_allclose(roc_auc(labels, probs), expected)
    assert roc_auc(labels[0], probs[0]) == pytest.approx(expected[0])


def test_auc_extremes_and_missing_class():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, np.full(4, 0.3)) == 0.5
    assert np.isnan(roc_auc(np.ones(4, int), np.array([0.1, 0.2, 0.8, 0.9])))


def test_accuracy_thresholds_at_one_half():
    labels = np.array([0, 1, 1, 0])
    probs = np.array([0.49, 0.5, 0.2, 0.7])
    assert metrics.accuracy(labels, probs) == 0.5
    base = metrics.baseline_metrics(labels, probs)
    assert base["sensitivity"] == 0.5 and base["specificity"] == 0.5
    assert base["n"] == 4 and base["balanced_accuracy"] == 0.5


def test_identical_predictions_give_zero_effects_and_zero_intervals():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 50)
    base = rng.random(50)
    plan = intervals.bootstrap_plan(50, repeats=3, draws=40, seed=0)
    point, draws = intervals.EffectEstimator(labels, base, plan).estimate(np.stack([base] * 3))
    for name in intervals.EFFECTS:
        assert point[name] == 0.0
        assert intervals.interval(draws[name]) == (0.0, 0.0)


def test_effects_of_a_hand_made_permutation():
    labels = np.array([0, 0, 1, 1])
    base = np.array([0.1, 0.2, 0.8, 0.9])  # accuracy 1, AUC 1
    perm = np.array([[0.8, 0.2, 0.1, 0.9]])  # samples 0 and 2 flip
    plan = intervals.bootstrap_plan(4, repeats=1, draws=10, seed=0)
    point, draws = intervals.EffectEstimator(labels, base, plan).estimate(perm)
    assert point["flip_rate"] == 0.5
    assert point["delta_accuracy"] == 0.5
    assert point["mean_abs_delta_p"] == pytest.approx((0.7 + 0.7) / 4)
    assert point["delta_auc"] == pytest.approx(1.0 - _pairwise_auc(labels, perm[0]))
    assert draws["flip_rate"].shape == (10,)


def test_interval_covers_the_middle_95_percent_and_ignores_nan():
    draws = np.concatenate([np.arange(1000.0), [np.nan]])
    low, high = intervals.interval(draws)
    assert low == pytest.approx(24.975) and high == pytest.approx(974.025)
    assert intervals.interval(np.full(5, np.nan)) == (None, None)


def test_bootstrap_plan_is_deterministic_and_balances_repeats():
    a = intervals.bootstrap_plan(30, repeats=4, draws=100, seed=3)
    b = intervals.bootstrap_plan(30, repeats=4, draws=100, seed=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert np.bincount(a.repeat).tolist() == [25, 25, 25, 25]
    assert a.indices.min() >= 0 and a.indices.max() < 30
