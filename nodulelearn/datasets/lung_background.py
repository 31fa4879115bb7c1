"""The lung around the nodule: parenchyma texture and vessel-like tubes, in HU.

Both depend only on the sample's noise seed and, for the tubes, the ``vessels`` count: the
paths of ``MAX_VESSELS`` tubes are drawn from the seed whatever the count, and tube ``t`` is
shown when ``t < vessels``, so raising the count adds tubes without moving the others.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from nodulelearn.datasets import random_fields

PARENCHYMA_HU = -850.0
PARENCHYMA_COARSE = (5.0, 18.0)  # (feature size mm, standard deviation HU)
PARENCHYMA_FINE = (1.8, 10.0)
PARENCHYMA_TEXTURE_HU = float(np.hypot(PARENCHYMA_COARSE[1], PARENCHYMA_FINE[1]))
VESSEL_HU = 40.0
MAX_VESSELS = 6
_VESSEL_PARAMS = 5  # angle, offset, curvature, radius, density


@functools.cache
def _parenchyma_bank(image_size: int, pixel_spacing_mm: float) -> np.ndarray:
    size = max(256, 1 << (2 * image_size - 1).bit_length())  # a power of 2 >= 2 x image
    scales = tuple(
        (feature_mm / pixel_spacing_mm, sd)
        for feature_mm, sd in (PARENCHYMA_COARSE, PARENCHYMA_FINE)
    )
    return random_fields.texture_bank(size, scales)


def parenchyma_window(noise_seeds: tf.Tensor, image_size: int, pixel_spacing_mm: float):
    """Each sample's window of the parenchyma texture bank (see ``random_fields.bank_window``)."""
    bank = _parenchyma_bank(image_size, float(pixel_spacing_mm))
    return random_fields.bank_window(noise_seeds, "parenchyma", bank.shape[0], image_size)


def parenchyma_texture(window: tf.Tensor, image_size: int, pixel_spacing_mm: float) -> tf.Tensor:
    """Unit-variance mottled texture of the lung: a window of a fixed smooth random bank.

    Args:
        window: int32 ``[B, 2, N]`` from ``parenchyma_window``.
        image_size, pixel_spacing_mm: the geometry (the feature sizes are in mm).

    Returns:
        float32 ``[B, N, N]``.
    """
    return random_fields.bank_lookup(_parenchyma_bank(image_size, float(pixel_spacing_mm)), window)


def vessel_parameters(vessels: tf.Tensor, noise_seeds: tf.Tensor, fov_mm: float) -> dict:
    """The tubes' paths: ``cos``, ``sin`` (of the normal), ``offset``, ``curvature``,
    ``radius`` in mm and ``shown`` (peak opacity, 0 for a hidden tube), each float32
    ``[B, MAX_VESSELS]``.

    Args:
        vessels: float32 ``[B]``, the tube count (rounded).
        noise_seeds: int32 ``[B, 2]``.
        fov_mm: width of the patch in mm.
    """
    u = random_fields.uniform(noise_seeds, "vessels", MAX_VESSELS * _VESSEL_PARAMS)
    u = tf.reshape(u, [-1, MAX_VESSELS, _VESSEL_PARAMS])
    angle = np.pi * u[..., 0]
    shown = tf.range(MAX_VESSELS, dtype=tf.float32)[None, :] < tf.round(vessels)[:, None]
    return {
        "cos": tf.cos(angle),
        "sin": tf.sin(angle),
        "offset": (u[..., 1] - 0.5) * 0.9 * fov_mm,
        "curvature": (u[..., 2] - 0.5) * (1.6 / fov_mm),
        "radius": 0.45 + 0.8 * u[..., 3],
        # Peak opacity 0.7 to 1 (squared: the profile's square root is taken last); tubes
        # partly out of the slice are fainter.
        "shown": tf.cast(shown, tf.float32) * tf.square(0.7 + 0.3 * u[..., 4]),
    }


def vessel_alpha(params: dict, x_mm: tf.Tensor, y_mm: tf.Tensor) -> tf.Tensor:
    """Opacity of the vessel-like tubes, highest (0.7 to 1) on a tube's axis.

    A tube is a gently curved line (a parabola about a random axis) with the profile of a
    cylinder seen side-on, ``sqrt(1 - (d / r)^2)``, radius 0.45 to 1.25 mm (the thinnest
    come out fainter after the partial-volume blur, as small vessels do).

    Args:
        params: from ``vessel_parameters``.
        x_mm, y_mm: ``[1, 1, W]`` and ``[1, H, 1]`` pixel-centre coordinates.

    Returns:
        float32 ``[B, H, W]`` in [0, 1].
    """

    def tube(name, t):
        return params[name][:, t, None, None]

    # A Python loop of maxima: XLA fuses it into one pass, unlike a reduction over a tube axis.
    alpha = tf.zeros_like(x_mm + y_mm) * tube("shown", 0)
    for t in range(MAX_VESSELS):
        across = x_mm * tube("cos", t) + y_mm * tube("sin", t) - tube("offset", t)
        along = y_mm * tube("cos", t) - x_mm * tube("sin", t)
        distance = (across - tube("curvature", t) * tf.square(along)) / tube("radius", t)
        alpha = tf.maximum(alpha, tube("shown", t) * tf.nn.relu(1.0 - tf.square(distance)))
    return tf.sqrt(alpha)
