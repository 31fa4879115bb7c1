"""The encoding's read-outs give scikit-learn's numbers: ridge's leave-one-out choice and
predictions (one decomposition per fold for every target), and the logistic read-out's
balanced-accuracy scorer bit for bit."""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nodulelearn.sensitivity.readout import (
    INNER_FOLDS,
    LOGISTIC_CS,
    LOGISTIC_TOL,
    RIDGE_ALPHAS,
    balanced_accuracy_scorer,
    logistic_out_of_fold,
    ridge_out_of_fold,
)


def _data(n, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * rng.uniform(0.1, 10, p)
    x[:, 0] = 3.0  # a constant feature: standardised to 0
    signal = x[:, 1] - x[:, 2]
    ys = np.stack([signal + rng.normal(size=n) * s for s in (0.1, 3.0, 30.0)] +
                  [rng.normal(size=n)], axis=1)
    return x, ys


@pytest.mark.parametrize("n, p", [(150, 12), (30, 40)])  # covariance and Gram decompositions
def test_ridge_matches_scikit_learn_ridgecv_per_target(n, p):
    x, ys = _data(n, p, seed=n)
    predicted, chosen = ridge_out_of_fold(x, ys, 5, seed=3)
    for target in range(ys.shape[1]):
        expected = np.empty(n)
        alphas = []
        for fit, held_out in KFold(5, shuffle=True, random_state=3).split(x):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=list(RIDGE_ALPHAS)))
            model.fit(x[fit], ys[fit, target])
            expected[held_out] = model.predict(x[held_out])
            alphas.append(float(model[-1].alpha_))
        assert chosen[target] == alphas
        np.testing.assert_allclose(predicted[:, target], expected, rtol=1e-9,
                                   atol=1e-9 * np.abs(expected).max())
    assert len(set(a for fold in chosen for a in fold)) > 1  # the targets chose differently


def test_balanced_accuracy_scorer_is_scikit_learns_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4))
    y = rng.integers(0, 3, 90)
    sklearn_scorer = get_scorer("balanced_accuracy")
    for classes in (2, 3):
        head = LogisticRegressionCV(Cs=[1.0], cv=2).fit(x, np.minimum(y, classes - 1))
        for seed in range(5):
            labels = np.random.default_rng(seed).integers(0, 3, 90)  # a class never predicted,
            labels[labels == 2] = 1 if seed % 2 else 2  # or one predicted but not present
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = sklearn_scorer(head, x, labels)
            assert balanced_accuracy_scorer(head, x, labels) == expected


@pytest.mark.parametrize("edges", [[0.0], [-1.0, 1.0]])  # binary (one decision), three classes
def test_logistic_read_out_is_logistic_regression_cv_with_its_own_scorer(edges):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(240, 6))
    y = np.digitize(x[:, 0] + x[:, 1] + rng.normal(size=240), edges)
    predicted, chosen = logistic_out_of_fold(x, y, 4, seed=2)
    expected, expected_c = np.empty_like(y), []
    for fit, held_out in StratifiedKFold(4, shuffle=True, random_state=2).split(x, y):
        head = LogisticRegressionCV(Cs=list(LOGISTIC_CS), cv=INNER_FOLDS, max_iter=1000,
                                    tol=LOGISTIC_TOL, class_weight="balanced",
                                    scoring="balanced_accuracy")
        model = make_pipeline(StandardScaler(), head).fit(x[fit], y[fit])
        expected[held_out] = model.predict(x[held_out])
        expected_c.append(float(head.C_[0]))
    np.testing.assert_array_equal(predicted, expected)
    assert chosen == expected_c
    assert np.mean(predicted == y) > 0.6  # a real read-out, not a constant
