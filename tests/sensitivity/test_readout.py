"""The encoding's read-outs give plain scikit-learn's numbers: ridge's leave-one-out choice and
predictions (one ``RidgeCV`` fit per fold for every target) to rounding, and the logistic
read-out's (``LogisticRegressionCV`` with a numpy balanced-accuracy scorer) strengths and
predictions bit for bit."""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.metrics import balanced_accuracy_score, get_scorer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nodulelearn.sensitivity.readout import (
    INNER_FOLDS,
    LOGISTIC_CS,
    LOGISTIC_TOL,
    MAX_ITER,
    RIDGE_ALPHAS,
    _balanced_accuracy,
    _balanced_accuracy_scorer,
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


def test_balanced_accuracy_is_scikit_learns_bit_for_bit():
    rng = np.random.default_rng(0)
    for seed in range(6):
        y = rng.integers(0, 3, 90)
        predicted = np.where(rng.random(90) < 0.6, y, rng.integers(0, 3, 90))
        if seed % 2:  # a class predicted but not present
            y[y == 2] = 1
        expected = balanced_accuracy_score(y, predicted) if seed % 2 == 0 else \
            _quiet(balanced_accuracy_score, y, predicted)
        assert _balanced_accuracy(y, predicted) == expected


def _quiet(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


@pytest.mark.parametrize("edges", [[0.0], [-1.0, 1.0]])  # binary (one decision), three classes
def test_logistic_read_out_is_logistic_regression_cv_bit_for_bit(edges):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(240, 6)) * rng.uniform(0.5, 20, 6)
    y = np.digitize(x[:, 0] / x[:, 0].std() + x[:, 1] / x[:, 1].std() + rng.normal(size=240),
                    edges)
    predicted, chosen = logistic_out_of_fold(x, y, 4, seed=2)
    expected, expected_c = np.empty_like(y), []
    for fit, held_out in StratifiedKFold(4, shuffle=True, random_state=2).split(x, y):
        head = LogisticRegressionCV(Cs=list(LOGISTIC_CS), cv=INNER_FOLDS, max_iter=MAX_ITER,
                                    tol=LOGISTIC_TOL, class_weight="balanced",
                                    scoring="balanced_accuracy")
        model = make_pipeline(StandardScaler(), head)
        _quiet(model.fit, x[fit], y[fit])
        expected[held_out] = model.predict(x[held_out])
        expected_c.append(float(np.ravel(head.C_)[0]))
    np.testing.assert_array_equal(predicted, expected)
    assert chosen == expected_c and len(set(chosen)) >= 1
    assert np.mean(predicted == y) > 0.6  # a real read-out, not a constant


@pytest.mark.parametrize("classes", [2, 3])
def test_scorer_is_scikit_learns_balanced_accuracy_scorer_bit_for_bit(classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(120, 5))
    y = np.digitize(x[:, 0] + rng.normal(size=120), [0.0] if classes == 2 else [-0.5, 0.5])
    reference = get_scorer("balanced_accuracy")
    for c in LOGISTIC_CS:
        model = LogisticRegression(C=c, class_weight="balanced").fit(x[:80], y[:80])
        assert _balanced_accuracy_scorer(model, x[80:], y[80:]) == reference(model, x[80:],
                                                                             y[80:])
        if classes == 2:  # as LogisticRegressionCV's path sets a binary model: one vector
            model.coef_, model.intercept_ = model.coef_[0], model.intercept_[0]
            assert _balanced_accuracy_scorer(model, x[80:], y[80:]) == \
                reference(model, x[80:], y[80:])
