"""Writes that never leave a half-written file, shared by every part of nodulelearn.

Each file is written under a temporary name in its destination directory and renamed into place
with ``os.replace`` (atomic on POSIX), so an interrupted run, analysis or study never leaves a
partial file that a later step could take for a result.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _from_h5py(tb) -> bool:
    return tb is not None and "h5py" in traceback.extract_tb(tb)[-1].filename


@contextlib.contextmanager
def quiet_h5py_close_errors() -> Iterator[None]:
    """Drops, while the block runs, the tracebacks h5py prints when a failed write's objects fail
    again to close ("Exception ignored in ... __dealloc__", through ``sys.excepthook`` and then
    ``sys.unraisablehook``): the write's own ``OSError`` tells the caller the same, once.

    What HDF5 still holds after a failed write is closed at exit, where it can print again or
    crash; ``cli_env.exit_on_os_error`` ends a command without that clean-up. Tracebacks raised
    outside h5py's own code are reported as usual.
    """
    previous_except, previous_unraisable = sys.excepthook, sys.unraisablehook

    def excepthook(kind, value, tb):
        if not _from_h5py(tb):
            previous_except(kind, value, tb)

    def unraisablehook(unraisable):
        if not _from_h5py(unraisable.exc_traceback):
            previous_unraisable(unraisable)

    sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
    try:
        yield
    finally:
        sys.excepthook, sys.unraisablehook = previous_except, previous_unraisable


# mkstemp's random part: 8 characters of this alphabet (tempfile._RandomNameSequence).
_TEMP_RANDOM = r"[a-z0-9_]{8}"


def temporaries_of(path: str | os.PathLike) -> list[Path]:
    """The temporary files ``atomic_path`` leaves beside ``path`` if its process is killed
    mid-write (``.<name>.<8 random characters><extensions>``), sorted.

    Only that exact pattern matches: other hidden files (macOS' ``._<name>``, an editor's
    ``.<name>.swp``) are not ours and are never listed.
    """
    path = Path(path)
    pattern = re.compile(
        re.escape(f".{path.name}.") + _TEMP_RANDOM + re.escape("".join(path.suffixes))
    )
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return sorted(path.parent / name for name in names
                  if pattern.fullmatch(name) and (path.parent / name).is_file())


def remove_temporaries(path: str | os.PathLike) -> list[Path]:
    """Deletes the orphan temporaries of ``path`` (``temporaries_of``) and returns them.

    Call it only while no other process writes ``path`` (e.g. under the lock of its folder).
    """
    removed = []
    for tmp in temporaries_of(path):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path next to ``path``; renames it to ``path`` if the block succeeds.

    The temporary name keeps ``path``'s extensions (``.weights.h5`` whole), so writers that check
    them (``model.save``, ``save_weights``, ``savefig``) accept it. Parent directories are created;
    on failure the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        with quiet_h5py_close_errors():  # model.save and save_weights write HDF5
            yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are for everyone to read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[str]:
    """Yields a fresh temporary directory next to ``path``; if the block succeeds, it replaces
    ``path`` (a previous directory there is moved aside, then deleted). On failure the temporary
    directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old = None
        if path.exists():
            old = tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
            os.replace(path, os.path.join(old, path.name))
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (flushed to disk first); returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def to_jsonable(value: Any) -> Any:
    """Converts numpy scalars/arrays, tuples and non-finite floats into plain JSON values.

    NaN and infinities become ``None`` (JSON has no NaN).
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def write_json_atomic(path: str | os.PathLike, data: Any, *, sort_keys: bool = False) -> Path:
    """Writes ``data`` (made JSON-able with ``to_jsonable``) as indented JSON, atomically."""
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=sort_keys, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def write_csv_atomic(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Writes ``rows`` as CSV with header ``columns`` (missing values empty), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return write_text_atomic(path, buffer.getvalue())


def save_figure_atomic(path: str | os.PathLike, figure, *, dpi: int = 120) -> Path:
    """Saves a matplotlib ``figure`` as PNG (tight bounding box) atomically, then closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return write_bytes_atomic(path, buffer.getvalue())
