"""Linear decodability of each mode from a frozen embedding.

A mode the encoder represents (linearly) can be read off the embedding by a linear model fitted
on half of the test samples and scored on the other half: held-out accuracy against chance (the
majority category of the fitting half) for categorical modes, held-out R^2 for numeric ones.
Fits are small, closed-form or a few hundred full-batch gradient steps, in numpy.
"""

from __future__ import annotations

import numpy as np

from nodulelearn.datasets import MODE_NAMES, get_mode
from nodulelearn.sensitivity.permutation import mode_varies

RIDGE = 1e-2
STEPS = 300
LEARNING_RATE = 0.5


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


def softmax_accuracy(x_train, y_train, x_test, y_test, classes: int, ridge: float = RIDGE) -> float:
    """Held-out accuracy of an L2-regularised multinomial logistic regression."""
    x_train, x_test = map(_with_bias, _standardise(x_train, x_test))
    onehot = np.eye(classes)[y_train]
    weights = np.zeros((x_train.shape[1], classes))
    for _ in range(STEPS):
        logits = x_train @ weights
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = x_train.T @ (p - onehot) / x_train.shape[0] + ridge * weights
        weights -= LEARNING_RATE * grad
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
