"""The run directory of one training run: its layout, its writers and ``load_run``.

The one owner of the run-directory contract, used by training, evaluation, the sensitivity
analysis and the study (it imports no training, analysis or study code). Layout:

    config.json     the resolved training config (``TrainConfig.to_dict()`` + out_dir, ...)
    status.json     {"state": "new" | "running" | "complete" | "failed" | "interrupted", ...}
    model.keras     the classifier, image [B, H, W, 1] -> P(malignant) [B, 1]
    encoder.keras   the encoder, image -> embedding [B, D]
    saved_model/    the classifier as a TensorFlow SavedModel
    history.csv     one row per phase and epoch
    metrics.json    {test distribution: {accuracy, ..., auc, n}}
    logs/           TensorBoard, HParams and per-phase CSV logs
    backup/<phase>/ resume state while the run is unfinished (``nodulelearn.training.callbacks``)

``model.keras`` is renamed into place last, just before ``status.json`` says ``complete``.
While a process works on the run it holds the directory's lock (``nodulelearn.locks``).
Temporary files are hidden (``.name.*``); those a kill left behind are removed on the next start.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodulelearn.atomic_files import (
    atomic_directory,
    atomic_path,
    write_csv_atomic,
    write_text_atomic,
)
from nodulelearn.locks import LOCK_FILE

CONFIG = "config.json"
STATUS = "status.json"
MODEL = "model.keras"
ENCODER = "encoder.keras"
SAVED_MODEL = "saved_model"
HISTORY = "history.csv"
METRICS = "metrics.json"
LOGS = "logs"
BACKUP = "backup"

#: config.json keys that may differ between a run and its resumption (``environment``: the
#: versions and git commit it was launched with).
NOT_PART_OF_IDENTITY = ("out_dir", "overwrite", "strategy", "environment")


#: The values of ``status.json``'s "state".
STATES = ("new", "running", "complete", "failed", "interrupted")


class RunDirectoryError(RuntimeError):
    """The run directory holds another run (different config) or something else entirely."""


_HDF5_FILENAME = re.compile(r"filename = '([^']+)'")


def describe_os_error(error: OSError) -> str:
    """One line for an environment error a user can fix: the path, the problem, what to do."""
    hints = {
        errno.ENOSPC: "the disk is full; free some space and re-run (a run resumes from its "
                      "last backup)",
        errno.EDQUOT: "the disk quota is exceeded; free some space and re-run",
        errno.EACCES: "permission denied; choose a writable directory",
        errno.EPERM: "operation not permitted; choose a writable directory",
        errno.EROFS: "the filesystem is read-only; choose a writable directory",
        errno.ENOTDIR: "a path component is a file, not a directory; choose another path",
        errno.EEXIST: "a file is in the way; choose another path",
        errno.EISDIR: "a directory is in the way; choose another path",
        errno.EFBIG: "the file size limit is reached (ulimit -f); raise it or write elsewhere",
    }
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    problem = hints.get(error.errno, (error.strerror or first_line).splitlines()[0])
    # h5py's errors name the file inside their text: "... filename = '/x/y.h5', ..."
    filename = error.filename or next(iter(_HDF5_FILENAME.findall(str(error))), None)
    if filename:
        return f"{filename}: {problem}"
    return f"{problem} ({first_line})" if error.errno in hints else problem


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """``json.dump`` (indented, sorted keys; NaN raises) written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_save_model(model, path: str | os.PathLike) -> None:
    """``model.save(path)`` (``.keras`` format) through a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def atomic_export(model, path: str | os.PathLike) -> None:
    """``model.export(path)`` (TensorFlow SavedModel) into a temporary folder, then renamed."""
    with atomic_directory(path) as tmp:
        model.export(tmp, verbose=False)


class RunDirectory:
    """One run's directory. All writes of result files are atomic."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    def backup_dir(self, phase: str) -> Path:
        return self.path / BACKUP / phase

    def read_json(self, name: str) -> Any:
        """The JSON file ``name`` of the run.

        Raises:
            RunDirectoryError: the file is not valid JSON (naming it, with line and column).
            OSError: it cannot be read.
        """
        path = self.file(name)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            where = (f"{error.msg} at line {error.lineno}, column {error.colno}"
                     if isinstance(error, json.JSONDecodeError) else str(error))
            raise RunDirectoryError(
                f"{path} is not valid JSON ({where}): truncated or edited by hand? Delete the run "
                "directory, or pass --overwrite to start the run over.") from None

    def remove_stale_temporaries(self) -> list[Path]:
        """Removes the hidden temporary files and folders a killed process left; returns them.

        Only this process may write the run (it holds the lock), so every temporary is stale.
        """
        stale = [p for p in self.path.glob(".*") if p.name != LOCK_FILE]
        stale += [p for p in self.path.glob(f"{BACKUP}/*/.*")]
        for path in stale:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return stale

    def status(self) -> dict[str, Any]:
        """``{"state": "running" | "complete" | "failed", ...}``, or ``{"state": "new"}``."""
        if not self.file(STATUS).exists():
            return {"state": "new"}
        status = self.read_json(STATUS)
        if not isinstance(status, dict):
            raise _damaged(self.file(STATUS), "the run status should be a JSON object {...}, "
                           f"but it holds a {_json_type(status)}: {_excerpt(status)}",
                           RunDirectoryError)
        _state(status, self.file(STATUS), RunDirectoryError)
        return status

    def set_status(self, state: str, **details: Any) -> None:
        atomic_write_json(self.file(STATUS), {"state": state, **details})

    def prepare(self, config: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Claims the directory for ``config``.

        A new or empty directory is claimed; one holding the same config is kept (the run resumes
        or is already complete); anything else is refused unless ``overwrite``, which empties it.

        Raises:
            RunDirectoryError: the directory holds a different config or unknown files.
        """
        if overwrite and self.file(CONFIG).exists():
            # Only ever deletes a nodulelearn run directory; the lock file stays, it is held.
            for entry in self._entries():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        if self.path.exists() and self._entries():
            if not self.file(CONFIG).exists():
                raise RunDirectoryError(
                    f"The run directory {self.path} is not empty and holds no config.json, so it "
                    "is not a nodulelearn run (so --overwrite will not delete it either). Choose "
                    "another --out_dir.")
            old = self.read_json(CONFIG)
            if not isinstance(old, dict):
                raise _damaged(self.file(CONFIG), "the run configuration should be a JSON object "
                               f"{{...}}, but it holds a {_json_type(old)}: {_excerpt(old)}. "
                               "Pass --overwrite to start the run over", RunDirectoryError)
            differences = _differences(old, config)
            if differences:
                raise RunDirectoryError(
                    f"The run directory {self.path} holds a run with a different config "
                    f"({'; '.join(differences)}). Choose another --out_dir, or pass --overwrite "
                    "to delete it and start over.")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file(CONFIG), dict(config))

    def _entries(self) -> list[Path]:
        return [p for p in self.path.iterdir() if p.name != LOCK_FILE]

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Writes ``history.csv`` (one row per phase and epoch; columns: union of the keys)."""
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        write_csv_atomic(self.file(HISTORY), rows, columns)


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - set(NOT_PART_OF_IDENTITY))
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys
            if old.get(k) != new.get(k)]


