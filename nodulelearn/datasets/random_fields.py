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
    "parenchyma": 7,
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


def _counter_hashes_np(count: int) -> np.ndarray:
    """``hash(j)`` for ``j < count``, in numpy: uint32 ``[count]``."""
    x = (np.arange(count, dtype=np.uint64) * _GOLDEN + 0x632BE5AB) & 0xFFFFFFFF
    x = x.astype(np.uint32)
    for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = x ^ (x >> np.uint32(shift))
        x = (x.astype(np.uint64) * mult & 0xFFFFFFFF).astype(np.uint32)
    return x ^ (x >> np.uint32(16))


def _counter_hashes(count: int) -> tf.Tensor:
    """``hash(j)`` for ``j < count`` as a constant ``uint32 [count]`` (computed once in numpy)."""
    return tf.constant(_counter_hashes_np(count), tf.uint32)


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
    four terms): integer ops only, which XLA fuses into one cheap loop. Bounded at +-3.46, so
    its tails are lighter than a Gaussian's, which keeps noise spikes from reaching the
    brightness of calcification.

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


def texture_bank(size: int, scales: tuple[tuple[float, float], ...]) -> np.ndarray:
    """A fixed, periodic, smooth random texture: the source of every sample's parenchyma.

    White noise from the counter hash (so the bank is the same on every machine) filtered in
    the Fourier domain with one Gaussian band per ``(feature size px, weight)``, each band
    scaled to unit variance before weighting; the sum is scaled to unit variance.

    Returns:
        float32 ``[size, size]``.
    """
    words = _counter_hashes_np(4 * size * size).astype(np.float64)
    white = (words / 2**32).reshape(4, size, size).sum(axis=0) - 2.0  # Irwin-Hall, near normal
    spectrum = np.fft.rfft2(white)
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    k2 = kx**2 + ky**2
    total = np.zeros((size, size))
    for feature_px, weight in scales:
        band = np.fft.irfft2(
            spectrum * np.exp(-2.0 * (np.pi * feature_px) ** 2 * k2 / 4.0), (size, size)
        )
        total += weight * (band - band.mean()) / band.std()
    return (total / total.std()).astype(np.float32)


def bank_window(noise_seeds: tf.Tensor, stream: str, bank_size: int, size: int) -> tf.Tensor:
    """Where each sample's ``size`` x ``size`` window of a periodic bank lies.

    The window's offset and orientation (one of the 8 flips and quarter turns) come from the
    sample's sub-stream ``stream``. Pass the result to ``bank_lookup``; computing it apart
    keeps XLA from redoing this per-sample work for every pixel.

    Returns:
        int32 ``[B, 2, size]``: flat bank offsets stepped over moving down (``[:, 0]``) and
        across (``[:, 1]``) the image; pixel ``(i, j)`` reads ``bank[down[i] + across[j]]``.
    """
    n = bank_size
    u = uniform(noise_seeds, stream, 5)
    offset_y = tf.cast(u[:, 0] * n, tf.int32)[:, None]
    offset_x = tf.cast(u[:, 1] * n, tf.int32)[:, None]
    step_y = tf.where(u[:, 2:3] < 0.5, 1, -1)
    step_x = tf.where(u[:, 3:4] < 0.5, 1, -1)
    transpose = u[:, 4:5] < 0.5
    i = tf.range(size)[None, :]
    bank_row = tf.math.floormod(offset_y + step_y * i, n) * n  # [B, size]
    bank_col = tf.math.floormod(offset_x + step_x * i, n)
    down = tf.where(transpose, bank_col, bank_row)
    across = tf.where(transpose, bank_row, bank_col)
    return tf.stack([down, across], axis=1)


def bank_lookup(bank: np.ndarray, window: tf.Tensor) -> tf.Tensor:
    """Reads each sample's window (from ``bank_window``) of ``bank``: float32 ``[B, N, N]``."""
    flat_index = window[:, 0, :, None] + window[:, 1, None, :]
    return tf.gather(tf.constant(bank.reshape(-1)), flat_index)
