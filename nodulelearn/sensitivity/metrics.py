"""Binary-classification metrics on P(malignant), in numpy, vectorised over rows.

Every function accepts probabilities of shape ``[n]`` or ``[r, n]`` (``r`` rows scored against the
same labels, e.g. bootstrap resamples) and returns a float or an array ``[r]``. AUC is the
rank-based (Mann-Whitney) estimate with ties counted as one half, the same everywhere in the
analysis, so that baseline and permuted AUCs are comparable.
"""

from __future__ import annotations

import numpy as np

from nodulelearn.roc_auc import roc_auc as auc

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
    pred = predicted_labels(probs)
    pos, neg = labels == 1, labels == 0
    sens = float(np.mean(pred[pos] == 1)) if pos.any() else None
    spec = float(np.mean(pred[neg] == 0)) if neg.any() else None
    auc_value = auc(labels, probs)
    return {
        "n": int(labels.size),
        "accuracy": float(accuracy(labels, probs)),
        "auc": None if np.isnan(auc_value) else float(auc_value),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": None if sens is None or spec is None else (sens + spec) / 2,
        "mean_p": float(np.mean(probs)),
        "malignant_fraction": float(np.mean(labels == 1)),
    }
