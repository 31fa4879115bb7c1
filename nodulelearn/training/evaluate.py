"""Evaluation of any saved classifier (image ``[B, H, W, 1]`` -> P(malignant) ``[B, 1]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nodulelearn.datasets import load_spec, spec_at_image_size
from nodulelearn.training.metrics import binary_metrics


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid value for `{name}`. Expected a positive integer. "
                         f"Received: {name}={value!r}")


def at_model_size(dist, model: keras.Model):
    """The distribution ``dist`` (a spec, preset name or TOML path) rendered at the model's input
    size (same field of view, coarser or finer pixels: see ``datasets.spec_at_image_size``)."""
    return spec_at_image_size(dist, model.input_shape[1])


def size_note(dist, model: keras.Model) -> str | None:
    """A sentence saying that ``dist`` is rendered at the model's size rather than its own (what
    ``bin/evaluate`` logs for a model of another size), or None when the sizes agree."""
    own = load_spec(dist)
    size = model.input_shape[1]
    if own.image_size == size:
        return None
    spec = at_model_size(own, model)
    return (f"Rendering {own.name!r} at the model's {size}x{size} pixels (the spec's own size is "
            f"{own.image_size}x{own.image_size}; same field of view, pixel spacing "
            f"{spec.pixel_spacing_mm:.3g} mm).")


def predict_probabilities(model: keras.Model, spec, n: int, seed: int, batch_size: int,
                          outputs: str = "probability") -> tuple[np.ndarray, np.ndarray]:
    """Labels ``[n]`` and the model's P(malignant) ``[n]`` on ``n`` samples of ``spec``.

    The outputs are checked (``nodulelearn.model_io``): one per image, finite, and in [0, 1]
    unless ``outputs="logit"`` (then the sigmoid is applied).

    Raises:
        ValueError: ``n`` or ``batch_size`` not positive, a wrong input size, or outputs that are
            not one finite P(malignant) per image (``model_io.ModelOutputError``).
    """
    from nodulelearn import model_io
    from nodulelearn.datasets import make_dataset

    _check_count("n", n)
    _check_count("batch_size", batch_size)
    model_io.check_single_output(model)
    expected = model.input_shape[1:3]
    if tuple(expected) != (spec.image_size, spec.image_size):
        raise ValueError(f"The model expects {expected[0]}x{expected[1]} images but the spec "
                         f"{spec.name!r} renders {spec.image_size}x{spec.image_size}.")
    # One traced function for every batch (the last, smaller batch included).
    predict = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    labels, probabilities = [], []
    for images, batch_labels in make_dataset(spec, n, seed, batch_size):
        probabilities.append(np.asarray(model_io.output_column(predict(images))))
        labels.append(batch_labels.numpy())
    where = f"{model.name} on {spec.name!r}"
    return (np.concatenate(labels),
            model_io.to_probabilities(np.concatenate(probabilities), outputs, where=where))


def evaluate_model(model: keras.Model, spec, n: int, seed: int, batch_size: int = 256,
                   outputs: str = "probability") -> dict[str, Any]:
    """Metrics of ``model`` on ``n`` samples of ``spec`` drawn with ``seed``.

    Args:
        model: a Keras classifier, images ``[B, H, W, 1]`` -> P(malignant) ``[B, 1]``.
        spec: a ``DistributionSpec`` or preset name / TOML path (rendered at the model's size).
        n: number of test samples.
        seed: data seed of the test set.
        batch_size: prediction batch size.
        outputs: ``"probability"`` (checked to lie in [0, 1]) or ``"logit"``.

    Returns:
        ``{"accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n"}``.

    Raises:
        ValueError: see ``predict_probabilities``.
    """
    if not hasattr(spec, "image_size"):
        spec = at_model_size(spec, model)
    labels, probabilities = predict_probabilities(model, spec, n, seed, batch_size, outputs)
    return binary_metrics(labels, probabilities)


def evaluate_on(model: keras.Model, dists: Sequence[str], n: int, seed: int,
                batch_size: int = 256, outputs: str = "probability") -> dict[str, dict[str, Any]]:
    """``{dist name: evaluate_model(...)}`` for every distribution, at the model's image size."""
    _check_count("n", n)
    return {
        dist: evaluate_model(model, at_model_size(dist, model), n, seed, batch_size, outputs)
        for dist in dists
    }


def summary_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A short fixed-width table of ``metrics.json`` (one row per test distribution)."""
    columns = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
    width = max([len("test distribution")] + [len(d) for d in metrics])
    header = f"{'test distribution':<{width}}  " + "  ".join(f"{c:>17}" for c in columns) + "      n"
    lines = [header, "-" * len(header)]
    for dist, row in metrics.items():
        cells = "  ".join(
            f"{'n/a':>17}" if row.get(c) is None else f"{row[c]:>17.4f}" for c in columns)
        lines.append(f"{dist:<{width}}  {cells}  {row.get('n', 0):>5}")
    return "\n".join(lines)
