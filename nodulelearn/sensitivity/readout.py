"""The encoding's linear read-outs: out-of-fold predictions of a mode from an embedding.

Both read-outs standardise the features on the fitting fold and choose their regularisation by
cross-validation inside it (``encoding`` describes the analysis):

- numeric modes: ridge regression, the strength chosen from ``RIDGE_ALPHAS`` by the mean squared
  leave-one-out error (generalised cross-validation), the first best strength kept. This is
  scikit-learn's ``RidgeCV`` (same formulas: the eigendecomposition of the centred covariance,
  or of the Gram matrix where a fold has no more samples than features), computed once per fold
  for every numeric mode and every strength: ``RidgeCV`` redoes an ``n x D x D`` product per
  strength and per mode. The two agree to rounding (``tests/sensitivity/test_readout.py``).
- categorical modes: scikit-learn's ``LogisticRegressionCV`` (L-BFGS, class-balanced, the
  ``C`` of ``LOGISTIC_CS`` with the best balanced accuracy summed over ``INNER_FOLDS`` folds,
  refitted from the folds' mean coefficients), computed with its own operations in its own
  order, so with its floats: its coefficients, strengths and predictions are equal bit for bit
  (``tests/sensitivity/test_readout.py``). Done here without scikit-learn's per-call checks and
  array-namespace dispatch, which took more than half of the read-out's time (the scorer's
  checks alone half of a fit's time on a 128-wide embedding; docs/performance.md). A scikit-learn
  release that changes that computation fails the test rather than the numbers drifting.
"""

from __future__ import annotations

import numpy as np

INNER_FOLDS = 3
# Inverse L2 strengths (logistic) and L2 strengths (ridge), on standardised features.
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
LOGISTIC_TOL = 1e-3  # 3x faster than scikit-learn's 1e-4 on trained embeddings, same read-out
MAX_ITER = 1000


def _balanced_accuracy(y, predicted) -> float:
    """The mean recall of the classes present in ``y``, in sorted order: scikit-learn's
    ``balanced_accuracy_score``, the same operations (so the same float; ties between strengths
    are then broken as scikit-learn breaks them)."""
    recalls = np.array([np.count_nonzero(predicted[y == c] == c) / np.count_nonzero(y == c)
                        for c in np.unique(y)])
    return float(np.mean(recalls))


def _loss_gradient(w, x, target, sample_weight, l2, loss, classes: int):
    """The penalised, weighted mean logistic loss and its gradient at ``w`` (intercept last;
    multinomial ``w`` raveled in Fortran order): scikit-learn's ``LinearModelLoss.loss_gradient``
    with ``fit_intercept``, the same operations in the same order (so the same floats), without
    its array-namespace dispatch on each of L-BFGS's calls (11% of the read-out's time)."""
    features = x.shape[1]
    if classes == 2:
        weights, intercept = w[:-1], w[-1]
        raw = x @ weights + intercept
    else:
        coef = w.reshape((classes, -1), order="F")
        weights, intercept = coef[:, :-1], coef[:, -1]
        raw = x @ weights.T + intercept
    pointwise_loss, pointwise = loss.loss_gradient(
        y_true=target, raw_prediction=raw, sample_weight=sample_weight, n_threads=1)
    sw_sum = np.sum(sample_weight)
    flat = np.ravel(weights, order="K")
    value = float(np.sum(pointwise_loss) / sw_sum) + float(0.5 * l2 * (flat @ flat))
    pointwise /= sw_sum
    if classes == 2:
        grad = np.empty_like(w)
        grad[:features] = x.T @ pointwise + l2 * weights
        grad[-1] = np.sum(pointwise)
        return value, grad
    grad = np.empty((classes, features + 1), order="F")
    grad[:, :features] = pointwise.T @ x + l2 * weights
    grad[:, -1] = np.sum(pointwise, axis=0)
    return value, grad.ravel(order="F")


