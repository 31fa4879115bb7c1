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
    """Accuracy, AUC, sensitivity, specificity, balanced accuracy and mean P of one test set.

    Args:
        labels: int ``[n]``.
        probs: float ``[n]``.

    Returns:
        A JSON-able dict; sensitivity / specificity are ``None`` when a class is absent.
    """
    labels = np.asarray(labels)
    return {
        **binary_metrics(labels, probs, threshold=THRESHOLD),
        "mean_p": float(np.mean(probs)),
        "malignant_fraction": float(np.mean(labels == 1)),
    }
