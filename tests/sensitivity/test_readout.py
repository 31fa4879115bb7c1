"""The encoding's read-outs: the ridge gives plain scikit-learn's numbers (one ``RidgeCV`` fit
per fold for every target) to rounding; the categorical read-out is shrinkage linear
discriminant analysis with equal priors on standardised features, and behaves as a balanced,
multi-class linear read-out should (no masked middle class, no majority-class bias, chance on
noise)."""

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nodulelearn.sensitivity.encoding import balanced_accuracy
from nodulelearn.sensitivity.readout import (
    READOUT,
    RIDGE_ALPHAS,
    discriminant_out_of_fold,
    measured_otherwise,
    ridge_out_of_fold,
    within_class_shrinkage,
)


def _data(n, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * rng.uniform(0.1, 10, p)
    x[:, 0] = 3.0  # a constant feature: standardised to 0
    signal = x[:, 1] - x[:, 2]
    ys = np.stack([signal + rng.normal(size=n) * s for s in (0.1, 3.0, 30.0)] +
                  [rng.normal(size=n)], axis=1)
    return x, ys


@pytest.mark.parametrize("n, p", [(150, 12), (30, 40)])  # covariance and Gram decompositions
def test_ridge_matches_scikit_learn_ridgecv_per_target(n, p):
    x, ys = _data(n, p, seed=n)
    predicted, chosen = ridge_out_of_fold(x, ys, 5, seed=3)
    for target in range(ys.shape[1]):
        expected = np.empty(n)
        alphas = []
        for fit, held_out in KFold(5, shuffle=True, random_state=3).split(x):
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=list(RIDGE_ALPHAS)))
            model.fit(x[fit], ys[fit, target])
            expected[held_out] = model.predict(x[held_out])
            alphas.append(float(model[-1].alpha_))
        assert chosen[target] == alphas
        np.testing.assert_allclose(predicted[:, target], expected, rtol=1e-9,
                                   atol=1e-9 * np.abs(expected).max())
    assert len(set(a for fold in chosen for a in fold)) > 1  # the targets chose differently


def test_discriminant_is_shrinkage_lda_with_equal_priors_on_standardised_features():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(240, 6)) * rng.uniform(0.5, 20, 6)
    x[:, 5] = 3.0  # a constant feature: standardised to 0
    y = np.digitize(x[:, 0] / x[:, 0].std() + x[:, 1] / x[:, 1].std() + rng.normal(size=240),
                    [-1.0, 1.0])
    predicted, chosen = discriminant_out_of_fold(x, y, 4, seed=2)
    expected, shrinkages = np.empty_like(y), []
    varying = x[:, :5]  # the read-out leaves the constant feature out
    for fit, held_out in StratifiedKFold(4, shuffle=True, random_state=2).split(x, y):
        z = StandardScaler().fit_transform(varying[fit])
        deviations = z - np.stack([z[y[fit] == c].mean(axis=0) for c in range(3)])[y[fit]]
        shrinkage = LedoitWolf(assume_centered=True).fit(deviations).shrinkage_
        model = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(
            solver="lsqr", shrinkage=shrinkage, priors=[1 / 3] * 3))
        expected[held_out] = model.fit(varying[fit], y[fit]).predict(varying[held_out])
        shrinkages.append(shrinkage)
    np.testing.assert_array_equal(predicted, expected)
    np.testing.assert_allclose(chosen, shrinkages, rtol=1e-12)
    assert all(0.0 <= s <= 1.0 for s in chosen)
    assert np.mean(predicted == y) > 0.6  # a real read-out, not a constant


def test_dead_features_change_nothing():
    # A dead ReLU channel is a constant column; trained and untrained encoders differ in how many
    # they have, which must not move their read-outs.
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 256)
    x = rng.normal(size=(256, 64)) + 0.3 * y[:, None] * (rng.random(64) < 0.2)
    predicted, chosen = discriminant_out_of_fold(x, y, 5, seed=0)
    dead = np.concatenate([x, np.zeros((256, 64)), np.full((256, 3), 2.5)], axis=1)
    predicted_dead, chosen_dead = discriminant_out_of_fold(dead, y, 5, seed=0)
    np.testing.assert_array_equal(predicted_dead, predicted)
    np.testing.assert_allclose(chosen_dead, chosen, rtol=1e-12)
    everything_dead, _ = discriminant_out_of_fold(np.zeros((256, 4)), y, 5, seed=0)
    assert everything_dead.shape == y.shape  # no information: a prediction, not an error


def test_the_middle_of_three_ordered_classes_is_read_not_masked():
    # Three classes along one direction: a regression on class indicators masks the middle one
    # (its indicator is never the largest); the discriminant reads all three.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 900)
    x = np.concatenate([(y + rng.normal(scale=0.2, size=900))[:, None],
                        rng.normal(size=(900, 4))], axis=1)
    predicted, _ = discriminant_out_of_fold(x, y, 5, seed=0)
    assert np.mean(predicted[y == 1] == 1) > 0.9
    assert balanced_accuracy(y, predicted, np.arange(3)) > 0.9


def test_equal_priors_score_the_rare_class_as_the_common_one():
    # 88 / 12 classes, one weakly informative feature: a read-out fitted to the class
    # frequencies predicts the common class almost always (balanced accuracy near 0.5).
    rng = np.random.default_rng(4)
    y = (rng.random(1200) < 0.12).astype(int)
    x = np.concatenate([(y + rng.normal(size=1200))[:, None], rng.normal(size=(1200, 3))],
                       axis=1)
    predicted, _ = discriminant_out_of_fold(x, y, 5, seed=0)
    recall_rare, recall_common = np.mean(predicted[y == 1] == 1), np.mean(predicted[y == 0] == 0)
    assert 0.55 < recall_rare < 0.85 and 0.55 < recall_common < 0.85
    assert balanced_accuracy(y, predicted, np.arange(2)) > 0.62


def test_noise_reads_at_chance_and_fewer_samples_shrink_more():
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(60, 60))  # correlated features: a covariance far from identity
    x, y = rng.normal(size=(300, 60)) @ mixing, rng.integers(0, 2, 300)
    predicted, chosen = discriminant_out_of_fold(x, y, 5, seed=0)
    assert abs(balanced_accuracy(y, predicted, np.arange(2)) - 0.5) < 0.1
    many = StandardScaler().fit_transform(rng.normal(size=(6000, 60)) @ mixing)
    assert min(chosen) > 2 * within_class_shrinkage(many, rng.integers(0, 2, 6000))


def test_measured_otherwise_names_encodings_of_another_read_out():
    assert not measured_otherwise({"readout": READOUT, "baseline_inits": 5})
    assert measured_otherwise({"readout": "logistic-regression-cv", "baseline_inits": 5})
    assert measured_otherwise({"baseline_inits": 5})  # the reference's, before the field
    assert not measured_otherwise({"modes": []}) and not measured_otherwise(None)  # stand-ins
