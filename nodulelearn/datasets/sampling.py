"""Sampling of labels and factor values from a distribution spec: deterministic, order-independent.

Every random number is a counter-based hash (splitmix64) of ``(seed, stream, sample index)``, so
sample ``i`` depends only on ``(spec, seed, i)``: asking for samples 0..9 or 0..9999 gives the same
first ten, and batches can be drawn in any order or in parallel. Each mode draws from its own
streams (one for "own look or other look?", one for the value), so changing one mode's spec leaves
every other mode's values, the labels and the noise seeds unchanged.

The same arithmetic exists twice, bit for bit: in numpy (``sample_factors``, for analysis code)
and in TF ops (``sample_factors_tf``, used inside the ``tf.data`` pipeline without Python).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from nodulelearn.datasets.modes import MODE_NAMES, MODES
from nodulelearn.datasets.spec import DistributionSpec

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

# Stream ids. Fixed per mode name (not per position in a spec) so streams never shift.
LABEL_STREAM = 1
NOISE_STREAM = 2
AUGMENT_STREAM = 3  # reserved (was make_dataset's augmentation); never reuse a stream id
_MODE_STREAM_BASE = 16


def _mode_streams(mode: str) -> tuple[int, int]:
    k = MODE_NAMES.index(mode)
    return _MODE_STREAM_BASE + 2 * k, _MODE_STREAM_BASE + 2 * k + 1


def _mix_int(z: int) -> int:
    """splitmix64's finaliser on a Python int (for per-stream keys)."""
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed: int, stream: int) -> int:
    """The 64-bit key of one random stream of one seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"Expected an integer seed. Received: {seed!r}")
    return _mix_int((_mix_int((int(seed) + _GOLDEN) & _MASK64) ^ (stream * _GOLDEN)) & _MASK64)


def hash_bits_np(key: int, index: np.ndarray) -> np.ndarray:
    """64 random bits per index: splitmix64 output number ``index + 1`` from state ``key``."""
    z = np.uint64(key) + (index.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def hash_bits_tf(key: int | tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """TF twin of ``hash_bits_np``: uint64 bits from int64 ``index``.

    ``key`` is an int or a uint64 tensor broadcastable against ``index`` (e.g. keys ``[S, 1]``
    and indices ``[1, B]`` give ``[S, B]``).
    """
    shift = tf.bitwise.right_shift
    xor = tf.bitwise.bitwise_xor

    def u64(v):
        return tf.constant(v, tf.uint64)

    key = key if isinstance(key, tf.Tensor) else u64(key)
    z = key + (tf.cast(index, tf.uint64) + u64(1)) * u64(_GOLDEN)
    z = xor(z, shift(z, u64(30))) * u64(_MIX1)
    z = xor(z, shift(z, u64(27))) * u64(_MIX2)
    return xor(z, shift(z, u64(31)))


@dataclasses.dataclass(frozen=True)
class Factors:
    """Labels, factor values and noise seeds of ``n`` samples.

    Attributes:
        labels: int32 ``[n]``, 0 benign, 1 malignant.
        values: mode name -> float32 ``[n]`` (category index for categorical modes).
        noise_seeds: int32 ``[n, 2]``, the seed of every random nuisance of each image.
        index: int64 ``[n]``, the global sample indices.
        visibility: the ``visibility`` of the modes the renderer applies it to (margin,
            texture, calcification) in the distribution the samples come from; a mode not
            listed has visibility 1. Renderers of factors (``render_factors``,
            ``BatchRenderer``) draw the images with it.
    """

    labels: np.ndarray
    values: Mapping[str, np.ndarray]
    noise_seeds: np.ndarray
    index: np.ndarray
    visibility: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> Factors:
        """The samples at positions ``indices`` (positions in this object, not global indices)."""
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)  # an empty list is float64 to numpy
        return Factors(
            labels=self.labels[idx],
            values={m: v[idx] for m, v in self.values.items()},
            noise_seeds=self.noise_seeds[idx],
            index=self.index[idx],
            visibility=self.visibility,
        )

    def replace_values(self, mode: str, new_values: Sequence[float] | np.ndarray) -> Factors:
        """A copy with ``mode``'s values replaced; labels, other modes and noise seeds unchanged."""
        if mode not in self.values:
            raise ValueError(f"Unknown mode {mode!r}. Valid modes: {', '.join(self.values)}.")
        new = np.asarray(new_values, dtype=np.float32)
        if new.shape != (len(self),):
            raise ValueError(f"Expected {len(self)} values for mode {mode!r}, shape ({len(self)},). "
                             f"Received shape {new.shape}.")
        values = dict(self.values)
        values[mode] = new
        return dataclasses.replace(self, values=values)


