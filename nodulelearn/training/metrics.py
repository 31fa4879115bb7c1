"""Binary classification metrics of P(malignant) predictions (numpy, exact)."""

from __future__ import annotations

import numpy as np

from nodulelearn.roc_auc import roc_auc

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n")


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
