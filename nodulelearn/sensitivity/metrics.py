"""Thresholded predictions and the baseline metrics of the sensitivity analysis.

``accuracy`` is vectorised over rows (``[r, n]``, e.g. bootstrap resamples), like
``nodulelearn.binary_metrics.roc_auc``, the one AUC used everywhere in the analysis so that
baseline and permuted AUCs are comparable.
"""

from __future__ import annotations

import numpy as np

from nodulelearn.binary_metrics import binary_metrics

THRESHOLD = 0.5  # a prediction is "malignant" when P(malignant) >= THRESHOLD


def predicted_labels(probs: np.ndarray) -> np.ndarray:
    """Thresholded predictions (int8, 1 = malignant), same shape as ``probs``."""
    return (np.asarray(probs) >= THRESHOLD).astype(np.int8)


def accuracy(labels: np.ndarray, probs: np.ndarray) -> np.ndarray | float:
    """Fraction of thresholded predictions equal to ``labels``.

    Args:
        labels: int ``[n]`` (0 benign, 1 malignant), or ``[r, n]`` matching ``probs``.
        probs: float ``[n]`` or ``[r, n]``.

    Returns:
        A float for 1-D input, else an array ``[r]``.
    """
    return np.mean(predicted_labels(probs) == np.asarray(labels), axis=-1)


def baseline_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, AUC, sensitivity, specificity, balanced accuracy and mean P of one test set,
    with 95% intervals of the accuracy (Wilson) and of the AUC (DeLong).

    Args:
        labels: int ``[n]``.
        probs: float ``[n]``.

    Returns:
        A JSON-able dict; sensitivity / specificity (and the AUC and its interval) are ``None``
        when a class is absent.
    """
    from nodulelearn.sensitivity.intervals import delong_interval, wilson_interval

    labels = np.asarray(labels)
    correct = int(np.sum(predicted_labels(probs) == labels))
    accuracy_ci = wilson_interval(correct, labels.size) if labels.size else (None, None)
    auc_ci = delong_interval(labels, probs)
    return {
        **binary_metrics(labels, probs, threshold=THRESHOLD),
        "accuracy_ci_low": accuracy_ci[0],
        "accuracy_ci_high": accuracy_ci[1],
        "auc_ci_low": auc_ci[0],
        "auc_ci_high": auc_ci[1],
        "mean_p": float(np.mean(probs)),
        "malignant_fraction": float(np.mean(labels == 1)),
    }
