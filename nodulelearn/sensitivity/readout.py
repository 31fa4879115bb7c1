"""The encoding's linear read-outs: out-of-fold predictions of a mode from an embedding.

Both read-outs are scikit-learn estimators (public API only) on features standardised on the
fitting fold, their regularisation chosen by cross-validation inside it (``encoding``
describes the analysis):

- numeric modes: ``RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)``, the strength chosen
  per mode by the mean squared leave-one-out error (generalised cross-validation, the first
  best strength kept), one fit per fold for every numeric mode at once (one decomposition;
  the same strengths and, to rounding, predictions as one ``RidgeCV`` per mode, tested);
- categorical modes: ``LogisticRegressionCV`` (L-BFGS, class-balanced, the ``C`` of
  ``LOGISTIC_CS`` with the best balanced accuracy summed over ``INNER_FOLDS`` stratified folds,
  refitted from the folds' mean coefficients), scored by ``_balanced_accuracy_scorer``: the
  value of scikit-learn's ``"balanced_accuracy"`` scorer (the same float, so the same ``C``;
  tested) without its input checks, which took half of a fit's time on a 128-wide embedding
  (docs/performance.md).

Both are fitted under ``sklearn.config_context(assume_finite=True,
skip_parameter_validation=True)`` (scikit-learn >= 1.3): the embeddings are checked once by the
caller and the parameters are constants, so the thousands of inner calls skip those checks.
"""

from __future__ import annotations

import warnings

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


def _balanced_accuracy_scorer(estimator, x, y) -> float:
    """``LogisticRegressionCV``'s ``scoring``: the balanced accuracy of ``estimator``'s class
    predictions of ``x``, computed as ``LinearClassifierMixin.predict`` computes them (one
    product, then the sign or the argmax), without its per-call checks."""
    scores = x @ np.asarray(estimator.coef_).T + estimator.intercept_  # [n] binary, [n, K]
    binary = scores.ndim == 1 or scores.shape[1] == 1
    indices = (scores.reshape(len(x), -1)[:, 0] > 0).astype(int) if binary else \
        np.argmax(scores, axis=1)
    return _balanced_accuracy(y, estimator.classes_[indices])


def _quiet_fast():
    """The read-outs' context: no per-call finiteness or parameter checks (see the module
    docstring), and no warnings for weak fits that did not converge (the cross-validation
    still ranks them) nor for scikit-learn's announced changes of defaults that these
    read-outs set explicitly or do not use."""
    import contextlib

    import sklearn
    from sklearn.exceptions import ConvergenceWarning

    stack = contextlib.ExitStack()
    stack.enter_context(sklearn.config_context(assume_finite=True,
                                               skip_parameter_validation=True))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", FutureWarning)
    return stack


def logistic_out_of_fold(x: np.ndarray, y: np.ndarray, folds: int, seed: int):
    """Out-of-fold class predictions of ``y`` (classes ``0..K-1``) and the ``C`` chosen per fold,
    over ``StratifiedKFold(folds, shuffle=True, random_state=seed)``: scikit-learn's
    ``LogisticRegressionCV`` on standardised features (the module docstring)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty_like(y)
    chosen = []
    with _quiet_fast():
        for fit, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            inner = min(INNER_FOLDS, int(np.bincount(y[fit]).min(initial=INNER_FOLDS)))
            scaler = StandardScaler().fit(x[fit])
            head = LogisticRegressionCV(
                Cs=list(LOGISTIC_CS), cv=StratifiedKFold(max(inner, 2)), solver="lbfgs",
                class_weight="balanced", scoring=_balanced_accuracy_scorer, tol=LOGISTIC_TOL,
                max_iter=MAX_ITER).fit(scaler.transform(x[fit]), y[fit])
            predicted[held_out] = head.predict(scaler.transform(x[held_out]))
            chosen.append(float(np.ravel(head.C_)[0]))
    return predicted, chosen


def ridge_out_of_fold(x: np.ndarray, ys: np.ndarray, folds: int, seed: int):
    """Out-of-fold ridge predictions of every column of ``ys`` ``[n, targets]`` and the strength
    chosen per fold and target (``[targets][folds]``), over ``KFold(folds, shuffle=True,
    random_state=seed)`` (one split for every target: it does not depend on them)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty(ys.shape, np.float64)
    chosen = [[] for _ in range(ys.shape[1])]
    with _quiet_fast():
        for fit, held_out in KFold(folds, shuffle=True, random_state=seed).split(x):
            scaler = StandardScaler().fit(x[fit])
            head = RidgeCV(alphas=list(RIDGE_ALPHAS), alpha_per_target=True, gcv_mode="svd")
            head.fit(scaler.transform(x[fit]), ys[fit])
            # [m, targets]; [m] for one target (scikit-learn drops a single column)
            predicted[held_out] = head.predict(scaler.transform(x[held_out])).reshape(
                len(held_out), -1)
            for target, alpha in enumerate(np.broadcast_to(head.alpha_, ys.shape[1])):
                chosen[target].append(float(alpha))
    return predicted, chosen
