"""View augmentations: a configurable pipeline of stateless TF ops on image batches.

Every op takes ``(images [B, H, W, 1] float32, seed int32 [2])`` and draws one independent random
transform per image from the stateless seed, so the same seed gives the same views eagerly, in a
``tf.function`` and inside ``tf.data.Dataset.map``.

Each op also touches a mode of variation, which is why the defaults are mild: ``translate``
moves the nodule (mode ``position``) by at most 2 pixels, ``intensity`` shifts attenuation (mode
``contrast``) by a few percent and ``noise`` adds a little scanner-like noise (mode ``noise``).
Flips and 90-degree rotations change no mode. ``resized_crop`` is available but NOT in the
default pipeline: zooming rescales the nodule, destroying the ``size`` information that is one
of the modes under study (a malignancy cue in the Brock model), so views of one nodule would
disagree on its size and a contrastive loss would teach the encoder to ignore size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from nodulelearn.params import parse_entry
from nodulelearn.registry import Registry
from nodulelearn.training.config import DEFAULT_AUGMENT

__all__ = ["AUGMENTATIONS", "DEFAULT_AUGMENT", "build_augment", "parse_augment"]

AUGMENTATIONS = Registry("augmentation", numbers_only=True)


AugmentFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _batch_size(images: tf.Tensor) -> tf.Tensor:
    return tf.shape(images)[0]


def _per_image(mask: tf.Tensor, when_true: tf.Tensor, when_false: tf.Tensor) -> tf.Tensor:
    return tf.where(mask[:, None, None, None], when_true, when_false)


@AUGMENTATIONS.register("flip")
def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips each image left-right and up-down, each with probability 1/2."""
    coins = tf.random.stateless_uniform([_batch_size(images), 2], seed) < 0.5
    images = _per_image(coins[:, 0], tf.reverse(images, axis=[2]), images)
    return _per_image(coins[:, 1], tf.reverse(images, axis=[1]), images)


@AUGMENTATIONS.register("rot90")
def random_rot90(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Rotates each (square) image by a uniformly drawn multiple of 90 degrees.

    A rotation by ``k`` quarter turns is written as an optional transpose followed by optional
    flips (k=1: transpose, flip rows; k=2: flip both; k=3: transpose, flip columns): three
    selects, cheaper than computing all four rotations and gathering.
    """
    k = tf.random.stateless_uniform([_batch_size(images)], seed, minval=0, maxval=4, dtype=tf.int32)
    images = _per_image(k % 2 == 1, tf.transpose(images, [0, 2, 1, 3]), images)
    images = _per_image((k == 1) | (k == 2), tf.reverse(images, axis=[1]), images)
    return _per_image(k >= 2, tf.reverse(images, axis=[2]), images)


@AUGMENTATIONS.register("translate")
def random_translate(images: tf.Tensor, seed: tf.Tensor, max_pixels: int = 2) -> tf.Tensor:
    """Shifts each image by whole pixels drawn uniformly in ``[-max_pixels, max_pixels]``.

    The border is filled by reflection, which continues the lung background.
    """
    if max_pixels == 0:
        return images
    size = tf.shape(images)[1]
    shifts = tf.random.stateless_uniform(
        [_batch_size(images), 2], seed, minval=-max_pixels, maxval=max_pixels + 1, dtype=tf.int32
    )
    padding = [[0, 0], [max_pixels, max_pixels], [max_pixels, max_pixels], [0, 0]]
    padded = tf.pad(images, padding, mode="REFLECT")
    rows = tf.range(size)[None, :] + max_pixels - shifts[:, :1]  # [B, H]
    cols = tf.range(size)[None, :] + max_pixels - shifts[:, 1:]  # [B, W]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


@AUGMENTATIONS.register("intensity")
def random_intensity(
    images: tf.Tensor, seed: tf.Tensor, scale: float = 0.05, shift: float = 0.02
) -> tf.Tensor:
    """Jitters each image's intensities: ``x * (1 + scale * u) + shift * v``, u, v ~ U[-1, 1]."""
    u = tf.random.stateless_uniform([_batch_size(images), 2], seed, minval=-1.0, maxval=1.0)
    gain = 1.0 + scale * u[:, 0, None, None, None]
    offset = shift * u[:, 1, None, None, None]
    return tf.clip_by_value(images * gain + offset, 0.0, 1.0)


@AUGMENTATIONS.register("noise")
def random_noise(images: tf.Tensor, seed: tf.Tensor, sigma: float = 0.01) -> tf.Tensor:
    """Adds i.i.d. zero-mean noise of standard deviation ``sigma`` (intensity units, [0, 1]).

    The noise is uniform, ``sigma * sqrt(12) * (u - 1/2)``: at this small amplitude its shape
    does not matter, and it is cheaper to draw than Gaussian noise, which made this op the
    slowest of the pipeline.
    """
    u = tf.random.stateless_uniform(tf.shape(images), seed)
    return tf.clip_by_value(images + sigma * 12.0**0.5 * (u - 0.5), 0.0, 1.0)


@AUGMENTATIONS.register("resized_crop")
def random_resized_crop(images: tf.Tensor, seed: tf.Tensor, min_scale: float = 0.6) -> tf.Tensor:
    """Crops a random square of side ``s * H`` (s ~ U[min_scale, 1]) and resizes it back.

    Not in the default pipeline: it rescales the nodule and so destroys the ``size`` mode.
    """
    batch = _batch_size(images)
    u = tf.random.stateless_uniform([batch, 3], seed)
    side = min_scale + (1.0 - min_scale) * u[:, 0]
    top = (1.0 - side) * u[:, 1]
    left = (1.0 - side) * u[:, 2]
    boxes = tf.stack([top, left, top + side, left + side], axis=1)
    size = tf.shape(images)[1:3]
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), size)


def parse_augment(entry: str) -> tuple[str, dict[str, Any]]:
    """Parses and checks one pipeline entry ``"name"`` or ``"name:key=value;key=value"``.

    The grammar is ``nodulelearn.params``'; the names and parameters are the registry's.

    Raises:
        UnknownNameError: unknown op (listing the valid ones).
        UnknownParameterError / ValueError: a parameter the op does not take, or text where it
            takes a number.
    """
    name, params = parse_entry(entry, what="augmentation")
    AUGMENTATIONS.check_params(name, params)
    return name, params


def build_augment(pipeline: Sequence[str] = DEFAULT_AUGMENT) -> AugmentFn | None:
    """Composes a pipeline of registered ops into one ``(images, seed) -> images`` function.

    Args:
        pipeline: entries ``"name"`` or ``"name:key=value;..."``, applied in order, e.g.
            ``("flip", "rot90", "translate:max_pixels=3")``. Empty -> ``None`` (no augmentation).

    Returns:
        A function mapping ``images [B, H, W, 1]`` float32 and ``seed`` int32 ``[2]`` to augmented
        images of the same shape, or ``None`` for an empty pipeline.
    """
    ops = [parse_augment(entry) for entry in pipeline]  # bad entries fail now, not when traced
    if not ops:
        return None

    def augment(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=len(ops))
        for i, (name, params) in enumerate(ops):
            images = AUGMENTATIONS.get(name)(images, seeds[i], **params)
        return images

    return augment