def sample_factors(
    spec: DistributionSpec,
    n: int,
    seed: int,
    start: int = 0,
    labels: Sequence[int] | np.ndarray | None = None,
) -> Factors:
    """Samples labels and factor values of samples ``start .. start + n - 1``.

    Args:
        spec: the distribution.
        n: number of samples.
        seed: integer seed; with ``spec`` it determines everything.
        start: global index of the first sample.
        labels: optional int ``[n]`` labels to condition on (then ``malignant_fraction`` is unused).

    Returns:
        ``Factors`` with ``n`` samples.
    """
    for arg, value in (("n", n), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected a non-negative "
                             f"integer. Received: {arg}={value!r}")
    index = np.arange(start, start + n, dtype=np.int64)
    if labels is None:
        u = _uniform_np(hash_bits_np(stream_key(seed, LABEL_STREAM), index))
        label_array = (u < np.float32(spec.malignant_fraction)).astype(np.int32)
    else:
        label_array = np.asarray(labels)
        if label_array.shape != (n,) or not np.isin(label_array, (0, 1)).all():
            raise ValueError(f"Expected `labels` of shape ({n},) with values 0 or 1. Received "
                             f"shape {label_array.shape}, values {np.unique(label_array)[:5]}.")
        label_array = label_array.astype(np.int32)
    values = {m: _mode_values_np(spec, m, seed, index, label_array) for m in MODE_NAMES}
    noise_bits = hash_bits_np(stream_key(seed, NOISE_STREAM), index)
    noise_seeds = np.stack(
        [(noise_bits & np.uint64(0xFFFFFFFF)), noise_bits >> np.uint64(32)], axis=-1
    ).astype(np.uint32).view(np.int32)
    return Factors(labels=label_array, values=values, noise_seeds=noise_seeds, index=index,
                   visibility=spec.render_visibility())


