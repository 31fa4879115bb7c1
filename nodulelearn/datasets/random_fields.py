"""Counter-based random numbers for rendering, keyed by a per-sample seed and a named stream.

Every random nuisance of a patch (parenchyma texture, vessel paths, spicule angles, scanner
noise, ...) is drawn here from a fixed-shape *sub-stream* of the sample's ``noise_seeds`` row:
the number ``j`` of stream ``s`` of sample ``b`` is ``hash(seed[b], s, j)``. Nothing depends on
the batch the sample sits in, on the other samples, or on the values of the modes, so changing
one mode's value leaves every other random draw of the image untouched.

The hash is an integer mixer on ``uint32`` (the "lowbias32" finaliser by C. Wellons), written in
plain TF bitwise ops so it runs eagerly, in ``tf.function``, under XLA and in ``tf.data``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Sub-stream identifiers: one per random nuisance. Never renumber them (it changes every image).
STREAMS = {
    "position": 1,
    "margin": 2,
    "spicules": 3,
    "texture": 4,
    "calcification": 5,
    "vessels": 6,
    "parenchyma_coarse": 7,
    "parenchyma_fine": 8,
    "scanner_noise": 9,
}

_GOLDEN = 0x9E3779B9


def hash_uint32(x: tf.Tensor) -> tf.Tensor:
    """Mixes every bit of ``x`` (``uint32``, any shape) into every bit of the result."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def _counter_hashes(count: int) -> tf.Tensor:
    """``hash(j)`` for ``j < count`` as a constant ``uint32 [count]`` (computed once in numpy)."""
    x = (np.arange(count, dtype=np.uint64) * _GOLDEN + 0x632BE5AB) & 0xFFFFFFFF
    x = x.astype(np.uint32)
    for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = x ^ (x >> np.uint32(shift))
        x = (x.astype(np.uint64) * mult & 0xFFFFFFFF).astype(np.uint32)
    x = x ^ (x >> np.uint32(16))
    return tf.constant(x, tf.uint32)


def stream_keys(noise_seeds: tf.Tensor, stream: str) -> tf.Tensor:
    """The key of one sub-stream of every sample.

    Args:
        noise_seeds: int32 ``[B, 2]``, the per-sample seeds.
        stream: a name in ``STREAMS``.

    Returns:
        uint32 ``[B]``.
    """
    seeds = tf.bitcast(tf.cast(noise_seeds, tf.int32), tf.uint32)
    stream_id = tf.constant((STREAMS[stream] * _GOLDEN) & 0xFFFFFFFF, tf.uint32)
    key = hash_uint32(tf.bitwise.bitwise_xor(seeds[:, 0], stream_id))
    return hash_uint32(key + hash_uint32(seeds[:, 1] + stream_id))


def _bits(noise_seeds: tf.Tensor, stream: str, count: int) -> tf.Tensor:
    """``count`` random uint32 words per sample: ``[B, count]``."""
    keys = stream_keys(noise_seeds, stream)[:, None]
    counters = _counter_hashes(count)[None, :]
    return hash_uint32(tf.bitwise.bitwise_xor(keys, counters) + counters)


def uniform(noise_seeds: tf.Tensor, stream: str, count: int) -> tf.Tensor:
    """``count`` uniform numbers in [0, 1) per sample from one sub-stream.

    Returns:
        float32 ``[B, count]``; column ``j`` depends only on (seed, stream, j).
    """
    words = tf.bitwise.right_shift(_bits(noise_seeds, stream, count), tf.constant(8, tf.uint32))
    return tf.cast(words, tf.float32) * (1.0 / 2**24)


def normal_image(noise_seeds: tf.Tensor, stream: str, height: int, width: int) -> tf.Tensor:
    """Approximately standard-normal white noise, one independent image per sample.

    Each pixel is the standardised sum of the four bytes of one hashed word (Irwin-Hall with
    four terms): integer ops only, which XLA fuses into one cheap loop, and bounded at +-3.46,
    so a noise spike never outshines calcification.

    Returns:
        float32 ``[B, height, width]``.
    """
    words = tf.reshape(_bits(noise_seeds, stream, height * width), [-1, height, width])
    byte = tf.constant(0xFF, tf.uint32)
    total = tf.bitwise.bitwise_and(words, byte)
    for shift in (8, 16):
        shifted = tf.bitwise.right_shift(words, tf.constant(shift, tf.uint32))
        total += tf.bitwise.bitwise_and(shifted, byte)
    total += tf.bitwise.right_shift(words, tf.constant(24, tf.uint32))
    # Four uniform bytes: mean 4 * 127.5, variance 4 * (256^2 - 1) / 12.
    return (tf.cast(total, tf.float32) - 510.0) * float(1.0 / np.sqrt(4 * (256**2 - 1) / 12.0))


def _spline_taps(coords_mm: np.ndarray, cell_mm: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Cubic B-spline taps from a lattice of spacing ``cell_mm`` to the pixel coordinates.

    Returns:
        ``(index [N, 4] int32, weight [N, 4] float32, knots)``: pixel ``i`` is
        ``sum_t weight[i, t] * lattice[index[i, t]]``. Weights are scaled to unit L2 norm per
        pixel, so a lattice of unit-variance values gives unit variance everywhere.
    """
    position = (coords_mm - coords_mm.min()) / cell_mm + 1.0  # one knot of margin before
    base = np.floor(position).astype(np.int64)
    f = position - base
    weight = (
        np.stack(
            [(1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3], axis=1
        )
        / 6.0
    )
    weight /= np.sqrt((weight**2).sum(axis=1, keepdims=True))
    index = base[:, None] - 1 + np.arange(4)[None, :]
    return index.astype(np.int32), weight.astype(np.float32), int(index.max()) + 1


def smooth_field(
    noise_seeds: tf.Tensor, stream: str, coords_mm: np.ndarray, cell_mm: float
) -> tf.Tensor:
    """A smooth random field with unit variance, feature size about ``cell_mm``.

    Value noise: uniform random values on a coarse lattice, interpolated separably with cubic
    B-spline taps. Gathers and fixed-order sums only, so a sample's field is bit-identical
    whatever batch it is rendered in (a matrix product's summation order may depend on the
    batch size).

    Args:
        noise_seeds: int32 ``[B, 2]``.
        stream: a name in ``STREAMS``.
        coords_mm: float ``[N]`` pixel-centre coordinates of the (square) patch, in mm.
        cell_mm: lattice spacing in mm.

    Returns:
        float32 ``[B, N, N]``.
    """
    index, weight, knots = _spline_taps(np.asarray(coords_mm, np.float64), cell_mm)
    lattice = uniform(noise_seeds, stream, knots * knots)
    lattice = (tf.reshape(lattice, [-1, knots, knots]) - 0.5) * np.sqrt(12.0)
    rows = sum(weight[None, :, t, None] * tf.gather(lattice, index[:, t], axis=1) for t in range(4))
    return sum(weight[None, None, :, t] * tf.gather(rows, index[:, t], axis=2) for t in range(4))
