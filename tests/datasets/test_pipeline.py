"""make_dataset: element structure, determinism, agreement with sample_factors, balance."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn.datasets import MODE_NAMES, load_spec, make_dataset, render, sample_factors


@pytest.fixture(scope="module")
def spec():
    return dataclasses.replace(load_spec("clinical"), image_size=32)


def collect(ds):
    parts = list(ds.as_numpy_iterator())
    return [np.concatenate([p[k] for p in parts]) if not isinstance(parts[0][k], dict)
            else {m: np.concatenate([p[k][m] for p in parts]) for m in parts[0][k]}
            for k in range(len(parts[0]))]


def test_elements_match_sample_factors_and_render(spec):
    ds = make_dataset(spec, 8, seed=5, batch_size=4, with_factors=True, start=3)
    images_spec, labels_spec, factors_spec = ds.element_spec
    assert images_spec.shape.as_list() == [None, 32, 32, 1] and images_spec.dtype == tf.float32
    assert labels_spec.dtype == tf.int32
    assert set(factors_spec) == set(MODE_NAMES) | {"index"}

    images, labels, factors = collect(ds)
    expected = sample_factors(spec, 8, seed=5, start=3)
    np.testing.assert_array_equal(labels, expected.labels)
    np.testing.assert_array_equal(factors["index"], expected.index)
    for mode in MODE_NAMES:
        np.testing.assert_array_equal(factors[mode], expected.values[mode])
    direct = []  # eagerly, in the pipeline's batches (same shapes, same compiled renderer)
    for chunk in (range(0, 4), range(4, 8)):
        part = expected.subset(chunk)
        direct.append(render({m: tf.constant(v) for m, v in part.values.items()},
                             tf.constant(part.noise_seeds), image_size=32,
                             pixel_spacing_mm=spec.pixel_spacing_mm).numpy())
    np.testing.assert_allclose(images, np.concatenate(direct), atol=1e-6)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_deterministic_and_order_independent(spec):
    first = collect(make_dataset(spec, 12, seed=1, batch_size=4))
    again = collect(make_dataset(spec, 12, seed=1, batch_size=4))
    np.testing.assert_array_equal(first[0], again[0])
    tail = collect(make_dataset(spec, 4, seed=1, batch_size=4, start=8))
    np.testing.assert_allclose(tail[0], first[0][8:], atol=1e-6)
    np.testing.assert_array_equal(tail[1], first[1][8:])
    other = collect(make_dataset(spec, 12, seed=2, batch_size=4))
    assert not np.array_equal(other[0], first[0])


def test_spec_path_batch_count_and_drop_remainder(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text("image_size = 32\n[modes.margin]\nalignment = 1\n")
    ds = make_dataset(str(path), 10, seed=0, batch_size=4, drop_remainder=True)
    assert ds.element_spec[0].shape.as_list() == [4, 32, 32, 1]
    assert ds.cardinality() == 2
    assert make_dataset(path, 10, seed=0, batch_size=4).cardinality() == 3


def test_no_second_augmentation_path():
    """Views and augmentation live in training's per-epoch stream only."""
    import inspect

    parameters = inspect.signature(make_dataset).parameters
    assert "views" not in parameters and "augment" not in parameters


def test_class_balanced_batches_hold_both_classes(spec):
    ds = make_dataset(spec, 10, seed=0, batch_size=4, class_balanced=True, with_factors=True)
    for _, labels, factors in ds:
        np.testing.assert_array_equal(labels.numpy(), factors["index"].numpy() % 2)
        if labels.shape[0] >= 2:
            assert set(labels.numpy()) == {0, 1}


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=-1), "`n`"), (dict(batch_size=0), "`batch_size`"), (dict(start=-2), "`start`"),
    (dict(views=2), "views"),
])
def test_invalid_arguments(spec, kwargs, match):
    args = dict(n=4, seed=0, batch_size=2) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        make_dataset(spec, **args)
