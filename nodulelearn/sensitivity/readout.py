"""The encoding's linear read-outs: out-of-fold predictions of a mode from an embedding.

Both read-outs are scikit-learn estimators (public API only) on features standardised on the
fitting fold, each regularised in closed form inside the fitting fold (``encoding`` describes
the analysis):

- numeric modes: ``RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)``, the strength chosen
  per mode by the mean squared leave-one-out error (generalised cross-validation, the first
  best strength kept), one fit per fold for every numeric mode at once (one decomposition;
  the same strengths and, to rounding, predictions as one ``RidgeCV`` per mode, tested);
- categorical modes: ``LinearDiscriminantAnalysis`` (the ``lsqr`` solver: the multi-class
  linear discriminant, with no masking of a middle class as a regression on class indicators
  has), equal class priors (so it aims at the balanced accuracy it is scored by, as a
  class-balanced fit would), its covariance shrunk towards a scaled identity by the
  Ledoit-Wolf intensity of the fitting fold's within-class deviations (``shrinkage``: an
  analytic choice, no inner search), on the features that vary on the fitting fold (a constant
  one, such as a dead ReLU channel, would change the intensity and its target but not the
  information). Shrinkage discriminants of this kind are common linear decoders of neural
  recordings, where samples are few for the features' number.

The categorical read-out was scikit-learn's ``LogisticRegressionCV`` (a search over seven
strengths in three inner folds: 22 L-BFGS fits per outer fold) until the untrained reference
multiplied the number of read-outs. On ``paper``'s 144 trained encoders the discriminant's
scores at the embedding are on average within 0.01 of the logistic read-out's (each within
0.05); at the 16-wide first block it reads texture 0.07 lower on average. It takes a third to a
tenth of the time (docs/performance.md).

Both are fitted under ``sklearn.config_context(assume_finite=True,
skip_parameter_validation=True)`` (scikit-learn >= 1.3): the embeddings are checked once by the
caller and the parameters are constants.
"""

from __future__ import annotations

import warnings

import numpy as np

# L2 strengths of the ridge read-out, on standardised features.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))
#: Names of the two read-outs' regularisation, as the encoding records give them.
SHRINKAGE_NAME = "shrinkage (Ledoit-Wolf)"
ALPHA_NAME = "alpha (L2)"
#: The read-outs' identity, recorded with every encoding (and keying the untrained reference's
#: cache): an encoding measured with another read-out is measured again, never mixed.
READOUT = "lda-ledoit-wolf-varying/ridge-gcv"


def measured_otherwise(encoding) -> bool:
    """Whether ``encoding`` (``measure_encoding``'s result, as a study's record keeps it) was
    measured with another read-out than ``READOUT``: one naming another, or one of the analysis
    with the untrained reference (``baseline_inits``) that predates the ``readout`` field. An
    encoding of a stand-in analysis (neither field) is not."""
    if not isinstance(encoding, dict):
        return False
    if "readout" in encoding:
        return encoding["readout"] != READOUT
    return "baseline_inits" in encoding


def _quiet_fast():
    """The read-outs' context: no per-call finiteness or parameter checks (see the module
    docstring), and no warnings for scikit-learn's announced changes of defaults that these
    read-outs set explicitly or do not use."""
    import contextlib

    import sklearn

    stack = contextlib.ExitStack()
    stack.enter_context(sklearn.config_context(assume_finite=True,
                                               skip_parameter_validation=True))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore", FutureWarning)
    return stack


def within_class_shrinkage(z: np.ndarray, y: np.ndarray) -> float:
    """The Ledoit-Wolf shrinkage intensity of ``z``'s deviations from their class means
    (``y``: classes ``0..K-1``): how far the discriminant's covariance is pulled towards a
    scaled identity, in [0, 1]."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    counts = np.bincount(y)
    means = np.zeros((counts.size, z.shape[1]))
    np.add.at(means, y, z)
    means /= np.maximum(counts, 1)[:, None]
    return float(ledoit_wolf_shrinkage(z - means[y], assume_centered=True))


def discriminant_out_of_fold(x: np.ndarray, y: np.ndarray, folds: int, seed: int):
    """Out-of-fold class predictions of ``y`` (classes ``0..K-1``) and the shrinkage used per
    fold, over ``StratifiedKFold(folds, shuffle=True, random_state=seed)``: shrinkage linear
    discriminant analysis on standardised features (the module docstring)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty_like(y)
    chosen = []
    priors = np.full(int(y.max()) + 1, 1.0 / (int(y.max()) + 1))
    with _quiet_fast():
        for fit, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            scaler = StandardScaler().fit(x[fit])
            # Features constant on the fitting fold (a dead ReLU channel) carry nothing, but would
            # count in the shrinkage and its scaled-identity target: left out.
            varying = scaler.var_ > 0
            varying = varying if varying.any() else np.ones_like(varying)
            z = scaler.transform(x[fit])[:, varying]
            shrinkage = within_class_shrinkage(z, y[fit])
            head = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage,
                                              priors=priors).fit(z, y[fit])
            predicted[held_out] = head.predict(scaler.transform(x[held_out])[:, varying])
            chosen.append(shrinkage)
    return predicted, chosen


def ridge_out_of_fold(x: np.ndarray, ys: np.ndarray, folds: int, seed: int):
    """Out-of-fold ridge predictions of every column of ``ys`` ``[n, targets]`` and the strength
    chosen per fold and target (``[targets][folds]``), over ``KFold(folds, shuffle=True,
    random_state=seed)`` (one split for every target: it does not depend on them)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    predicted = np.empty(ys.shape, np.float64)
    chosen = [[] for _ in range(ys.shape[1])]
    with _quiet_fast():
        for fit, held_out in KFold(folds, shuffle=True, random_state=seed).split(x):
            scaler = StandardScaler().fit(x[fit])
            head = RidgeCV(alphas=list(RIDGE_ALPHAS), alpha_per_target=True, gcv_mode="svd")
            head.fit(scaler.transform(x[fit]), ys[fit])
            # [m, targets]; [m] for one target (scikit-learn drops a single column)
            predicted[held_out] = head.predict(scaler.transform(x[held_out])).reshape(
                len(held_out), -1)
            for target, alpha in enumerate(np.broadcast_to(head.alpha_, ys.shape[1])):
                chosen[target].append(float(alpha))
    return predicted, chosen
