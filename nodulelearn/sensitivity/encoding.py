"""Encoding: how well each mode can be read linearly off a frozen embedding.

What a model *encodes* is measured apart from what it *relies on* (the permutation analysis):
a linear read-out of each mode from the embedding, on a distribution where every mode is
independent of the label and of the others (``encoding_distribution``: the training
distribution with every alignment set to 0, its looks and pinned modes kept). On the training
distribution itself a mode "decodes" through whatever it is correlated with: on
a correlated preset, margin reads well above chance from an embedding that holds only size and
noise (``tests/sensitivity/test_oracles.py`` plants one and checks it).

The read-out (``readout``) is cross-validated twice:
- outer: ``folds``-fold (stratified for categorical modes); every sample is predicted once, by
  a model fitted without it, and the score is computed over these out-of-fold predictions;
- inner: each read-out is regularised inside each fitting fold, in closed form: shrinkage
  linear discriminant analysis for categories (equal class priors, the covariance shrunk by
  the Ledoit-Wolf intensity of the within-class deviations), ``RidgeCV``'s leave-one-out choice
  of strength for numbers (every numeric mode from one decomposition per fold), features
  standardised on the fitting fold (``readout``).

Scores: balanced accuracy for categorical modes, R^2 for numeric ones (sizes, counts). The
``normalized`` score is comparable across modes, in [0, 1]: (balanced accuracy - chance) /
(1 - chance) with chance = 1 / (classes present), or R^2, both floored at 0. The 95% intervals
are percentile intervals over bootstrap resamples of the out-of-fold predictions (they carry
the test-sample uncertainty, not the refit uncertainty).

Sample size: a linear read-out of a ``D``-wide embedding needs many more samples than ``D``;
``encoding_sample_size`` asks for ``SAMPLES_PER_DIMENSION`` (20) per embedding dimension, at
least ``MIN_SAMPLES`` (1000): 2,560 for the default 128-wide embedding.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import numpy as np

from nodulelearn.datasets import MODE_NAMES, decorrelated, get_mode, load_spec, sample_factors
from nodulelearn.sensitivity.intervals import LEVEL, interval
from nodulelearn.sensitivity.readout import (
    ALPHA_NAME,
    READOUT,
    SHRINKAGE_NAME,
    discriminant_out_of_fold,
    ridge_out_of_fold,
)

logger = logging.getLogger(__name__)

SAMPLES_PER_DIMENSION = 20
MIN_SAMPLES = 1000
FOLDS = 5
BOOTSTRAP = 1000
# Seed offset of the encoding sample: never the noise seeds of the training or test images.
ENCODING_SEED_OFFSET = 7_000_003


def encoding_sample_size(embedding_dim: int) -> int:
    """Samples for the encoding read-out of a ``embedding_dim``-wide embedding (module doc)."""
    if embedding_dim < 1:
        raise ValueError(f"Expected a positive embedding width. Received: {embedding_dim}")
    return max(MIN_SAMPLES, SAMPLES_PER_DIMENSION * int(embedding_dim))


def encoding_distribution(spec):
    """The decorrelated version of ``spec`` (``nodulelearn.datasets.decorrelated``): every
    alignment 0, looks and pinned modes kept, named ``<name>_independent``.

    Every mode is then drawn independently of the label and of the others (each from a 50/50
    mix of its benign and malignant looks), so a read-out of one mode cannot lean on another.
    """
    return decorrelated(load_spec(spec))


def _bootstrap_indices(n: int, draws: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xE4C0]).integers(0, n, size=(draws, n))


def _draw_counts(n: int, draws: int, seed: int) -> np.ndarray:
    """How often each sample is drawn in each bootstrap resample (``_bootstrap_indices``):
    ``[draws, n]``, as floats so that every per-draw sum is one product (exact for counts)."""
    rows = _bootstrap_indices(n, draws, seed)
    flat = (rows + n * np.arange(draws)[:, None]).ravel()
    return np.bincount(flat, minlength=draws * n).reshape(draws, n).astype(np.float64)


def _drawn_balanced_accuracy(y, predicted, classes, counts):
    """Accuracy and ``balanced_accuracy`` of each bootstrap draw (``counts``: ``_draw_counts``),
    from per-draw counts of each class' members and hits: the same integers, so the same
    numbers, as gathering every resample."""
    per = counts @ np.eye(2 * classes.size)[2 * y + (predicted == y)]  # [draws, 2 x classes]
    count, hits = per[:, 0::2] + per[:, 1::2], per[:, 1::2]
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
    return hits.sum(axis=1) / y.size, np.nanmean(recalls.T, axis=0)


def _drawn_r_squared(y, predicted, counts):
    """``r_squared`` of each bootstrap draw from per-draw weighted sums (equal to gathering
    every resample up to rounding)."""
    centred = y - y.mean()  # fewer digits lost in sum(y^2) - sum(y)^2 / n
    sums = counts @ np.stack([centred, centred**2, (y - predicted) ** 2], axis=1)
    total = sums[:, 1] - sums[:, 0] ** 2 / y.size
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - sums[:, 2] / np.where(total > 0, total, 1.0), np.nan)


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Mean per-class recall over ``classes``, vectorised over leading rows (``[..., n]``).

    A class absent from a row (possible in a bootstrap resample) is left out of that row's mean.
    """
    recalls = []
    for c in classes:
        members = y == c
        count = members.sum(axis=-1)
        hits = (members & (predicted == c)).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(count > 0, hits / np.maximum(count, 1), np.nan))
    return np.nanmean(np.stack(recalls), axis=0)