def _logistic_path(x, y, classes: int, class_weight, cs, init=None) -> list[np.ndarray]:
    """Coefficients (intercept last; ``[classes, D + 1]`` for more than two classes) fitted at
    each of ``cs`` in turn, each fit starting from the previous one's (the first from ``init``
    or zeros): scikit-learn's ``_logistic_regression_path`` with L-BFGS, an L2 penalty,
    an intercept and ``class_weight`` (per class), with its options."""
    from scipy.optimize import minimize
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    n, features = x.shape
    sample_weight = np.ones(n) * class_weight[y]
    sw_sum = float(np.sum(sample_weight))
    if classes == 2:
        loss, target = HalfBinomialLoss(), (y == 1).astype(np.float64)
        w = np.zeros(features + 1) if init is None else np.array(init, np.float64)
    else:
        loss, target = HalfMultinomialLoss(n_classes=classes), y.astype(np.float64)
        w = np.zeros((classes, features + 1), order="F")
        if init is not None:
            w[:, :] = init
        w = w.ravel(order="F")
    coefs = []
    for c in cs:
        w = minimize(_loss_gradient, w, method="L-BFGS-B", jac=True,
                     args=(x, target, sample_weight, 1.0 / (c * sw_sum), loss, classes),
                     options={"maxiter": MAX_ITER, "maxls": 50, "gtol": LOGISTIC_TOL,
                              "ftol": 64 * np.finfo(float).eps}).x
        coefs.append(w.copy() if classes == 2 else np.reshape(w, (classes, -1), order="F").copy())
    return coefs


def _predicted_classes(x, coef, intercept) -> np.ndarray:
    scores = x @ coef.T + intercept  # [n] or [n, 1] (binary), [n, K]
    binary = scores.ndim == 1 or scores.shape[1] == 1
    return (scores.reshape(len(x), -1)[:, 0] > 0).astype(int) if binary else \
        np.argmax(scores, axis=1)


def _logistic_cv(x, y, classes: int, inner: int):
    """Coefficients and ``C`` of scikit-learn's ``LogisticRegressionCV(Cs=LOGISTIC_CS, cv=inner,
    class_weight="balanced", scoring=balanced accuracy, tol=LOGISTIC_TOL)`` fitted on
    standardised ``x`` (``y``: ``0..classes-1``): the ``C`` of the best summed score over the
    inner folds, refitted on all of ``x`` from the mean of the folds' coefficients at that C."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.utils.class_weight import compute_class_weight

    class_weight = compute_class_weight("balanced", classes=np.arange(classes), y=y)
    paths, scores = [], []
    for fit, test in StratifiedKFold(inner).split(x, y):
        paths.append(_logistic_path(x[fit], y[fit], classes, class_weight, LOGISTIC_CS))
        # Scored as LogisticRegressionCV scores: a binary path's coefficients as a vector.
        scores.append([_balanced_accuracy(y[test], _predicted_classes(x[test], w[..., :-1],
                                                                      w[..., -1]))
                       for w in paths[-1]])
    best = int(np.argmax(np.array(scores).sum(axis=0)))
    init = np.mean(np.stack([path[best] for path in paths]), axis=0)
    (w,) = _logistic_path(x, y, classes, class_weight, [LOGISTIC_CS[best]], init)
    return w, LOGISTIC_CS[best]


def logistic_out_of_fold(x: np.ndarray, y: np.ndarray, folds: int, seed: int):
    """Out-of-fold class predictions of ``y`` (classes ``0..K-1``) and the ``C`` chosen per fold,
    over ``StratifiedKFold(folds, shuffle=True, random_state=seed)``: scikit-learn's
    ``LogisticRegressionCV`` on standardised features (``_logistic_cv``)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    classes = int(y.max()) + 1
    predicted = np.empty_like(y)
    chosen = []
    for fit, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        inner = min(INNER_FOLDS, int(np.bincount(y[fit]).min(initial=INNER_FOLDS)))
        scaler = StandardScaler().fit(x[fit])
        w, c = _logistic_cv(scaler.transform(x[fit]), y[fit], classes, max(inner, 2))
        # Predicted as LogisticRegressionCV predicts: a binary model's coefficients as a row.
        coef = w[None, :-1] if classes == 2 else w[:, :-1]
        predicted[held_out] = _predicted_classes(scaler.transform(x[held_out]), coef,
                                                 w[-1:] if classes == 2 else w[:, -1])
        chosen.append(float(c))
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
