"""Rendering of nodule patches from factor values: a pure function in TF ops, batched.

PLACEHOLDER: a Gaussian blob whose radius follows ``size``, plus noise. The real renderer
replaces this module with the same signature.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf


def render(
    values: Mapping[str, tf.Tensor],
    noise_seeds: tf.Tensor,
    *,
    image_size: int,
    pixel_spacing_mm: float,
) -> tf.Tensor:
    """Renders ``[B, H, W, 1]`` float32 images in [0, 1] from per-mode values ``[B]``."""
    size = tf.cast(values["size"], tf.float32)
    coords = (tf.range(image_size, dtype=tf.float32) - (image_size - 1) / 2.0) * pixel_spacing_mm
    yy, xx = tf.meshgrid(coords, coords, indexing="ij")
    r2 = (xx**2 + yy**2)[None]
    radius = (size / 2.0)[:, None, None]
    blob = tf.exp(-r2 / (2.0 * radius**2))
    return tf.clip_by_value(0.1 + 0.8 * blob, 0.0, 1.0)[..., None]