@dataclasses.dataclass
class TrainedRun:
    """A finished ``bin/train`` run directory, loaded.

    Attributes:
        run_dir: the directory.
        name: its base name (used to label comparisons).
        config: the parsed ``config.json`` (``{}`` if absent).
        model: the classifier, image -> P(malignant).
        encoder: the image -> embedding model, or ``None`` if the run has none.
        test_dists: the run's test distributions (from ``config.json``), possibly empty.
        metrics: the parsed ``metrics.json``, or ``None`` if absent.
        status: ``status.json``'s state (``"complete"``; ``"new"`` for a directory without one).
    """

    run_dir: str
    name: str
    config: dict
    model: Any
    encoder: Any | None
    test_dists: tuple[str, ...]
    metrics: dict | None = None
    status: str = "complete"


def load_run(run_dir: str | os.PathLike, *, unsafe_deserialization: bool = False) -> TrainedRun:
    """Loads the classifier, encoder, configuration and metrics of a ``bin/train`` run directory.

    Args:
        run_dir: the run directory.
        unsafe_deserialization: allow the model files to run Python code when loaded (see
            ``nodulelearn.model_io.load_keras_model``). Only for files from a source you trust.

    Raises:
        ModelLoadError: the directory or its ``model.keras`` is missing (the message lists what
            the directory holds and its status), ``run_dir`` is a file, a JSON file is damaged,
            or loading fails.
    """
    from nodulelearn.model_io import ModelLoadError, load_keras_model, read_json

    run_dir = os.fspath(run_dir)
    if os.path.isfile(run_dir):
        raise ModelLoadError(
            f"{run_dir!r} is a file, not a run directory: pass the folder bin/train wrote. A "
            "model file goes to --model (library: keras.saving.load_model or "
            "nodulelearn.sensitivity.load_keras_model).")
    if not os.path.isdir(run_dir):
        raise ModelLoadError(f"Run directory not found: {run_dir!r}.")
    status = "new"
    if os.path.isfile(os.path.join(run_dir, STATUS)):
        status = _state(_read_object(os.path.join(run_dir, STATUS), "run status", read_json),
                        os.path.join(run_dir, STATUS), ModelLoadError)
    model_path = os.path.join(run_dir, MODEL)
    if not os.path.isfile(model_path):
        present = ", ".join(sorted(os.listdir(run_dir))) or "nothing"
        raise ModelLoadError(
            f"The run directory {run_dir!r} has no {MODEL} (the trained classifier); it "
            f"holds: {present} (status: {status}). Is training finished? Pass a finished "
            "bin/train run directory, or a model file with --model."
        )
    config = {}
    if os.path.isfile(os.path.join(run_dir, CONFIG)):
        config = _read_object(os.path.join(run_dir, CONFIG), "run configuration", read_json)
    test_dists = _test_dists(config, os.path.join(run_dir, CONFIG))
    _check_analysis_keys(config, os.path.join(run_dir, CONFIG))
    metrics = None
    if os.path.isfile(os.path.join(run_dir, METRICS)):
        metrics = _read_object(os.path.join(run_dir, METRICS), "run metrics", read_json)
    encoder_path = os.path.join(run_dir, ENCODER)
    encoder = None
    if os.path.isfile(encoder_path):
        encoder = load_keras_model(encoder_path, unsafe_deserialization=unsafe_deserialization)
    return TrainedRun(
        run_dir=run_dir,
        name=os.path.basename(os.path.normpath(run_dir)),
        config=config,
        model=load_keras_model(model_path, unsafe_deserialization=unsafe_deserialization),
        encoder=encoder,
        test_dists=tuple(test_dists),
        metrics=metrics,
        status=status,
    )


