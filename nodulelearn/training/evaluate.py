"""Evaluation of any saved classifier on distributions and on real patches.

The model is read through a ``nodulelearn.model_adapter.ModelAdapter`` (channels, intensity, a
softmax's malignant class); without one, images ``[B, H, W, 1]`` in [0, 1] -> P(malignant)
``[B, 1]`` (or a logit with ``outputs="logit"``).
"""

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


def _check_model_type(model) -> None:
    if not isinstance(model, keras.Model):
        shown = f" {model!r}" if isinstance(model, str) else ""
        raise TypeError(f"Expected a Keras model (keras.Model). Received: "
                        f"{type(model).__name__}{shown}. Load a .keras file with "
                        "nodulelearn.model_io.load_keras_model(path).")


def _adapted(model, outputs: str, adapter):
    """``(model taking our patches -> one column, what that column is)``."""
    from nodulelearn import model_io
    from nodulelearn.model_adapter import as_adapter

    _check_model_type(model)
    adapter = as_adapter(adapter, outputs)
    adapted = adapter.adapt(model)
    model_io.check_single_output(adapted)
    return adapted, adapter.output_kind


def predict_probabilities(model: keras.Model, spec, n: int, seed: int, batch_size: int,
                          outputs: str = "probability",
                          adapter=None) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``[n]`` and the model's P(malignant) ``[n]`` on ``n`` samples of ``spec``.

    The outputs are checked (``nodulelearn.model_io``): one per image, finite, and in [0, 1]
    unless ``outputs="logit"`` (then the sigmoid is applied). ``adapter`` (a
    ``ModelAdapter``) says how the model takes our patches and what it outputs instead.

    Raises:
        ValueError: ``n`` or ``batch_size`` not positive, a wrong input size, or outputs that are
            not one finite P(malignant) per image (``model_io.ModelOutputError``).
    """
    from nodulelearn import model_io
    from nodulelearn.datasets import make_dataset

    _check_count("n", n)
    _check_count("batch_size", batch_size)
    model, outputs = _adapted(model, outputs, adapter)
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
                   outputs: str = "probability", adapter=None,
                   intervals: bool = False) -> dict[str, Any]:
    """Metrics of ``model`` on ``n`` samples of ``spec`` drawn with ``seed``.

    Args:
        model: a Keras classifier, images ``[B, H, W, 1]`` -> P(malignant) ``[B, 1]``.
        spec: a ``DistributionSpec`` or preset name / TOML path (rendered at the model's size).
        n: number of test samples.
        seed: data seed of the test set.
        batch_size: prediction batch size.
        outputs: ``"probability"`` (checked to lie in [0, 1]) or ``"logit"``.
        adapter: a ``nodulelearn.model_adapter.ModelAdapter`` (input convention and outputs).
        intervals: add the 95% intervals of ``with_intervals``.

    Returns:
        ``{"accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n"}`` (and
        ``<metric>_ci_low`` / ``_ci_high`` with ``intervals``).

    Raises:
        ValueError: see ``predict_probabilities``.
    """
    _check_model_type(model)
    if not hasattr(spec, "image_size"):
        spec = at_model_size(spec, model)
    labels, probabilities = predict_probabilities(model, spec, n, seed, batch_size, outputs,
                                                  adapter)
    return (with_intervals if intervals else binary_metrics)(labels, probabilities)


def evaluate_on(model: keras.Model, dists: Sequence[str], n: int, seed: int,
                batch_size: int = 256, outputs: str = "probability",
                adapter=None, intervals: bool = False) -> dict[str, dict[str, Any]]:
    """``{dist name: evaluate_model(...)}`` for every distribution, at the model's image size.

    Raises:
        ValueError: no distribution, or ``dists`` given as one string (see ``evaluate_model``).
    """
    _check_count("n", n)
    _check_model_type(model)
    if isinstance(dists, str) or not list(dists):
        raise ValueError(f"Expected at least one test distribution (a list of preset names or "
                         f"TOML paths). Received: dists={dists!r}")
    return {
        dist: evaluate_model(model, at_model_size(dist, model), n, seed, batch_size, outputs,
                             adapter, intervals)
        for dist in dists
    }


def predict_patches(model: keras.Model, images: np.ndarray, batch_size: int = 256,
                    outputs: str = "probability", adapter=None) -> np.ndarray:
    """P(malignant) ``[n]`` of ``images`` (float32 ``[n, S, S, 1]`` in our [0, 1] window, e.g.
    ``nodulelearn.datasets.patches.load_patches(...).images``), read through the adapter."""
    from nodulelearn import model_io

    _check_count("batch_size", batch_size)
    model, outputs = _adapted(model, outputs, adapter)
    images = np.asarray(images, np.float32)
    expected = tuple(model.input_shape[1:3])
    if images.ndim != 4 or images.shape[-1] != 1 or len(images) == 0 or any(
            want is not None and got != want for got, want in zip(images.shape[1:3], expected,
                                                                  strict=True)):
        raise ValueError(f"Expected patches of shape [n, {expected[0]}, {expected[1]}, 1] (the "
                         f"model's size, one channel). Received shape {list(images.shape)}; "
                         "load_patches(..., image_size=..., resize=True) resizes them.")
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    columns = [np.asarray(model_io.output_column(predict(tf.constant(images[i:i + batch_size]))))
               for i in range(0, len(images), batch_size)]
    return model_io.to_probabilities(np.concatenate(columns), outputs,
                                     where=f"{model.name} on the patches")


def evaluate_patches(model: keras.Model, patches, batch_size: int = 256,
                     outputs: str = "probability", adapter=None,
                   intervals: bool = False) -> dict[str, Any]:
    """Metrics with 95% intervals of ``model`` on labelled ``patches`` (a
    ``nodulelearn.datasets.patches.Patches``): see ``with_intervals``."""
    probabilities = predict_patches(model, patches.images, batch_size, outputs, adapter)
    return with_intervals(patches.labels, probabilities)


def with_intervals(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """``binary_metrics`` plus ``<metric>_ci_low`` / ``_ci_high``: Wilson 95% intervals of the
    accuracy, sensitivity and specificity, DeLong's of the AUC (None where a class is absent)."""
    from nodulelearn.sensitivity.intervals import delong_interval, wilson_interval

    labels = np.asarray(labels).reshape(-1)
    probabilities = np.asarray(probabilities, np.float64).reshape(-1)
    metrics = binary_metrics(labels, probabilities)
    predicted = probabilities >= 0.5
    for name, members in (("accuracy", np.ones_like(predicted)), ("sensitivity", labels == 1),
                          ("specificity", labels == 0)):
        hits = int(np.count_nonzero((predicted == (labels == 1))[members]))
        total = int(np.count_nonzero(members))
        low, high = wilson_interval(hits, total) if total else (None, None)
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high
    metrics["auc_ci_low"], metrics["auc_ci_high"] = delong_interval(labels, probabilities)
    return metrics


def _cell(row: dict, column: str, intervals: bool) -> str:
    value = row.get(column)
    if value is None:
        return "n/a"
    low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    if intervals and low is not None and high is not None:
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.4f}"


def summary_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A short fixed-width table of ``metrics.json`` (one row per test distribution or set of
    patches), with the 95% intervals of ``with_intervals`` where every row has them."""
    columns = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
    intervals = bool(metrics) and all("accuracy_ci_low" in row for row in metrics.values())
    cell = 21 if intervals else 17
    width = max([len("test distribution")] + [len(d) for d in metrics])
    header = (f"{'test distribution':<{width}}  " + "  ".join(f"{c:>{cell}}" for c in columns)
              + "      n")
    lines = [header, "-" * len(header)]
    for dist, row in metrics.items():
        cells = "  ".join(f"{_cell(row, c, intervals):>{cell}}" for c in columns)
        lines.append(f"{dist:<{width}}  {cells}  {row.get('n', 0):>5}")
    return "\n".join(lines)
