"""Every use of a private Keras API, in one place, checked against the installed Keras.

nodulelearn needs three things Keras 3 offers no public API for:

- a model's distribution strategy as Keras stores it (``None`` outside a strategy scope), and
- the hook that builds the compiled metrics from a first batch (``_maybe_symbolic_build`` /
  ``_symbolic_build``), which the training model overrides to work around keras-team/keras#20585
  under ``MultiWorkerMirroredStrategy`` (``nodulelearn.training.fitting``);
- a functional model's operations and a layer's call nodes (``_operations``,
  ``_inbound_nodes``), to rebuild a model for Grad-CAM (``nodulelearn.sensitivity.saliency_maps``).

They were written for the Keras major version ``TESTED_MAJOR``; :func:`check` says, in one
message, which of them the installed Keras lacks. Imports Keras only when used.
"""

from __future__ import annotations

from typing import Any

#: The Keras major version these adapters were written and tested for (setup.cfg bounds it).
TESTED_MAJOR = 3
#: Private attributes used, on the class that must have them.
MODEL_METHODS = ("_maybe_symbolic_build", "_symbolic_build")


class KerasCompatibilityError(RuntimeError):
    """The installed Keras lacks a private API nodulelearn relies on."""


def _keras():
    import keras

    return keras


def _fail(what: str) -> KerasCompatibilityError:
    version = getattr(_keras(), "__version__", "unknown")
    return KerasCompatibilityError(
        f"nodulelearn needs {what}, which the installed Keras {version} lacks. nodulelearn is "
        f"tested with Keras {TESTED_MAJOR}.x (>=3.10); install e.g. "
        f"'keras>={TESTED_MAJOR}.10,<{TESTED_MAJOR + 1}'.")


def check() -> None:
    """Raises ``KerasCompatibilityError`` naming every private API the installed Keras lacks.

    Builds a two-layer functional model to look at its call nodes (no TF function is traced).
    """
    keras = _keras()
    problems = []
    major = str(getattr(keras, "__version__", "0")).split(".")[0]
    if major != str(TESTED_MAJOR):
        problems.append(f"Keras major version {TESTED_MAJOR}")
    problems += [f"keras.Model.{name}" for name in MODEL_METHODS
                 if not callable(getattr(keras.Model, name, None))]
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(inputs))
    if not getattr(model, "_operations", None):
        problems.append("functional models' _operations")
    nodes = getattr(dense, "_inbound_nodes", None)
    if not nodes or not hasattr(nodes[0], "input_tensors") or not hasattr(nodes[0], "outputs"):
        problems.append("layers' _inbound_nodes with input_tensors and outputs")
    if not hasattr(model, "_distribute_strategy"):
        problems.append("models' _distribute_strategy")
    if problems:
        raise _fail(", ".join(problems))


def model_strategy(model) -> Any:
    """The ``tf.distribute`` strategy ``model`` was built under, or ``None``."""
    try:
        return model._distribute_strategy
    except AttributeError:
        raise _fail("models' _distribute_strategy") from None


def operations(model) -> list:
    """The operations (layers) of a functional model; empty for other models."""
    return list(getattr(model, "_operations", None) or [])


def inbound_nodes(layer) -> list:
    """The call nodes of ``layer`` (each with ``input_tensors`` and ``outputs``)."""
    try:
        return list(layer._inbound_nodes)
    except AttributeError:
        raise _fail("layers' _inbound_nodes") from None


class LocalFirstBatchBuild:
    """Mixin for a ``keras.Model``: under a distribution strategy, the compiled metrics are built
    from the local replica's part of the first batch, not from a cross-replica reduction of it
    (which fails on an ``(images, labels)`` tuple: keras-team/keras#20585). Only the batch's
    shapes matter for that build."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        import tensorflow as tf

        strategy = model_strategy(self)
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        local = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, batch)
        with strategy.scope():
            self._symbolic_build(data_batch=local)