def r_squared(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """1 - SS_res / SS_tot over the last axis (NaN where ``y`` is constant)."""
    total = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    residual = np.sum((y - predicted) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.nan)


def _floor(values):
    return np.maximum(values, 0.0)


def _record(mode, y) -> dict:
    info = get_mode(mode)
    return {
        "mode": mode,
        "kind": info.kind,
        "varies": bool(y.size > 1 and np.any(y != y[0])),
        "metric": "accuracy" if info.is_categorical else "r2",
        "score": None,
        "score_ci_low": None,
        "score_ci_high": None,
        "chance": None,
        "balanced_accuracy": None,
        "balanced_chance": None,
        "normalized": None,
        "normalized_ci_low": None,
        "normalized_ci_high": None,
        "normalized_se": None,
        "regularization": None,
        "regularization_name": None,
        "n_fit": None,
        "n_test": int(y.size),
        "folds": None,
    }


def _target(mode, y, folds: int):
    """``(y, k_folds)`` as the read-out takes them (classes as ``0..K-1`` for a categorical mode;
    fewer folds where a class has fewer samples), ``k_folds`` < 2 where it cannot be scored."""
    if get_mode(mode).is_categorical:
        y = np.rint(y).astype(int)
        _, y = np.unique(y, return_inverse=True)  # classes present, as 0..K-1
        return y, min(folds, int(np.bincount(y).min()))
    return y.astype(np.float64), min(folds, y.size)


def _score(record, y, predicted, chosen, k_folds: int, counts: np.ndarray) -> dict:
    """Fills ``record``'s scores and bootstrap intervals (``counts``: ``_draw_counts``) from
    out-of-fold ``predicted``."""
    categorical = record["metric"] == "accuracy"
    if categorical:
        classes = np.unique(y)
        chance = 1.0 / classes.size
        accuracy = float(np.mean(predicted == y))
        balanced = float(balanced_accuracy(y, predicted, classes))
        draws_accuracy, draws_balanced = _drawn_balanced_accuracy(y, predicted, classes, counts)
        record.update(
            score=accuracy,
            chance=float(np.bincount(y).max() / y.size),  # majority class: accuracy's chance
            balanced_accuracy=balanced,
            balanced_chance=chance,
            normalized=float(_floor((balanced - chance) / (1 - chance))),
        )
        draws_normalized = _floor((draws_balanced - chance) / (1 - chance))
        draws_score = draws_accuracy
    else:
        score = float(r_squared(y, predicted))
        record.update(score=score, chance=0.0, normalized=float(_floor(score)))
        draws_score = _drawn_r_squared(y, predicted, counts)
        draws_normalized = _floor(draws_score)
    record["score_ci_low"], record["score_ci_high"] = interval(draws_score, LEVEL)
    record["normalized_ci_low"], record["normalized_ci_high"] = interval(draws_normalized, LEVEL)
    # The bootstrap standard error: the test-sample part of the change interval (untrained.py).
    record["normalized_se"] = float(np.nanstd(draws_normalized, ddof=1))
    record["regularization"] = float(np.median(chosen))
    record["regularization_name"] = SHRINKAGE_NAME if categorical else ALPHA_NAME
    record["n_fit"] = int(y.size - y.size // k_folds)
    record["folds"] = int(k_folds)
    return record


def _records(x, values: dict, *, folds, bootstrap, seed) -> list[dict]:
    """One record per mode of ``values`` (mode -> its values); the numeric modes share one ridge
    read-out per fold (their folds do not depend on the mode), each categorical mode gets its
    own (stratified folds)."""
    records, targets, numeric = [], {}, []
    for mode, y in values.items():
        records.append(_record(mode, y))
        if not records[-1]["varies"]:
            continue
        targets[mode] = _target(mode, y, folds)
        if targets[mode][1] < 2:
            logger.warning("encoding of %s: a class has fewer than 2 samples; not scored", mode)
            del targets[mode]
        elif not get_mode(mode).is_categorical:
            numeric.append(mode)
    fits = {}
    if numeric:
        predicted, chosen = ridge_out_of_fold(
            x, np.stack([targets[m][0] for m in numeric], axis=1), targets[numeric[0]][1], seed)
        fits = {m: (predicted[:, i], chosen[i]) for i, m in enumerate(numeric)}
    counts = _draw_counts(x.shape[0], bootstrap, seed) if targets else None
    for record in records:
        if record["mode"] not in targets:
            continue
        y, k_folds = targets[record["mode"]]
        fit = fits.get(record["mode"]) or discriminant_out_of_fold(x, y, k_folds, seed)
        _score(record, y, *fit, k_folds, counts)
    return records


def decodability(embeddings, factors, *, seed: int, modes=None, folds: int = FOLDS,
                 bootstrap: int = BOOTSTRAP) -> list[dict]:
    """How well a cross-validated linear model reads each mode off ``embeddings``.

    Args:
        embeddings: float ``[n, D]`` embeddings of the images rendered from ``factors``.
        factors: the ``Factors`` the images were rendered from (best drawn from an
            ``encoding_distribution``, with ``encoding_sample_size(D)`` samples).
        seed: fixes the folds and the bootstrap.
        modes: modes to decode (default all eight).
        folds: outer cross-validation folds (fewer when a class has fewer samples).
        bootstrap: bootstrap draws of the 95% intervals.

    Returns:
        One record per mode: ``mode``, ``kind``, ``varies``, ``metric`` ("accuracy" or "r2"),
        ``score`` (out-of-fold accuracy or R^2) with ``score_ci_low`` / ``score_ci_high``,
        ``chance`` (majority-class accuracy; 0 for R^2), ``balanced_accuracy`` and
        ``balanced_chance`` (categorical), ``normalized`` in [0, 1] with
        ``normalized_ci_low`` / ``normalized_ci_high`` and ``normalized_se`` (standard deviation
        of its bootstrap draws), ``regularization`` (the median over
        folds of the ridge's chosen strength or the discriminant's shrinkage) and
        ``regularization_name``, ``n_fit`` (samples per fitting fold),
        ``n_test`` (samples scored out of fold: all), ``folds``. Scores are ``None`` for a mode
        that does not vary.
    """
    if folds < 2 or bootstrap < 10:
        raise ValueError(f"Expected folds >= 2 and bootstrap >= 10. Received: folds={folds}, "
                         f"bootstrap={bootstrap}")
    x = np.asarray(embeddings, dtype=np.float64).reshape(len(factors), -1)
    if not np.isfinite(x).all():
        raise ValueError(f"The embeddings hold {np.count_nonzero(~np.isfinite(x))} non-finite "
                         "values (NaN or inf); expected finite embeddings from the encoder.")
    values = {mode: np.asarray(factors.values[mode], dtype=np.float64)
              for mode in (MODE_NAMES if modes is None else modes)}
    import sklearn

    # The embeddings were checked above and the read-outs' parameters are constants: scikit-learn
    # need not check them again in each of the read-outs' thousands of calls (10% of their time).
    with one_blas_thread(), sklearn.config_context(assume_finite=True,
                                                   skip_parameter_validation=True):
        return _records(x, values, folds=folds, bootstrap=bootstrap, seed=seed)


_BLAS = threading.local()


@contextlib.contextmanager
def one_blas_thread():
    """One BLAS thread for the read-outs inside: their fits are small, and several threads per
    process thrash when other processes (TensorFlow, a second shard) share the cores
    (bench/bench_encoding.py). Re-entrant, so that a caller reading many embeddings sets it once:
    each ``threadpool_limits`` scans the loaded libraries (14 ms, more than a ridge fit)."""
    depth = getattr(_BLAS, "depth", 0)
    _BLAS.depth = depth + 1
    try:
        if depth:
            yield
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(1):
                yield
    finally:
        _BLAS.depth = depth


def measure_encoding(encode, spec, *, seed: int, embedding_dim: int, n: int | None = None,
                     modes=None, folds: int = FOLDS, bootstrap: int = BOOTSTRAP) -> dict:
    """Encoding of every mode on ``spec`` (as given: pass an ``encoding_distribution``).

    Args:
        encode: ``factors -> embeddings [n, D]`` (e.g. ``BatchedRenderer(fn=encoder).apply``).
        spec: the ``DistributionSpec`` to sample from, at the encoder's image size.
        seed: the run's seed; the sample uses ``seed + ENCODING_SEED_OFFSET``.
        embedding_dim: ``D``, for the default sample size.
        n: samples (default ``encoding_sample_size(embedding_dim)``).
        modes, folds, bootstrap: see ``decodability``.

    Returns:
        The content of ``decodability.json``: ``distribution``, ``readout``
        (``readout.READOUT``), ``embedding_dim``, ``n``,
        ``seed``, ``sample_size_rule``, ``interval``, ``seconds`` and ``modes`` (records).
    """
    started = time.perf_counter()
    n = encoding_sample_size(embedding_dim) if n is None else int(n)
    if n < 2 * folds:
        raise ValueError(f"Expected at least {2 * folds} encoding samples for {folds} folds. "
                         f"Received: n={n}")
    factors = sample_factors(spec, n, seed + ENCODING_SEED_OFFSET)
    embeddings = encode(factors)
    records = decodability(embeddings, factors, seed=seed, modes=modes, folds=folds,
                           bootstrap=bootstrap)
    for record in records:
        logger.info("encoding of %s: normalized %s", record["mode"], record["normalized"])
    return {
        "distribution": spec.name,
        "readout": READOUT,
        "embedding_dim": int(np.prod(np.shape(embeddings)[1:])),
        "n": n,
        "seed": seed,
        "sample_size_rule": f"max({MIN_SAMPLES}, {SAMPLES_PER_DIMENSION} x embedding_dim)",
        "interval": f"{LEVEL:.0%} percentile bootstrap of out-of-fold predictions "
                    f"({bootstrap} draws)",
        "modes": records,
        "seconds": time.perf_counter() - started,
    }
