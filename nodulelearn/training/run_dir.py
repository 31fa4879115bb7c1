"""The run directory: atomic result files, the config check, run status and resume state.

Layout: ``config.json``, ``status.json``, ``model.keras``, ``encoder.keras``, ``saved_model/``,
``history.csv``, ``metrics.json``, ``logs/`` (TensorBoard, HParams and per-phase CSV logs) and,
while a run is unfinished, ``backup/<phase>/`` (see ``nodulelearn.training.callbacks``).
``model.keras`` is renamed into place last, just before ``status.json`` says ``complete``.
While a process works on the run it holds the directory's lock (``nodulelearn.locks``).
Temporary files are hidden (``.name.*``); those a kill left behind are removed on the next start.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from nodulelearn.atomic_files import atomic_path, write_text_atomic
from nodulelearn.locks import LOCK_FILE

#: config.json keys that may differ between a run and its resumption (``environment``: the
#: versions and git commit it was launched with).
NOT_PART_OF_IDENTITY = ("out_dir", "overwrite", "strategy", "environment")


class RunDirectoryError(RuntimeError):
    """The run directory holds another run (different config) or something else entirely."""


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
    }
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    problem = hints.get(error.errno, error.strerror or first_line)
    if error.filename:
        return f"{error.filename}: {problem}"
    return f"{problem} ({first_line})" if error.errno in hints else problem


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """``json.dump`` (indented, sorted keys; NaN raises) written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def atomic_save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save(path)`` (``.keras`` format) through a temporary file and ``os.replace``."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def atomic_export(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.export(path)`` (TensorFlow SavedModel) into a temporary folder, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.export(str(tmp), verbose=False)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


class RunDirectory:
    """One run's directory. All writes of result files are atomic."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def backup_dir(self, phase: str) -> Path:
        return self.path / "backup" / phase

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
        stale += [p for p in self.path.glob("backup/*/.*")]
        for path in stale:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return stale

    def status(self) -> dict[str, Any]:
        """``{"state": "running" | "complete" | "failed", ...}``, or ``{"state": "new"}``."""
        if not self.file("status.json").exists():
            return {"state": "new"}
        return self.read_json("status.json")

    def set_status(self, state: str, **details: Any) -> None:
        atomic_write_json(self.file("status.json"), {"state": state, **details})

    def prepare(self, config: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Claims the directory for ``config``.

        A new or empty directory is claimed; one holding the same config is kept (the run resumes
        or is already complete); anything else is refused unless ``overwrite``, which empties it.

        Raises:
            RunDirectoryError: the directory holds a different config or unknown files.
        """
        if overwrite and self.file("config.json").exists():
            # Only ever deletes a nodulelearn run directory; the lock file stays, it is held.
            for entry in self._entries():
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        if self.path.exists() and self._entries():
            if not self.file("config.json").exists():
                raise RunDirectoryError(
                    f"The run directory {self.path} is not empty and holds no config.json, so it "
                    "is not a nodulelearn run (so --overwrite will not delete it either). Choose "
                    "another --out_dir.")
            old = self.read_json("config.json")
            differences = _differences(old, config)
            if differences:
                raise RunDirectoryError(
                    f"The run directory {self.path} holds a run with a different config "
                    f"({'; '.join(differences)}). Choose another --out_dir, or pass --overwrite "
                    "to delete it and start over.")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file("config.json"), dict(config))

    def _entries(self) -> list[Path]:
        return [p for p in self.path.iterdir() if p.name != LOCK_FILE]

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        """Writes ``history.csv`` (one row per phase and epoch; columns: union of the keys)."""
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        lines = [",".join(columns)]
        lines += [",".join("" if row.get(c) is None else str(row[c]) for c in columns)
                  for row in rows]
        write_text_atomic(self.file("history.csv"), "\n".join(lines) + "\n")


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - set(NOT_PART_OF_IDENTITY))
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys
            if old.get(k) != new.get(k)]
