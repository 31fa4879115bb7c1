"""Binary classification metrics of P(malignant) predictions (numpy, exact)."""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve by the Mann-Whitney U statistic, ties counted as 1/2.

    Args:
        labels: ``[N]`` 0/1.
        scores: ``[N]`` higher = more malignant.

    Returns:
        AUC in [0, 1], or None when one class is absent (the AUC is undefined).
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Average rank (1-based) over each run of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


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
    return {
        "accuracy": float((predicted == positive).mean()) if n else None,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "balanced_accuracy": balanced,
        "auc": roc_auc(labels, probabilities),
        "n": n,
    }
