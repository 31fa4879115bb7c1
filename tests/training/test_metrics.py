"""Binary metrics against hand counts and a brute-force AUC."""

import itertools

import numpy as np
import pytest

from nodulelearn.training.metrics import binary_metrics, roc_auc


def test_counts_match_a_hand_made_example():
    labels = np.array([1, 1, 1, 0, 0])
    probs = np.array([0.9, 0.6, 0.2, 0.4, 0.7])
    m = binary_metrics(labels, probs)
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["auc"] == pytest.approx(3 / 6)  # pos > neg pairs: 0.9 > both, 0.6 > 0.4


def test_auc_equals_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum((p > q) + 0.5 * (p == q) for p, q in itertools.product(pos, neg))
    assert roc_auc(labels, scores) == pytest.approx(wins / (len(pos) * len(neg)))


def test_missing_class_gives_none_not_nan():
    m = binary_metrics(np.ones(4), np.full(4, 0.8))
    assert m["sensitivity"] == 1.0 and m["specificity"] is None and m["auc"] is None
    with pytest.raises(ValueError, match="one probability per label"):
        binary_metrics(np.ones(3), np.ones(4))
