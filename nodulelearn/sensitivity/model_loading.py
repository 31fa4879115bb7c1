"""Loading ``bin/train`` run directories for the analysis.

Model files, their checks and the JSON reader live in ``nodulelearn.model_io`` (shared with
``bin/evaluate``); they are re-exported here for the analysis' callers.
"""

from __future__ import annotations

import dataclasses
import os

import keras

from nodulelearn.model_io import (
    ModelLoadError,
    check_input_shape,
    load_keras_model,
    read_json,
)

__all__ = ["ModelLoadError", "TrainedRun", "check_input_shape", "load_keras_model", "load_run"]

RUN_CONFIG = "config.json"
RUN_MODEL = "model.keras"
RUN_ENCODER = "encoder.keras"


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
        config = read_json(config_path, what="run configuration")
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
