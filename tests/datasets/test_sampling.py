"""Factor sampling: determinism, order independence, alignment semantics, the TF twin."""

import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn.datasets import MODE_NAMES, MODES, ModeSpec, load_spec, sample_factors
from nodulelearn.datasets.sampling import sample_factors_tf
from nodulelearn.datasets.spec import spec_from_dict


def in_look(spec, mode, values, label):
    """Boolean [n]: which values lie in the look of class ``label``."""
    look = spec.look(mode, label)
    if MODES[mode].is_categorical:
        return np.isin(values, look)
    return (values >= look[0]) & (values <= look[1])


def with_mode(spec, mode, mode_spec):
    return dataclasses.replace(spec, modes={**spec.modes, mode: mode_spec})


def assert_factors_equal(a, b):
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.noise_seeds, b.noise_seeds)
    np.testing.assert_array_equal(a.index, b.index)
    for mode in MODE_NAMES:
        np.testing.assert_array_equal(a.values[mode], b.values[mode])


def test_shapes_dtypes_and_order_independence():
    spec = load_spec("clinical")
    big = sample_factors(spec, 1000, seed=7)
    assert big.labels.dtype == np.int32 and big.labels.shape == (1000,)
    assert big.noise_seeds.dtype == np.int32 and big.noise_seeds.shape == (1000, 2)
    assert big.index.dtype == np.int64
    assert all(v.dtype == np.float32 and v.shape == (1000,) for v in big.values.values())
    assert_factors_equal(sample_factors(spec, 10, seed=7), big.subset(range(10)))
    assert_factors_equal(sample_factors(spec, 10, seed=7, start=500), big.subset(range(500, 510)))
    other = sample_factors(spec, 1000, seed=8)
    assert not np.array_equal(other.values["size"], big.values["size"])
    assert len(np.unique(big.noise_seeds, axis=0)) == 1000


def test_changing_one_mode_leaves_everything_else_unchanged():
    spec = load_spec("clinical")
    base = sample_factors(spec, 500, seed=3)
    changed = sample_factors(with_mode(spec, "size", ModeSpec(alignment=-1.0)), 500, seed=3)
    assert not np.array_equal(base.values["size"], changed.values["size"])
    np.testing.assert_array_equal(base.labels, changed.labels)
    np.testing.assert_array_equal(base.noise_seeds, changed.noise_seeds)
    for mode in MODE_NAMES:
        if mode != "size":
            np.testing.assert_array_equal(base.values[mode], changed.values[mode])


@pytest.mark.parametrize("mode", MODE_NAMES)
@pytest.mark.parametrize("alignment", [1.0, 0.5, 0.0, -1.0])
def test_alignment_is_the_probability_of_the_own_look(mode, alignment):
    spec = with_mode(load_spec("unpredictive"), mode, ModeSpec(alignment=alignment))
    f = sample_factors(spec, 4000, seed=1)
    values = f.values[mode]
    own = np.where(f.labels == 1, in_look(spec, mode, values, 1), in_look(spec, mode, values, 0))
    other = np.where(f.labels == 1, in_look(spec, mode, values, 0), in_look(spec, mode, values, 1))
    assert np.all(own ^ other)  # every value lies in exactly one look
    expected = (1.0 + alignment) / 2.0
    assert abs(own.mean() - expected) < 0.03, (own.mean(), expected)


def test_values_cover_their_looks():
    spec = load_spec("unpredictive")
    f = sample_factors(spec, 4000, seed=2)
    for mode in MODE_NAMES:
        info, values = MODES[mode], f.values[mode]
        if info.is_categorical:
            assert set(np.unique(values)) == set(range(len(info.categories)))
        elif info.kind == "count":
            assert np.all(values == np.round(values))
            expected = {v for label in (0, 1)
                        for v in range(int(spec.look(mode, label)[0]),
                                       int(spec.look(mode, label)[1]) + 1)}
            assert set(np.unique(values).astype(int)) == expected
        else:
            low, high = spec.look(mode, 0)
            benign = values[(values >= low) & (values <= high)]
            assert benign.min() < low + 0.05 * (high - low)
            assert benign.max() > high - 0.05 * (high - low)


