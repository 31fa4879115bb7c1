"""Loading saved classifiers and checking what they output: one place for every binary that runs
a model (``bin/evaluate``, ``bin/probe_features``, the study).

Model files come from other people. Keras' safe mode refuses to deserialise Python code (a
``Lambda`` layer's function), so it is on unless the caller explicitly opts out. A file that is
not what its name says (truncated, not a zip archive) is reported as such, not as "not found".

Outputs are checked before anyone computes a metric from them: one output tensor of shape
``[B, 1]`` or ``[B]``, finite, and P(malignant) in [0, 1] unless the caller says the model
outputs logits. This module imports no training code and no TensorFlow at import time.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

OUTPUTS = ("probability", "logit")
# Probabilities may leave [0, 1] by float round-off only.
PROBABILITY_TOLERANCE = 1e-4


class ModelLoadError(ValueError):
    """A model file or run directory could not be used; the message says why and what to do."""


class ModelOutputError(ValueError):
    """The model's output is not a single finite P(malignant) (or logit) per image."""


def read_json(path: str | os.PathLike, *, what: str = "JSON file") -> Any:
    """Parses a JSON file; a missing, unreadable or malformed file is named in the error.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. "run configuration").

    Raises:
        ModelLoadError: naming the path and the problem (with the line and column of a syntax
            error).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"The {what} {path!r} does not exist.") from None
    except json.JSONDecodeError as err:
        raise ModelLoadError(
            f"The {what} {path!r} is not valid JSON (truncated or edited by hand?): {err.msg} "
            f"at line {err.lineno}, column {err.colno}."
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"Could not read the {what} {path!r}: {err}") from None


def load_keras_model(path: str | os.PathLike, *, unsafe_deserialization: bool = False):
    """Loads a ``.keras`` model, with Keras' safe mode on unless ``unsafe_deserialization``.

    Args:
        path: a ``.keras`` file.
        unsafe_deserialization: allow the file to run arbitrary Python code when loaded (e.g. a
            ``Lambda`` layer). Only for files from a source you trust.

    Returns:
        The ``keras.Model``, not compiled (analysis and evaluation need no loss or optimizer).

    Raises:
        ModelLoadError: missing file, wrong extension, a file that is not a Keras archive
            (truncated, another format), code refused by safe mode, or any other
            deserialisation failure (with Keras' reason).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelLoadError(f"Expected a .keras model file. Received a directory: {path!r}.")
    if not os.path.isfile(path):
        raise ModelLoadError(f"Model file not found: expected a .keras file at {path!r}.")
    if not path.endswith(".keras"):
        raise ModelLoadError(
            f"Expected a Keras 3 model file ending in .keras. Received: {path!r}."
        )
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as err:
        raise ModelLoadError(f"Could not read the model file {path!r}: {err}") from None
    if not is_zip:
        raise ModelLoadError(
            f"The model file {path!r} ({os.path.getsize(path)} bytes) is not a Keras model "
            "archive: a .keras file is a zip archive, and this one is not (truncated by an "
            "interrupted copy or write, or a file of another format renamed to .keras)."
        )
    import keras  # here, not at import time: reading JSON or checking outputs needs no Keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe_deserialization)
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
        if isinstance(err, (zipfile.BadZipFile, EOFError, KeyError)):
            raise ModelLoadError(
                f"The model file {path!r} is a damaged Keras archive (truncated or corrupt "
                f"zip): {type(err).__name__}: {message}"
            ) from err
        raise ModelLoadError(f"Could not load the Keras model {path!r}: {message}") from err


def check_input_shape(model, image_size: int) -> None:
    """Checks that ``model`` takes one input ``[B, image_size, image_size, 1]``.

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


def model_image_size(model) -> int | None:
    """The square image size a model declares (``inputs[0]`` of shape ``[B, S, S, 1]``), or
    ``None`` when it declares none (a subclassed model, open spatial dimensions)."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    shape = tuple(inputs[0].shape)
    if len(shape) == 4 and shape[1] is not None and shape[1] == shape[2]:
        return int(shape[1])
    return None


def check_single_output(model) -> None:
    """Checks that ``model`` declares one output of shape ``[B, 1]`` or ``[B]`` (if declared).

    Raises:
        ModelOutputError: several outputs, or an output with more than one value per image.
    """
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return  # a subclassed model: ``output_column`` checks the first batch instead
    if len(outputs) != 1:
        raise ModelOutputError(
            "Expected a classifier with one output, P(malignant) (or a logit) of shape [B, 1]. "
            f"Received a model with {len(outputs)} outputs."
        )
    shape = tuple(outputs[0].shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ModelOutputError(
            "Expected the model to output one P(malignant) (or logit) per image, shape [B, 1] "
            f"or [B]. Received output shape {shape}."
        )


def check_model(model, image_size: int) -> None:
    """``check_input_shape`` and ``check_single_output``: the model fits the analysis."""
    check_input_shape(model, image_size)
    check_single_output(model)


def output_column(outputs):
    """A model's ``[B, 1]`` or ``[B]`` output as ``[B]`` (a TF tensor or an array).

    Raises:
        ModelOutputError: several output tensors, or any other shape.
    """
    if isinstance(outputs, (list, tuple, dict)):
        raise ModelOutputError(
            "Expected a classifier with one output, P(malignant) (or a logit) of shape [B, 1]. "
            f"Received {len(outputs)} outputs."
        )
    shape = tuple(outputs.shape)
    if len(shape) == 2 and shape[-1] == 1:
        return outputs[:, 0]
    if len(shape) == 1:
        return outputs
    raise ModelOutputError(
        "Expected the model to output one P(malignant) (or logit) per image, shape [B, 1] or "
        f"[B]. Received output shape {shape}."
    )


def check_probabilities(outputs, *, where: str) -> np.ndarray:
    """Checks that ``outputs`` are finite P(malignant) in [0, 1]; returns them as float64 ``[n]``.

    Args:
        outputs: the model's outputs, ``[n]`` or ``[n, 1]``.
        where: what produced them, for the message (e.g. ``"model.keras on clinical"``).

    Raises:
        ModelOutputError (a ``ValueError``): another shape, non-finite values, or values outside
            [0, 1] (the message suggests ``--outputs=logit``).
    """
    raw = _finite_column(outputs, where)
    low, high = (float(raw.min()), float(raw.max())) if raw.size else (0.0, 1.0)
    if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
        raise ModelOutputError(
            f"{where}: expected P(malignant) in [0, 1]; the model's outputs range over "
            f"[{low:.4g}, {high:.4g}], so it looks like it outputs logits. If it does, pass "
            "--outputs=logit (library: outputs='logit')."
        )
    return np.clip(raw, 0.0, 1.0)


def to_probabilities(outputs, kind: str = "probability", *, where: str = "the model") -> np.ndarray:
    """Model outputs as checked float64 P(malignant) ``[n]``.

    Args:
        outputs: the model's outputs, ``[n]`` or ``[n, 1]``.
        kind: ``"probability"`` (checked to lie in [0, 1]) or ``"logit"`` (sigmoid applied).
        where: what produced them, for the message.

    Raises:
        ValueError: unknown ``kind``.
        ModelOutputError: see ``check_probabilities`` (logits are checked to be finite).
    """
    if kind not in OUTPUTS:
        raise ValueError(f"Expected outputs to be one of {OUTPUTS}. Received: outputs={kind!r}")
    if kind == "probability":
        return check_probabilities(outputs, where=where)
    return stable_sigmoid(_finite_column(outputs, where))


def stable_sigmoid(x) -> np.ndarray:
    """float64 sigmoid that neither overflows nor loses precision for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _finite_column(outputs, where: str) -> np.ndarray:
    if not isinstance(outputs, (list, tuple, dict)):
        outputs = np.asarray(outputs)
    raw = np.asarray(output_column(outputs), dtype=np.float64)
    bad = np.count_nonzero(~np.isfinite(raw))
    if bad:
        raise ModelOutputError(
            f"{where}: the model produced {bad} non-finite outputs (NaN or inf) out of "
            f"{raw.size}; expected finite P(malignant) or logits."
        )
    return raw
