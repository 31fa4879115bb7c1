"""The encoding's linear read-outs: out-of-fold predictions of a mode from an embedding.

Both read-outs standardise the features on the fitting fold and choose their regularisation by
cross-validation inside it (``encoding`` describes the analysis):

- numeric modes: ridge regression, the strength chosen from ``RIDGE_ALPHAS`` by the mean squared
  leave-one-out error (generalised cross-validation), the first best strength kept. This is
  scikit-learn's ``RidgeCV`` (same formulas: the eigendecomposition of the centred covariance,
  or of the Gram matrix where a fold has no more samples than features), computed once per fold
  for every numeric mode and every strength: ``RidgeCV`` redoes an ``n x D x D`` product per
  strength and per mode. The two agree to rounding (``tests/sensitivity/test_readout.py``).
- categorical modes: scikit-learn's ``LogisticRegressionCV`` (class-balanced, balanced accuracy
  selecting ``C`` from ``LOGISTIC_CS``), scored by ``balanced_accuracy_scorer``: the value of
  scikit-learn's ``balanced_accuracy`` scorer, bit for bit, without its per-call checks (they
  took half of a fit's time on a 128-wide embedding).
"""

from __future__ import annotations

import warnings

import numpy as np

INNER_FOLDS = 3
# Inverse L2 strengths (logistic) and L2 strengths (ridge), on standardised features.
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
LOGISTIC_TOL = 1e-3  # 3x faster than scikit-learn's 1e-4 on trained embeddings, same read-out


def balanced_accuracy_scorer(estimator, x, y) -> float:
    """A fitted linear classifier's balanced accuracy on ``(x, y)``: the mean recall of the
    classes present in ``y``, in sorted order. The operations of scikit-learn's ``predict`` (the
    sign of the decision function, or its first largest class) and ``balanced_accuracy_score``,
    without their input checks: ``x`` is a fold of the read-out's checked embeddings."""
    scores = x @ estimator.coef_.T + estimator.intercept_  # [n] or [n, 1] (binary), [n, K]
    binary = scores.ndim == 1 or scores.shape[1] == 1
    indices = scores.reshape(len(x), -1)[:, 0] > 0 if binary else np.argmax(scores, axis=1)
    predicted = estimator.classes_[indices.astype(int)]
    recalls = np.array([np.count_nonzero(predicted[y == c] == c) / np.count_nonzero(y == c)
                        for c in np.unique(y)])
    return float(np.mean(recalls))


def logistic_out_of_fold(x: np.ndarray, y: np.ndarray, folds: int, seed: int):
    """Out-of-fold class predictions of ``y`` (classes ``0..K-1``) and the ``C`` chosen per fold,
    over ``StratifiedKFold(folds, shuffle=True, random_state=seed)``."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty_like(y)
    chosen = []
    for fit, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        inner = min(INNER_FOLDS, int(np.bincount(y[fit]).min(initial=INNER_FOLDS)))
        head = LogisticRegressionCV(
            Cs=list(LOGISTIC_CS), cv=max(inner, 2), max_iter=1000, tol=LOGISTIC_TOL,
            class_weight="balanced", scoring=balanced_accuracy_scorer)
        model = make_pipeline(StandardScaler(), head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-converged weak fits: the CV still ranks them
            model.fit(x[fit], y[fit])
        predicted[held_out] = model.predict(x[held_out])
        chosen.append(float(np.ravel(head.C_)[0]))
    return predicted, chosen


def _ridge_gcv(x: np.ndarray, ys: np.ndarray, alphas: np.ndarray):
    """Leave-one-out ridge on standardised ``x`` for every column of ``ys`` at once.

    Returns ``(predict, best)``: ``predict(x_new) -> [m, targets]`` with each target's chosen
    strength, and the index of that strength in ``alphas`` per target.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    x_offset, y_offset = xs.mean(axis=0), ys.mean(axis=0)
    xc, yc = xs - x_offset, ys - y_offset
    n, p = xc.shape
    if n > p:  # H = X (X'X + a)^-1 X' = U diag(1 / (l + a)) U', U = X V, X'X = V diag(l) V'
        eigenvalues, v = np.linalg.eigh(xc.T @ xc)
        basis, shrink = xc @ v, 1.0 / (eigenvalues[None, :] + alphas[:, None])
    else:  # H = Q diag(l / (l + a)) Q', XX' = Q diag(l) Q'
        eigenvalues, basis = np.linalg.eigh(xc @ xc.T)
        shrink = eigenvalues[None, :] / (eigenvalues[None, :] + alphas[:, None])
    projected = basis.T @ yc  # [r, targets]
    fitted = basis[None] @ (shrink[:, :, None] * projected[None])  # [a, n, targets]
    ones = basis @ (shrink * basis.sum(axis=0)).T  # H 1, per strength: [n, a]
    leverage = (basis * basis) @ shrink.T  # diag(H), per strength: [n, a]
    residual_scale = 1.0 - leverage - (1.0 - ones) / n  # the intercept's part of the LOO
    errors = np.mean(((yc[None] - fitted) / residual_scale.T[:, :, None]) ** 2, axis=1)
    best = np.argmin(errors, axis=0)  # [targets]: the first strength of least LOO error
    if n > p:
        coef = v @ (shrink[best].T * projected)  # [p, targets]
    else:
        coef = xc.T @ (basis @ (projected / (eigenvalues[:, None] + alphas[best][None, :])))
    intercept = y_offset - x_offset @ coef

    def predict(x_new):
        return scaler.transform(x_new) @ coef + intercept

    return predict, best


def ridge_out_of_fold(x: np.ndarray, ys: np.ndarray, folds: int, seed: int):
    """Out-of-fold ridge predictions of every column of ``ys`` ``[n, targets]`` and the strength
    chosen per fold and target (``[targets][folds]``), over ``KFold(folds, shuffle=True,
    random_state=seed)`` (one split for every target: it does not depend on them)."""
    from sklearn.model_selection import KFold

    alphas = np.asarray(RIDGE_ALPHAS)
    predicted = np.empty(ys.shape, np.float64)
    chosen = [[] for _ in range(ys.shape[1])]
    for fit, held_out in KFold(folds, shuffle=True, random_state=seed).split(x):
        predict, best = _ridge_gcv(x[fit], ys[fit], alphas)
        predicted[held_out] = predict(x[held_out])
        for target, index in enumerate(best):
            chosen[target].append(float(alphas[index]))
    return predicted, chosen
