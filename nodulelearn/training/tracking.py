"""Experiment tracking: the software a run was made with, and TensorBoard HParams.

``environment()`` goes into ``config.json`` (under ``"environment"``, which is not part of a
run's identity: resuming with another version or commit continues the same run). Every run
writes ``logs/hparams/``: one HParams session (loss, hyperparameters, distribution, seed) with
the test metrics as scalars, so ``tensorboard --logdir <study out>`` compares a study's runs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

HPARAMS_DIR = "hparams"


@functools.cache
def git_commit(directory: str | None = None) -> str | None:
    """The commit of the git checkout holding ``directory`` (default: the nodulelearn package).

    None outside a checkout (an installed wheel), without a ``git`` program, or on any git error.
    """
    directory = directory or str(Path(__file__).resolve().parents[1])
    try:
        result = subprocess.run(["git", "-C", directory, "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """``{"nodulelearn", "tensorflow", "keras", "numpy": version, "git_commit": sha or None}``."""
    import keras
    import tensorflow as tf

    return {"nodulelearn": _version("nodulelearn"), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "git_commit": git_commit()}


def hparams(config, protocol: str) -> dict[str, bool | int | float | str]:
    """The run's hyperparameters as HParams values (scalars and strings only)."""
    def params(mapping):
        return ",".join(f"{k}={v}" for k, v in sorted(dict(mapping).items()))

    return {
        "loss": config.loss, "loss_params": params(config.loss_params), "protocol": protocol,
        "train_dist": config.train_dist, "seed": int(config.seed), "model": config.model,
        "model_params": params(config.model_params), "learning_rate": float(config.learning_rate),
        "batch_size": int(config.batch_size), "epochs": int(config.epochs),
        "probe_epochs": int(config.probe_epochs or 0), "n_train": int(config.n_train),
        "image_size": int(config.image_size), "augment": ",".join(config.augment),
        "deterministic": bool(config.deterministic),
    }


def write_hparams(log_dir: str | Path, values: dict[str, Any],
                  metrics: dict[str, dict[str, Any]], *, trial_id: str) -> Path:
    """Writes one HParams session into ``<log_dir>/hparams``: ``values`` and every finite test
    metric as the scalar ``test/<dist>/<metric>``. Returns the session folder."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    folder = Path(log_dir) / HPARAMS_DIR
    writer = tf.summary.create_file_writer(str(folder))
    try:
        with writer.as_default():
            hp.hparams(values, trial_id=trial_id)
            for dist, row in metrics.items():
                for name, value in row.items():
                    if name != "n" and isinstance(value, (int, float)) and np.isfinite(value):
                        tf.summary.scalar(f"test/{dist}/{name}", float(value), step=0)
        writer.flush()
    finally:
        writer.close()
    return folder
