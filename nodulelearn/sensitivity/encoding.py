"""Encoding: how well each mode can be read linearly off a frozen embedding.

What a model *encodes* is measured apart from what it *relies on* (the permutation analysis):
a linear read-out of each mode from the embedding, on a distribution where every mode is
independent of the label and of the others (``encoding_distribution``: the training
distribution with every alignment set to 0, its looks and pinned modes kept). On the training
distribution itself a mode "decodes" through whatever it is correlated with: on
a correlated preset, margin reads well above chance from an embedding that holds only size and
noise (``tests/sensitivity/test_oracles.py`` plants one and checks it).

The read-out is scikit-learn's, cross-validated twice:
- outer: ``folds``-fold (stratified for categorical modes); every sample is predicted once, by
  a model fitted without it, and the score is computed over these out-of-fold predictions;
- inner: the regularisation strength is chosen by cross-validation inside each fitting fold
  (``LogisticRegressionCV`` for categories, with balanced class weights and balanced accuracy
  as the selection score, like the reported score; ``RidgeCV`` for numbers), features
  standardised on the fitting fold.

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

import logging
import time
import warnings

import numpy as np

from nodulelearn.datasets import MODE_NAMES, decorrelated, get_mode, load_spec, sample_factors
from nodulelearn.sensitivity.intervals import LEVEL, interval

logger = logging.getLogger(__name__)

SAMPLES_PER_DIMENSION = 20
MIN_SAMPLES = 1000
FOLDS = 5
INNER_FOLDS = 3
BOOTSTRAP = 1000
# Inverse L2 strengths (logistic) and L2 strengths (ridge), on standardised features.
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
LOGISTIC_TOL = 1e-3  # 3x faster than scikit-learn's 1e-4 on trained embeddings, same read-out
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


def _out_of_fold(x, y, categorical: bool, folds: int, seed: int):
    """Out-of-fold predictions and the regularisation chosen in each fold."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if categorical:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        predicted = np.empty_like(y)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
        predicted = np.empty(y.shape, np.float64)
    chosen = []
    for fit, held_out in splitter.split(x, y):
        if categorical:
            inner = min(INNER_FOLDS, int(np.bincount(y[fit]).min(initial=INNER_FOLDS)))
            head = LogisticRegressionCV(
                Cs=list(LOGISTIC_CS), cv=max(inner, 2), max_iter=1000, tol=LOGISTIC_TOL,
                class_weight="balanced", scoring="balanced_accuracy")
        else:
            head = RidgeCV(alphas=list(RIDGE_ALPHAS))
        model = make_pipeline(StandardScaler(), head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-converged weak fits: the CV still ranks them
            model.fit(x[fit], y[fit])
        predicted[held_out] = model.predict(x[held_out])
        chosen.append(float(np.ravel(head.C_)[0]) if categorical else float(head.alpha_))
    return predicted, chosen


def _mode_record(mode, x, y, *, folds, bootstrap, seed) -> dict:
    info = get_mode(mode)
    record = {
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
    if not record["varies"]:
        return record
    if info.is_categorical:
        y = np.rint(y).astype(int)
        _, y = np.unique(y, return_inverse=True)  # classes present, as 0..K-1
        k_folds = min(folds, int(np.bincount(y).min()))
    else:
        y = y.astype(np.float64)
        k_folds = min(folds, y.size)
    if k_folds < 2:
        logger.warning("encoding of %s: a class has fewer than 2 samples; not scored", mode)
        return record
    predicted, chosen = _out_of_fold(x, y, info.is_categorical, k_folds, seed)
    rows = _bootstrap_indices(y.size, bootstrap, seed)
    if info.is_categorical:
        classes = np.unique(y)
        chance = 1.0 / classes.size
        accuracy = float(np.mean(predicted == y))
        balanced = float(balanced_accuracy(y, predicted, classes))
        draws_accuracy = np.mean(predicted[rows] == y[rows], axis=-1)
        draws_balanced = balanced_accuracy(y[rows], predicted[rows], classes)
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
        draws_score = r_squared(y[rows], predicted[rows])
        draws_normalized = _floor(draws_score)
    record["score_ci_low"], record["score_ci_high"] = interval(draws_score, LEVEL)
    record["normalized_ci_low"], record["normalized_ci_high"] = interval(draws_normalized, LEVEL)
    # The bootstrap standard error: the test-sample part of the change interval (untrained.py).
    record["normalized_se"] = float(np.nanstd(draws_normalized, ddof=1))
    record["regularization"] = float(np.median(chosen))
    record["regularization_name"] = "C (inverse L2)" if info.is_categorical else "alpha (L2)"
    record["n_fit"] = int(y.size - y.size // k_folds)
    record["folds"] = int(k_folds)
    return record


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
        of its bootstrap draws), ``regularization`` (median chosen
        strength) and ``regularization_name``, ``n_fit`` (samples per fitting fold),
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
    from threadpoolctl import threadpool_limits

    records = []
    # One BLAS thread: these fits are small, and several threads per process thrash when other
    # processes (TensorFlow, a second shard) share the cores (bench/bench_encoding.py). Set once
    # per call: each threadpool_limits scans the loaded libraries (14 ms, more than a ridge fit).
    with threadpool_limits(1):
        for mode in MODE_NAMES if modes is None else modes:
            y = np.asarray(factors.values[mode], dtype=np.float64)
            records.append(_mode_record(mode, x, y, folds=folds, bootstrap=bootstrap,
                                        seed=seed))
    return records


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
        The content of ``decodability.json``: ``distribution``, ``embedding_dim``, ``n``,
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
        "embedding_dim": int(np.prod(np.shape(embeddings)[1:])),
        "n": n,
        "seed": seed,
        "sample_size_rule": f"max({MIN_SAMPLES}, {SAMPLES_PER_DIMENSION} x embedding_dim)",
        "interval": f"{LEVEL:.0%} percentile bootstrap of out-of-fold predictions "
                    f"({bootstrap} draws)",
        "modes": records,
        "seconds": time.perf_counter() - started,
    }