def test_fixed_values_fraction_and_given_labels():
    spec = spec_from_dict({"malignant_fraction": 0.2, "modes": {
        "texture": {"fixed": "part_solid"}, "size": {"fixed": 12.5}}})
    f = sample_factors(spec, 5000, seed=0)
    assert np.all(f.values["texture"] == 1.0) and np.all(f.values["size"] == 12.5)
    assert abs(f.labels.mean() - 0.2) < 0.02
    labels = np.arange(10) % 2
    np.testing.assert_array_equal(sample_factors(spec, 10, 0, labels=labels).labels, labels)
    with pytest.raises(ValueError, match="Expected `labels` of shape"):
        sample_factors(spec, 10, 0, labels=[2] * 10)
    with pytest.raises(ValueError, match="`n`"):
        sample_factors(spec, -1, 0)


def test_factors_subset_and_replace_values():
    f = sample_factors(load_spec("clinical"), 20, seed=4)
    sub = f.subset([3, 1])
    assert len(sub) == 2 and list(sub.index) == [3, 1]
    np.testing.assert_array_equal(sub.values["size"], f.values["size"][[3, 1]])
    new = f.replace_values("size", np.full(20, 9.0))
    assert np.all(new.values["size"] == 9.0) and not np.all(f.values["size"] == 9.0)
    np.testing.assert_array_equal(new.noise_seeds, f.noise_seeds)
    np.testing.assert_array_equal(new.values["margin"], f.values["margin"])
    with pytest.raises(ValueError, match="Valid modes"):
        f.replace_values("shape", np.zeros(20))
    with pytest.raises(ValueError, match="Expected 20 values"):
        f.replace_values("size", np.zeros(3))


@pytest.mark.parametrize("name", ["clinical", "margin_size_reversed"])
def test_tf_twin_is_bit_exact_eagerly_and_in_dataset_map(name):
    """Also guards against graph rewrites that fold uint64 constants through float64."""
    spec = load_spec(name)
    expected = sample_factors(spec, 300, seed=11, start=40)

    def check(labels, values, noise_seeds):
        np.testing.assert_array_equal(np.asarray(labels), expected.labels)
        np.testing.assert_array_equal(np.asarray(noise_seeds), expected.noise_seeds)
        for mode in MODE_NAMES:
            np.testing.assert_array_equal(np.asarray(values[mode]), expected.values[mode])

    index = tf.range(40, 340, dtype=tf.int64)
    check(*sample_factors_tf(spec, index, 11))
    check(*tf.function(lambda i: sample_factors_tf(spec, i, 11))(index))
    ds = tf.data.Dataset.range(40, 340).batch(128).map(lambda i: sample_factors_tf(spec, i, 11))
    parts = list(ds.as_numpy_iterator())
    check(np.concatenate([p[0] for p in parts]),
          {m: np.concatenate([p[1][m] for p in parts]) for m in MODE_NAMES},
          np.concatenate([p[2] for p in parts]))


def test_clinical_bayes_optimal_accuracy_is_at_least_99_percent():
    """The label is recoverable from clinical's factors, so a good model can reach >= 99%.

    Given the label, each mode independently shows its own class's look with probability
    p = (1 + a) / 2: the Bayes-optimal rule sums the log-likelihood ratios of the looks seen.
    """
    spec = load_spec("clinical")
    f = sample_factors(spec, 20000, seed=0)
    log_odds = np.zeros(len(f))
    ps = []
    for mode in MODE_NAMES:
        p = (1.0 + spec.modes[mode].alignment) / 2.0
        if spec.modes[mode].fixed is not None or p == 0.5:
            continue
        ps.append(p)
        shows_malignant = in_look(spec, mode, f.values[mode], 1)
        weight = np.log(p / (1.0 - p))
        log_odds += np.where(shows_malignant, weight, -weight)
    empirical = np.mean((log_odds > 0) == (f.labels == 1))
    exact = 0.0
    for looks in itertools.product((0, 1), repeat=len(ps)):
        like = [np.prod([p if o == y else 1 - p for p, o in zip(ps, looks, strict=True)]) for y in (0, 1)]
        exact += 0.5 * max(like)
    assert exact >= 0.99
    assert empirical >= 0.99
    assert abs(empirical - exact) < 0.005