def _damaged(path: str | os.PathLike, problem: str, error: type[Exception]) -> Exception:
    return error(f"{os.fspath(path)} is damaged: {problem} (edited by hand, or written by another "
                 "program?). Re-run the training into a new directory, or restore the file.")


def _read_object(path: str, what: str, read_json) -> dict:
    """The JSON object (``{...}``) in ``path``; any other JSON value is a damaged file."""
    from nodulelearn.model_io import ModelLoadError

    data = read_json(path, what=what)
    if not isinstance(data, dict):
        raise _damaged(path, f"the {what} should be a JSON object {{...}}, but it holds a "
                       f"{_json_type(data)}: {_excerpt(data)}", ModelLoadError)
    return data


def _state(status: Mapping[str, Any], path: str | os.PathLike, error: type[Exception]) -> str:
    """``status["state"]`` ("new" if absent), which must be one of ``STATES``."""
    state = status.get("state", "new")
    if state not in STATES:
        raise _damaged(path, f"its \"state\" should be one of {', '.join(STATES)}; it is "
                       f"{_excerpt(state)}", error)
    return state


def _test_dists(config: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """The run's test distributions: a list of names (or, from older runs, "a,b")."""
    from nodulelearn.model_io import ModelLoadError

    test_dists = config.get("test_dists") or ()
    if isinstance(test_dists, str):
        test_dists = [d for d in test_dists.split(",") if d]
    if not isinstance(test_dists, (list, tuple)) or not all(
            isinstance(d, str) and d for d in test_dists):
        raise _damaged(path, "its \"test_dists\" should be a list of distribution names; it is "
                       f"{_excerpt(test_dists)}", ModelLoadError)
    return tuple(test_dists)


def _check_analysis_keys(config: Mapping[str, Any], path: str) -> None:
    """The other keys the analysis reads: ``train_dist`` (a name) and ``image_size`` (pixels)."""
    from nodulelearn.model_io import ModelLoadError

    train_dist = config.get("train_dist")
    if train_dist is not None and not (isinstance(train_dist, str) and train_dist):
        raise _damaged(path, "its \"train_dist\" should be a distribution name; it is "
                       f"{_excerpt(train_dist)}", ModelLoadError)
    image_size = config.get("image_size")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise _damaged(path, "its \"image_size\" should be a number of pixels; it is "
                       f"{_excerpt(image_size)}", ModelLoadError)


def _json_type(value: Any) -> str:
    names = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _excerpt(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