def _uniform_np(bits: np.ndarray) -> np.ndarray:
    """Top 24 bits -> float32 uniform in [0, 1), exactly representable."""
    return (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def _draw_from_look_np(kind: str, look: tuple, bits: np.ndarray) -> np.ndarray:
    bits24 = bits >> np.uint64(40)
    if kind == "categorical":
        pick = (bits24 * np.uint64(len(look))) >> np.uint64(24)
        return np.asarray(look, np.float32)[pick.astype(np.int64)]
    low, high = look
    if kind == "count":
        span = np.uint64(int(high) - int(low) + 1)
        return ((bits24 * span) >> np.uint64(24)).astype(np.float32) + np.float32(low)
    return np.float32(low) + _uniform_np(bits) * np.float32(high - low)


def _mode_values_np(spec, mode, seed, index, labels) -> np.ndarray:
    mode_spec = spec.modes[mode]
    if mode_spec.fixed is not None:
        return np.full(index.shape, mode_spec.fixed, np.float32)
    align_stream, value_stream = _mode_streams(mode)
    own = _uniform_np(hash_bits_np(stream_key(seed, align_stream), index)) < np.float32(
        (1.0 + mode_spec.alignment) / 2.0)
    bits = hash_bits_np(stream_key(seed, value_stream), index)
    kind = MODES[mode].kind
    benign = _draw_from_look_np(kind, spec.look(mode, 0), bits)
    malignant = _draw_from_look_np(kind, spec.look(mode, 1), bits)
    look_class = np.where(own, labels, 1 - labels)
    return np.where(look_class == 1, malignant, benign).astype(np.float32)


def sample_factors_tf(
    spec: DistributionSpec, index: tf.Tensor, seed: int, labels: tf.Tensor | None = None
) -> tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]:
    """TF twin of ``sample_factors`` for global indices ``index`` (int64 ``[B]``), bit-exact.

    Args:
        spec: the distribution.
        index: int64 ``[B]`` global sample indices.
        seed: integer seed (a Python int: it is folded into constants of the graph).
        labels: optional int32 ``[B]`` labels to condition on.

    Returns:
        ``(labels int32 [B], {mode: float32 [B]}, noise_seeds int32 [B, 2])``.
    """
    index = tf.cast(index, tf.int64)
    # Every stream hashed at once ([S, B]): a handful of ops per batch instead of a few per stream.
    streams = [LABEL_STREAM, NOISE_STREAM]
    for mode in MODE_NAMES:
        streams.extend(_mode_streams(mode))
    # The keys are built as an [S, 1] constant directly: grappler's constant folding of ops on
    # uint64 constants (a slice, say) rounds them through float64, which broke bit-exactness.
    keys = tf.constant(np.array([[stream_key(seed, s)] for s in streams], np.uint64))
    all_bits = hash_bits_tf(keys, index[None, :])
    bits = dict(zip(streams, tf.unstack(all_bits, num=len(streams)), strict=True))
    if labels is None:
        u = _uniform_tf(bits[LABEL_STREAM])
        labels = tf.cast(u < tf.constant(spec.malignant_fraction, tf.float32), tf.int32)
    labels = tf.cast(labels, tf.int32)
    values = {m: _mode_values_tf(spec, m, bits, index, labels) for m in MODE_NAMES}
    noise_bits = bits[NOISE_STREAM]
    low = tf.cast(tf.bitwise.bitwise_and(noise_bits, tf.constant(0xFFFFFFFF, tf.uint64)),
                  tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(noise_bits, tf.constant(32, tf.uint64)), tf.uint32)
    noise_seeds = tf.bitcast(tf.stack([low, high], axis=-1), tf.int32)
    return labels, values, noise_seeds


def _uniform_tf(bits: tf.Tensor) -> tf.Tensor:
    bits24 = tf.bitwise.right_shift(bits, tf.constant(40, tf.uint64))
    return tf.cast(bits24, tf.float32) * tf.constant(2.0**-24, tf.float32)


def _draw_from_look_tf(kind: str, look: tuple, bits: tf.Tensor) -> tf.Tensor:
    bits24 = tf.bitwise.right_shift(bits, tf.constant(40, tf.uint64))
    if kind == "categorical":
        pick = tf.bitwise.right_shift(bits24 * tf.constant(len(look), tf.uint64),
                                      tf.constant(24, tf.uint64))
        return tf.gather(tf.constant(look, tf.float32), tf.cast(pick, tf.int64))
    low, high = look
    if kind == "count":
        span = tf.constant(int(high) - int(low) + 1, tf.uint64)
        count = tf.bitwise.right_shift(bits24 * span, tf.constant(24, tf.uint64))
        return tf.cast(count, tf.float32) + tf.constant(low, tf.float32)
    width = np.float32(high - low)
    return tf.constant(low, tf.float32) + _uniform_tf(bits) * tf.constant(width, tf.float32)


def _mode_values_tf(spec, mode, bits, index, labels) -> tf.Tensor:
    mode_spec = spec.modes[mode]
    if mode_spec.fixed is not None:
        return tf.fill(tf.shape(index), tf.constant(mode_spec.fixed, tf.float32))
    align_stream, value_stream = _mode_streams(mode)
    p_own = tf.constant(np.float32((1.0 + mode_spec.alignment) / 2.0), tf.float32)
    own = _uniform_tf(bits[align_stream]) < p_own
    kind = MODES[mode].kind
    benign = _draw_from_look_tf(kind, spec.look(mode, 0), bits[value_stream])
    malignant = _draw_from_look_tf(kind, spec.look(mode, 1), bits[value_stream])
    look_class = tf.where(own, labels, 1 - labels)
    return tf.where(look_class == 1, malignant, benign)
