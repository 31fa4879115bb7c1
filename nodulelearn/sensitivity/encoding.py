"""Linear decodability of each mode from a frozen embedding.

A mode the encoder represents (linearly) can be read off the embedding by a linear model fitted
on half of the test samples and scored on the other half: held-out accuracy against chance (the
majority category of the fitting half) for categorical modes, held-out R^2 for numeric ones.
Fits are small and exact, in numpy: ridge regression in closed form, and the (convex)
L2-regularised softmax regression by Newton's method, which, unlike plain gradient descent,
needs no step size tuned to how correlated the embedding's dimensions are.
"""

from __future__ import annotations

import numpy as np

from nodulelearn.datasets import MODE_NAMES, get_mode
from nodulelearn.sensitivity.permutation import mode_varies

RIDGE = 1e-3
NEWTON_STEPS = 25


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)  # constant features carry nothing; keep them finite
    return (train - mean) / std, (test - mean) / std


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


def ridge_r2(x_train, y_train, x_test, y_test, ridge: float = RIDGE) -> float:
    """Held-out R^2 of a ridge regression ``y ~ x`` (features standardised, bias unpenalised)."""
    x_train, x_test = map(_with_bias, _standardise(x_train, x_test))
    penalty = ridge * x_train.shape[0] * np.eye(x_train.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(x_train.T @ x_train + penalty, x_train.T @ y_train)
    residual = y_test - x_test @ weights
    total = np.sum((y_test - y_test.mean()) ** 2)
    return float(1.0 - np.sum(residual**2) / total) if total > 0 else float("nan")


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _softmax_penalty(dim: int, classes: int, ridge: float) -> np.ndarray:
    """Per-parameter L2 weights, parameters ordered class by class; the bias (last feature) is
    unpenalised up to a tiny jitter that removes the softmax's shift redundancy."""
    penalty = np.full(dim, ridge)
    penalty[-1] = 1e-6
    return np.tile(penalty, classes)


def softmax_gradient(x, y, weights, ridge: float = RIDGE) -> np.ndarray:
    """Gradient ``[dim, classes]`` of mean cross-entropy + L2 penalty at ``weights``."""
    p = _softmax(x @ weights)
    grad = x.T @ (p - np.eye(weights.shape[1])[y]) / x.shape[0]
    penalty = _softmax_penalty(*weights.shape, ridge).reshape(weights.shape[1], -1).T
    return grad + penalty * weights


def fit_softmax(x, y, classes: int, ridge: float = RIDGE) -> np.ndarray:
    """Weights ``[dim, classes]`` of an L2-regularised softmax regression, by Newton's method.

    Args:
        x: float ``[n, dim]`` features (bias column included).
        y: int ``[n]`` classes in ``0 .. classes - 1``.
        classes: number of classes.
        ridge: L2 weight of the penalty ``ridge / 2 * |W|^2``.

    Returns:
        The minimiser of mean cross-entropy + penalty (a convex problem).
    """
    n, dim = x.shape
    penalty = _softmax_penalty(dim, classes, ridge)
    weights = np.zeros((dim, classes))
    for _ in range(NEWTON_STEPS):
        p = _softmax(x @ weights)
        grad = softmax_gradient(x, y, weights, ridge).T.reshape(-1)
        hessian = np.empty((classes * dim, classes * dim))
        for k in range(classes):
            for j in range(k, classes):
                w = p[:, k] * ((k == j) - p[:, j])
                block = (x * w[:, None]).T @ x / n
                hessian[k * dim : (k + 1) * dim, j * dim : (j + 1) * dim] = block
                hessian[j * dim : (j + 1) * dim, k * dim : (k + 1) * dim] = block
        step = np.linalg.solve(hessian + np.diag(penalty), grad)
        weights -= step.reshape(classes, dim).T
        if np.abs(step).max() < 1e-9:
            break
    return weights


def softmax_accuracy(x_train, y_train, x_test, y_test, classes: int, ridge: float = RIDGE) -> float:
    """Held-out accuracy of an L2-regularised softmax regression on standardised features."""
    x_train, x_test = map(_with_bias, _standardise(x_train, x_test))
    weights = fit_softmax(x_train, y_train, classes, ridge)
    return float(np.mean(np.argmax(x_test @ weights, axis=1) == y_test))


def decodability(embeddings: np.ndarray, factors, *, seed: int, modes=None) -> list[dict]:
    """How well a linear model reads each mode off ``embeddings``.

    Args:
        embeddings: float ``[n, D]`` embeddings of the test images (frozen encoder).
        factors: the ``Factors`` the images were rendered from.
        seed: fixes the split into fitting and held-out halves.
        modes: modes to decode (default all eight).

    Returns:
        One record per mode: ``mode``, ``kind``, ``varies``, ``metric`` ("accuracy" or "r2"),
        ``score`` (held-out), ``chance`` (majority-class accuracy; 0 for R^2), ``n_fit``,
        ``n_test``. Scores are ``None`` for a mode that does not vary in the test set.
    """
    x = np.asarray(embeddings, dtype=np.float64).reshape(len(factors), -1)
    order = np.random.default_rng([seed, 0xDEC0]).permutation(len(factors))
    fit, test = order[: len(order) // 2], order[len(order) // 2 :]
    records = []
    for mode in MODE_NAMES if modes is None else modes:
        info = get_mode(mode)
        y = np.asarray(factors.values[mode], dtype=np.float64)
        record = {
            "mode": mode,
            "kind": info.kind,
            "varies": mode_varies(y),
            "metric": "accuracy" if info.is_categorical else "r2",
            "score": None,
            "chance": None,
            "n_fit": int(fit.size),
            "n_test": int(test.size),
        }
        if record["varies"] and fit.size >= 2 and test.size >= 2:
            if info.is_categorical:
                y_int = np.rint(y).astype(int)
                counts = np.bincount(y_int[fit], minlength=len(info.categories))
                record["chance"] = float(np.mean(y_int[test] == np.argmax(counts)))
                record["score"] = softmax_accuracy(
                    x[fit], y_int[fit], x[test], y_int[test], len(info.categories)
                )
            else:
                record["chance"] = 0.0
                score = ridge_r2(x[fit], y[fit], x[test], y[test])
                record["score"] = None if np.isnan(score) else score
        records.append(record)
    return records
