"""View augmentations: stateless, identical eagerly and inside tf.data, shape-preserving."""

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn.registry import UnknownNameError
from nodulelearn.training.augment import (
    AUGMENTATIONS,
    DEFAULT_AUGMENT,
    build_augment,
    parse_augment,
)


def _images(batch=6, size=16):
    return tf.constant(np.random.default_rng(0).random((batch, size, size, 1), dtype=np.float32))


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_each_op_is_deterministic_and_equal_eager_and_in_dataset_map(name):
    op = AUGMENTATIONS.get(name)
    images, seed = _images(), tf.constant([3, 4], tf.int32)
    eager = op(images, seed).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(images).map(lambda x: op(x, seed)))).numpy()
    np.testing.assert_array_equal(eager, mapped)
    np.testing.assert_array_equal(eager, op(images, seed).numpy())
    assert eager.shape == images.shape and eager.dtype == np.float32
    assert not np.array_equal(eager, op(images, tf.constant([5, 6], tf.int32)).numpy())


@pytest.mark.parametrize("name", ["flip", "rot90"])
def test_flips_and_rotations_only_move_pixels(name):
    images = _images()
    out = AUGMENTATIONS.get(name)(images, tf.constant([1, 2])).numpy()
    for before, after in zip(images.numpy(), out, strict=True):
        np.testing.assert_array_equal(np.sort(before.ravel()), np.sort(after.ravel()))


def test_translate_moves_by_whole_pixels_within_the_bound():
    size = 16
    images = np.zeros((8, size, size, 1), np.float32)
    images[:, 8, 8, 0] = 1.0
    out = AUGMENTATIONS.get("translate")(tf.constant(images), tf.constant([0, 9]), max_pixels=2)
    rows, cols = np.nonzero(out.numpy()[..., 0].max(axis=0) > 0)
    peaks = [np.unravel_index(np.argmax(o[..., 0]), (size, size)) for o in out.numpy()]
    assert all(abs(r - 8) <= 2 and abs(c - 8) <= 2 for r, c in peaks)
    assert len({tuple(p) for p in peaks}) > 1  # Different images moved differently.
    assert len(rows) and len(cols)


def test_pipeline_is_configurable_and_validated():
    images, seed = _images(), tf.constant([1, 1])
    default = build_augment(DEFAULT_AUGMENT)(images, seed).numpy()
    assert default.shape == images.shape and 0.0 <= default.min() and default.max() <= 1.0
    flips_only = build_augment(["flip"])(images, seed).numpy()
    np.testing.assert_array_equal(np.sort(flips_only.ravel()), np.sort(images.numpy().ravel()))
    assert build_augment(()) is None
    wide = build_augment(["translate:max_pixels=4", "noise:sigma=0.05"])(images, seed)
    assert wide.shape == images.shape
    with pytest.raises(UnknownNameError, match="Valid names: flip"):
        build_augment(["cutout"])
    with pytest.raises(ValueError, match="Unknown hyperparameter.*Valid hyperparameters: max_pixels"):
        build_augment(["translate:pixels=3"])


def test_resized_crop_exists_but_is_not_a_default():
    assert "resized_crop" in AUGMENTATIONS and "resized_crop" not in DEFAULT_AUGMENT


def test_pipeline_entries_parse_numbers_in_every_spelling():
    assert parse_augment("translate:max_pixels=3") == ("translate", {"max_pixels": 3})
    assert isinstance(parse_augment("translate:max_pixels=3")[1]["max_pixels"], int)
    assert parse_augment("noise:sigma=1E-3") == ("noise", {"sigma": 0.001})
    assert parse_augment("noise:sigma=0.02") == ("noise", {"sigma": 0.02})
    with pytest.raises(ValueError, match="Expected a number.*Received: sigma='abc'"):
        parse_augment("noise:sigma=abc")
