"""Recoverability: is what an OOD set needs still in the frozen embedding? (Last-layer retraining.)

For an OOD distribution, the encoder is frozen and only a linear head is refitted on a small
labelled sample of that distribution (Kirichenko, Izmailov & Wilson 2022, "Last layer
re-training is sufficient for robustness to spurious correlations"); its accuracy on a separate
test sample of the same distribution is set beside the original head's accuracy there. A large
gain means the model learned the feature the OOD set needs but its head does not use it; no
gain at chance means the feature was not learned.

The head is an L2-regularised logistic regression on standardised embeddings, its strength
chosen by cross-validation on the fitting sample (scikit-learn's ``LogisticRegressionCV``).
Fitting and test samples come from different seeds (``seed + FIT_SEED_OFFSET`` and
``seed + TEST_SEED_OFFSET``), so no image is in both. Accuracies have Wilson 95% intervals,
AUCs DeLong's; the gain (retrained - original, on the same test images) has a paired
percentile-bootstrap interval.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from nodulelearn.binary_metrics import roc_auc
from nodulelearn.datasets import sample_factors
from nodulelearn.sensitivity.intervals import LEVEL, delong_interval, interval, wilson_interval
from nodulelearn.sensitivity.metrics import predicted_labels
from nodulelearn.sensitivity.untrained import gain_over_baseline

logger = logging.getLogger(__name__)

FIT_N = 512  # "a small labelled sample": well under the training set, several per dimension
CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
INNER_FOLDS = 5
BOOTSTRAP = 1000
FIT_SEED_OFFSET = 8_000_009
TEST_SEED_OFFSET = 8_000_011

FIELDS = (
    "distribution", "original_accuracy", "original_accuracy_ci_low", "original_accuracy_ci_high",
    "retrained_accuracy", "retrained_accuracy_ci_low", "retrained_accuracy_ci_high",
    "gain", "gain_ci_low", "gain_ci_high",
    "baseline_accuracy", "gain_over_baseline", "gain_over_baseline_ci_low",
    "gain_over_baseline_ci_high",
    "original_auc", "original_auc_ci_low", "original_auc_ci_high",
    "retrained_auc", "retrained_auc_ci_low", "retrained_auc_ci_high",
    "n_fit", "n_test", "regularization",
)


def fit_linear_head(embeddings: np.ndarray, labels: np.ndarray, *, seed: int):
    """A cross-validated logistic-regression head on standardised ``embeddings``.

    Raises:
        ValueError: the fitting sample lacks a class, or has too few of one for the CV.
    """
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 2:
        raise ValueError(f"Expected both classes in the fitting sample (at least 2 each) to "
                         f"refit the head. Received {counts[0]} benign and {counts[1]} malignant.")
    folds = StratifiedKFold(min(INNER_FOLDS, int(counts.min())), shuffle=True, random_state=seed)
    head = make_pipeline(StandardScaler(),
                         LogisticRegressionCV(Cs=list(CS), cv=folds, max_iter=1000))
    with warnings.catch_warnings(), threadpool_limits(1):  # one BLAS thread: see encoding.py
        warnings.simplefilter("ignore")  # weak fits may stop early; the CV still ranks them
        head.fit(np.asarray(embeddings, np.float64).reshape(len(labels), -1), labels)
    return head


def _accuracy_fields(prefix: str, labels: np.ndarray, probs: np.ndarray) -> dict:
    correct = int(np.sum(predicted_labels(probs) == labels))
    low, high = wilson_interval(correct, labels.size)
    auc = roc_auc(labels, probs)
    auc_low, auc_high = delong_interval(labels, probs)
    return {
        f"{prefix}_accuracy": correct / labels.size,
        f"{prefix}_accuracy_ci_low": low,
        f"{prefix}_accuracy_ci_high": high,
        f"{prefix}_auc": None if np.isnan(auc) else float(auc),
        f"{prefix}_auc_ci_low": auc_low,
        f"{prefix}_auc_ci_high": auc_high,
    }


def recoverability(predict, encode, spec, *, seed: int, n_test: int, n_fit: int = FIT_N,
                   bootstrap: int = BOOTSTRAP, baseline_accuracies=None) -> dict:
    """Original versus last-layer-retrained accuracy of one model on one distribution.

    Args:
        predict: ``factors -> P(malignant) [n]`` of the original classifier (a
            ``Predictor.predict``).
        encode: ``factors -> embeddings [n, D]`` of its frozen encoder.
        spec: the (OOD) ``DistributionSpec``, at the model's image size.
        seed: the analysis seed (fitting and test samples use offsets of it).
        n_test: test samples, scored by both heads.
        n_fit: labelled samples the head is refitted on.
        bootstrap: draws of the paired interval of the gain.
        baseline_accuracies: the untrained encoders' retrained accuracies on the same samples
            (``untrained.recoverability_reference``); ``None``: the baseline fields are ``None``.

    Returns:
        A record with the fields of ``FIELDS``: ``distribution``, ``original_accuracy`` and
        ``retrained_accuracy`` with ``_ci_low`` / ``_ci_high`` (Wilson), ``gain`` (paired
        bootstrap interval), both AUCs (DeLong), ``n_fit``, ``n_test``, ``regularization``
        (the chosen C, inverse L2 strength).
    """
    if n_fit < 4 or n_test < 2:
        raise ValueError(f"Expected n_fit >= 4 and n_test >= 2. Received: n_fit={n_fit}, "
                         f"n_test={n_test}")
    fit = sample_factors(spec, n_fit, seed + FIT_SEED_OFFSET)
    test = sample_factors(spec, n_test, seed + TEST_SEED_OFFSET)
    head = fit_linear_head(encode(fit), fit.labels, seed=seed)
    labels = np.asarray(test.labels).astype(int)
    original = np.asarray(predict(test), np.float64)
    retrained = head.predict_proba(np.asarray(encode(test), np.float64).reshape(n_test, -1))[:, 1]
    record = {"distribution": spec.name}
    record.update(_accuracy_fields("original", labels, original))
    record.update(_accuracy_fields("retrained", labels, retrained))
    record["gain"] = record["retrained_accuracy"] - record["original_accuracy"]
    gains = (predicted_labels(retrained) == labels).astype(float) - (
        predicted_labels(original) == labels)
    rows = np.random.default_rng([seed, 0x4EC0]).integers(0, n_test, size=(bootstrap, n_test))
    record["gain_ci_low"], record["gain_ci_high"] = interval(gains[rows].mean(axis=1), LEVEL)
    record.update(gain_over_baseline(record["retrained_accuracy"], n_test, baseline_accuracies))
    record["n_fit"], record["n_test"] = int(n_fit), int(n_test)
    record["regularization"] = float(np.ravel(head[-1].C_)[0])
    logger.info("recoverability on %s: original %.3f, retrained %.3f", spec.name,
                record["original_accuracy"], record["retrained_accuracy"])
    return {key: record[key] for key in FIELDS}
