"""The ``tf.data`` pipeline: sample indices -> batches -> factors and images, all in-graph.

Each batch is a range of global sample indices; factors are sampled from them with the TF port of
the counter-based hash (``sample_factors_tf``) and the whole batch is rendered in one vectorised
call, in a parallel, deterministic ``map``. No Python runs per image or per batch.
"""

from __future__ import annotations

import numbers
import os

import tensorflow as tf

from nodulelearn.datasets.modes import MODE_NAMES
from nodulelearn.datasets.render import render
from nodulelearn.datasets.sampling import sample_factors_tf
from nodulelearn.datasets.spec import DistributionSpec, load_spec
from nodulelearn.determinism import SEED_RANGE


def make_dataset(
    spec: DistributionSpec | str | os.PathLike,
    n: int,
    seed: int,
    batch_size: int,
    *,
    with_factors: bool = False,
    class_balanced: bool = False,
    start: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched, prefetching, deterministic dataset of samples ``start .. start + n - 1``.

    The images are the distribution's, unaugmented: views and augmentation belong to
    training's per-epoch stream (``nodulelearn.training.data``), their one place.

    Args:
        spec: the distribution (a ``DistributionSpec``, preset name or path to a TOML file).
        n: number of samples.
        seed: integer seed; with ``spec`` it determines every image and label.
        batch_size: samples per batch.
        with_factors: also yield ``{mode: float32 [B], "index": int64 [B]}``.
        class_balanced: labels alternate 0, 1, 0, 1 by sample index, so every batch of two or
            more holds both classes (``malignant_fraction`` is then unused).
        start: global index of the first sample (disjoint splits: different ``start``s or seeds).
        drop_remainder: drop a last, smaller batch.

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)`` or ``(images, labels, factors)``;
        images float32 in [0, 1], labels int32 ``[B]``.

    Raises:
        TypeError: ``spec`` is not a preset name, path or ``DistributionSpec``; ``n``, ``seed``,
            ``batch_size`` or ``start`` is not an integer (``"32"``, ``1.5`` and ``True`` are not).
        ValueError: ``n`` or ``start`` below 0, ``batch_size`` below 1, ``seed`` outside
            ``nodulelearn.determinism.SEED_RANGE`` (the range a run's seed has).
    """
    # Checked before the spec and the graph: a wrong type fails here, not inside tf.data's tracing.
    if not isinstance(spec, (DistributionSpec, str, os.PathLike)):
        raise TypeError("Invalid value for argument `spec`. Expected a preset name, a path to a "
                        ".toml file or a DistributionSpec. Received: "
                        f"spec={spec!r} ({type(spec).__name__})")
    for arg, value, minimum in (("n", n, 0), ("seed", seed, SEED_RANGE[0]),
                                ("batch_size", batch_size, 1), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"Invalid value for argument `{arg}`. Expected an integer. Received: "
                            f"{arg}={value!r} ({type(value).__name__})")
        if arg == "seed" and not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
            # The bound training and studies use: a seed make_dataset takes, a run takes too.
            raise ValueError(f"Invalid value for argument `seed`. Expected an integer in "
                             f"[{SEED_RANGE[0]}, {SEED_RANGE[1]}]. Received: seed={value!r}")
        if value < minimum:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected an integer >= "
                             f"{minimum}. Received: {arg}={value!r}")
    n, seed, batch_size, start = int(n), int(seed), int(batch_size), int(start)
    spec = load_spec(spec)

    def make_batch(index: tf.Tensor):
        labels = tf.cast(index % 2, tf.int32) if class_balanced else None
        labels, values, noise_seeds = sample_factors_tf(spec, index, seed, labels)
        images = render(values, noise_seeds, image_size=spec.image_size,
                        pixel_spacing_mm=spec.pixel_spacing_mm,
                        visibility=spec.render_visibility())
        if not with_factors:
            return images, labels
        factors = {m: values[m] for m in MODE_NAMES}
        factors["index"] = index
        return images, labels, factors

    ds = tf.data.Dataset.range(start, start + n).batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)

