"""Loading classifiers (and encoders) from untrusted files and ``bin/train`` run directories.

Model files come from other people. Keras' safe mode refuses to deserialise Python code (a
``Lambda`` layer's function), so it is on unless the caller explicitly opts out.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras

RUN_CONFIG = "config.json"
RUN_MODEL = "model.keras"
RUN_ENCODER = "encoder.keras"


class ModelLoadError(ValueError):
    """A model file or run directory could not be used; the message says why and what to do."""


def load_keras_model(path: str, *, unsafe_deserialization: bool = False) -> keras.Model:
    """Loads a ``.keras`` model, with Keras' safe mode on unless ``unsafe_deserialization``.

    Args:
        path: a ``.keras`` file.
        unsafe_deserialization: allow the file to run arbitrary Python code when loaded (e.g. a
            ``Lambda`` layer). Only for files from a source you trust.

    Returns:
        The model, not compiled (the analysis needs no loss or optimizer).

    Raises:
        ModelLoadError: missing file, wrong extension, code refused by safe mode, or any other
            deserialisation failure (with Keras' reason).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelLoadError(f"Model file not found: expected a .keras file at {path!r}.")
    if not path.endswith(".keras"):
        raise ModelLoadError(
            f"Expected a Keras 3 model file ending in .keras. Received: {path!r}."
        )
    try:
        return keras.saving.load_model(
            path, compile=False, safe_mode=not unsafe_deserialization
        )
    except Exception as err:  # Keras raises ValueError, TypeError, ... with varied messages.
        message = str(err)
        if not unsafe_deserialization and (
            "safe_mode" in message or "unsafe_deserialization" in message
        ):
            raise ModelLoadError(
                f"Refusing to load {path!r}: it contains Python code (e.g. a Lambda layer) that "
                "would run when the model is deserialised, and model files may come from "
                "untrusted sources, so Keras' safe mode is on. If you trust the file's author, "
                "pass --unsafe_deserialization (library: unsafe_deserialization=True). "
                f"Keras said: {message}"
            ) from err
        raise ModelLoadError(f"Could not load the Keras model {path!r}: {message}") from err


def check_input_shape(model: keras.Model, image_size: int) -> None:
    """Checks that ``model`` takes ``[B, image_size, image_size, 1]`` images.

    Raises:
        ModelLoadError: naming the model's input shape and the distribution's image shape.
    """
    expected = (None, image_size, image_size, 1)
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return  # a subclassed model without a declared input: shapes show up when it is called
    if len(inputs) != 1:
        raise ModelLoadError(
            f"Expected a model with one image input of shape {expected}. "
            f"Received a model with {len(inputs)} inputs."
        )
    shape = tuple(inputs[0].shape)
    compatible = len(shape) == 4 and all(
        got is None or got == want for got, want in zip(shape[1:], expected[1:], strict=True)
    )
    if not compatible:
        raise ModelLoadError(
            f"The model's input shape {shape} does not match the distribution's image shape "
            f"{expected} (image_size={image_size}, one channel). Test on a distribution with "
            "the image size the model was trained on."
        )


@dataclasses.dataclass
class TrainedRun:
    """What the analysis uses from a ``bin/train`` run directory.

    Attributes:
        run_dir: the directory.
        name: its base name (used to label comparisons).
        config: the parsed ``config.json`` (``{}`` if absent).
        model: the classifier, image -> P(malignant).
        encoder: the image -> embedding model, or ``None`` if the run has none.
        test_dists: the run's test distributions (from ``config.json``), possibly empty.
    """

    run_dir: str
    name: str
    config: dict
    model: keras.Model
    encoder: keras.Model | None
    test_dists: tuple[str, ...]


def load_run(run_dir: str, *, unsafe_deserialization: bool = False) -> TrainedRun:
    """Loads the classifier, encoder and configuration of a ``bin/train`` run directory.

    Raises:
        ModelLoadError: the directory or its ``model.keras`` is missing, or loading fails.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise ModelLoadError(f"Run directory not found: {run_dir!r}.")
    model_path = os.path.join(run_dir, RUN_MODEL)
    if not os.path.isfile(model_path):
        present = ", ".join(sorted(os.listdir(run_dir))) or "nothing"
        raise ModelLoadError(
            f"The run directory {run_dir!r} has no {RUN_MODEL} (the trained classifier); it "
            f"holds: {present}. Is training finished? Pass a finished bin/train run directory, "
            "or a model file with --model."
        )
    config = {}
    config_path = os.path.join(run_dir, RUN_CONFIG)
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
    encoder_path = os.path.join(run_dir, RUN_ENCODER)
    encoder = None
    if os.path.isfile(encoder_path):
        encoder = load_keras_model(encoder_path, unsafe_deserialization=unsafe_deserialization)
    test_dists = config.get("test_dists") or ()
    if isinstance(test_dists, str):
        test_dists = [d for d in test_dists.split(",") if d]
    return TrainedRun(
        run_dir=run_dir,
        name=os.path.basename(os.path.normpath(run_dir)),
        config=config,
        model=load_keras_model(model_path, unsafe_deserialization=unsafe_deserialization),
        encoder=encoder,
        test_dists=tuple(test_dists),
    )
