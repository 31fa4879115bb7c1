"""Binary-classification metrics of P(malignant), shared by training's evaluation and the
sensitivity analysis (one AUC, one definition of sensitivity and specificity)."""

from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray | float:
    """Area under the ROC curve: P(score of a malignant > score of a benign), ties count 1/2.

    The rank-based (Mann-Whitney) estimate, vectorised over rows so that bootstrap resamples
    are scored in one call.

    Args:
        labels: 0/1 ``[n]``, or ``[r, n]`` (per-row labels, e.g. bootstrap resamples).
        scores: float ``[n]`` or ``[r, n]``; higher means more malignant.

    Returns:
        A float (1-D input) or an array ``[r]``; NaN where a row lacks one of the classes.
    """
    scores = np.asarray(scores, dtype=np.float64)
    squeeze = scores.ndim == 1
    scores = np.atleast_2d(scores)
    labels = np.broadcast_to(np.asarray(labels), scores.shape)
    out = np.full(scores.shape[0], np.nan)
    for row, (y, s) in enumerate(zip(labels, scores, strict=True)):
        pos, neg = s[y == 1], np.sort(s[y == 0])
        if pos.size == 0 or neg.size == 0:
            continue
        below = np.searchsorted(neg, pos, side="left")
        below_or_tied = np.searchsorted(neg, pos, side="right")
        wins = below.sum() + 0.5 * (below_or_tied - below).sum()
        out[row] = wins / (pos.size * neg.size)
    return float(out[0]) if squeeze else out


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray,
                   threshold: float = 0.5) -> dict[str, float | int | None]:
    """Accuracy, sensitivity, specificity, balanced accuracy and AUC at ``threshold``.

    Args:
        labels: ``[N]`` 0 (benign) / 1 (malignant).
        probabilities: ``[N]`` or ``[N, 1]`` P(malignant).
        threshold: predicted malignant when ``p >= threshold``.

    Returns:
        ``{"accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n"}``; a rate
        whose class is absent is None (balanced accuracy then too).
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if labels.shape != probabilities.shape:
        raise ValueError(f"Expected one probability per label. Received {labels.shape[0]} labels "
                         f"and {probabilities.shape[0]} probabilities.")
    predicted = probabilities >= threshold
    positive = labels == 1
    n = int(labels.size)
    sensitivity = float(predicted[positive].mean()) if positive.any() else None
    specificity = float((~predicted[~positive]).mean()) if (~positive).any() else None
    balanced = (None if sensitivity is None or specificity is None
                else (sensitivity + specificity) / 2.0)
    auc = roc_auc(labels, probabilities)
    return {
        "accuracy": float((predicted == positive).mean()) if n else None,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": balanced,
        "auc": None if np.isnan(auc) else auc,
        "n": n,
    }
