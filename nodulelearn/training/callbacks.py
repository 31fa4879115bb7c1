"""Callbacks of the training loop: crash-safe backups, phase logs, divergence and degeneracy checks.

The backup (``backup/<phase>/latest.weights.h5`` + ``training_metadata.json``, the names of
``keras.callbacks.BackupAndRestore``) is written under a temporary name, flushed to disk and
renamed into place, so a kill or a full disk inside the write leaves the previous backup intact.
The weights file carries its own epoch (an HDF5 attribute), so the rename is the one commit point.
On resume the file is read through before it is trusted; an unreadable one is reported, set aside
(moved to ``backup_corrupt/<phase>/``, never deleted) and the phase restarts from its first
epoch.

Only public Keras API is used here (``save_weights``, ``load_weights``, ``optimizer.build``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nodulelearn.atomic_files import quiet_h5py_close_errors, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

WEIGHTS_FILE = "latest.weights.h5"
METADATA_FILE = "training_metadata.json"
#: HDF5 attribute of the weights file holding the number of finished epochs.
EPOCH_ATTRIBUTE = "nodulelearn_epochs_done"
#: Prefix of a backup being written (removed on the next start if a kill left it).
TEMPORARY_PREFIX = ".tmp-"
#: A trainable weight beyond this magnitude means the optimisation has blown up (healthy runs
#: stay near 1; a learning rate of 1e4 passes 1e4 within 2 smoke steps).
WEIGHT_LIMIT = 1e6
#: The same for the non-trainable state (batch-norm moving variances are squared activations:
#: 1e12 is an activation of 1e6; a learning rate of 1e4 reaches 1e19 in one smoke epoch).
STATE_LIMIT = 1e12

#: Where unreadable backups are moved (beside ``backup/``, which a complete run deletes).
CORRUPT_DIR = "backup_corrupt"

#: Test hook: ``fn(event, path)`` called at file events: ``"backup_written"`` (``path``: the
#: temporary weights file, complete, about to be renamed into place) and ``"model_staged"``
#: (``path``: the temporary ``model.keras``, evaluated next). Tests raise or ``os._exit`` here.
fault_hook: Callable[[str, Path], None] | None = None


def event(name: str, path: Path) -> None:
    """Calls the test hook, if any."""
    if fault_hook is not None:
        fault_hook(name, path)


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite, or the weights exploded."""


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # Not every filesystem lets a directory be fsync'ed.
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicBackup(keras.callbacks.Callback):
    """Backs the model and optimizer up at every epoch end; restores them at the start of ``fit``.

    ``fit`` must be called with ``initial_epoch=start_epoch``, the value of ``backed_up_epoch``
    (which also validates the file): restoring happens in ``on_train_begin``, once the model and
    its compiled metrics are built.

    Args:
        backup_dir: the phase's backup folder.
        start_epoch: epochs already done (0: nothing to restore).
    """

    def __init__(self, backup_dir: str | Path, start_epoch: int):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.start_epoch = start_epoch

    def on_train_begin(self, logs=None):
        if self.start_epoch == 0:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup_dir / WEIGHTS_FILE)

    def on_epoch_end(self, epoch, logs=None):
        save_weights_atomic(self.model, self.backup_dir / WEIGHTS_FILE, epochs_done=epoch + 1)
        # Informative (and BackupAndRestore's layout); the weights file's attribute is the truth.
        write_json_atomic(self.backup_dir / METADATA_FILE, {"epoch": epoch + 1, "batch": 0})


def save_weights_atomic(model: keras.Model, path: str | Path, *,
                        epochs_done: int | None = None) -> Path:
    """``model.save_weights(path)`` under a temporary name, flushed to disk, then renamed.

    Args:
        model: the model (its optimizer state is included when it is compiled).
        path: a ``.weights.h5`` path.
        epochs_done: stored in the file (``EPOCH_ATTRIBUTE``), so file and epoch commit together.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMPORARY_PREFIX}{os.getpid()}.weights.h5"
    try:
        with quiet_h5py_close_errors():
            model.save_weights(tmp, overwrite=True)
            if epochs_done is not None:
                import h5py

                with h5py.File(tmp, "a") as f:
                    f.attrs[EPOCH_ATTRIBUTE] = epochs_done
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        event("backup_written", tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    _fsync_directory(path.parent)
    return path


def readable_weights(path: str | Path, *, what: str = "weights file") -> bool:
    """Whether the weights file ``path`` exists and reads through; an unreadable one is logged
    (one warning naming it) and moved to ``backup_corrupt/`` beside its ``backup/`` folder (or
    beside the file), never deleted."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        _read_through(path)
        return True
    except (OSError, ValueError, KeyError, TypeError) as error:
        parent = path.parent
        folder = (parent.parent.with_name(CORRUPT_DIR) / parent.name
                  if parent.parent.name == "backup" else parent / CORRUPT_DIR)
        kept = set_aside(path, folder)
        log.warning("The %s %s is unreadable (%s); set aside as %s.", what, path,
                    type(error).__name__, kept)
        return False


def _read_through(path: Path) -> int | None:
    """Reads every dataset of the HDF5 file ``path``; returns its epoch attribute (or None)."""
    import h5py

    with h5py.File(path, "r") as f:
        def read(_, item):
            if isinstance(item, h5py.Dataset):
                item[()]
        f.visititems(read)
        epochs = f.attrs.get(EPOCH_ATTRIBUTE)
    return None if epochs is None else int(epochs)


def set_aside(path: Path, folder: Path) -> Path:
    """Moves ``path`` into ``folder`` (``name``, else ``name.2``, ...); returns the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        target = folder / (path.name if i == 1 else f"{path.name}.{i}")
        if not target.exists():
            os.replace(path, target)
            return target
    raise FileExistsError(f"Too many set-aside copies of {path.name} in {folder}.")


def backed_up_epoch(backup_dir: str | Path, *, phase: str = "") -> int:
    """The number of epochs the phase's backup holds (0 without a usable backup).

    The weights file is read through first. An unreadable one (truncated by a kill inside a
    non-atomic write, a full disk, a bad copy) is logged as a warning naming it, renamed to
    ``<run>/backup_corrupt/<phase>/`` and the phase restarts from its first epoch.
    """
    backup_dir = Path(backup_dir)
    weights = backup_dir / WEIGHTS_FILE
    metadata = backup_dir / METADATA_FILE
    if not weights.exists():
        return 0
    try:
        epochs = _read_through(weights)
        if epochs is None:  # Written by keras.callbacks.BackupAndRestore: trust its metadata.
            with open(metadata) as f:
                epochs = int(json.load(f)["epoch"])
        return epochs
    except (OSError, ValueError, KeyError, TypeError) as error:
        folder = backup_dir.parent.with_name(CORRUPT_DIR) / backup_dir.name
        kept = set_aside(weights, folder)
        if metadata.exists():
            set_aside(metadata, folder)
        log.warning("The backup %s is unreadable (%s: %s); set aside as %s, the %s phase "
                    "restarts from epoch 1.", weights, type(error).__name__,
                    str(error).splitlines()[0] if str(error) else "", kept,
                    phase or backup_dir.name)
        return 0


class PhaseLog(keras.callbacks.Callback):
    """``logs/history_<phase>.csv``, rewritten atomically at every epoch end.

    Rows of epochs at or after ``start_epoch`` (left by a run killed between logging and backing
    up, or by a backup set aside) are dropped at the start, so the log always matches the backup.
    The columns are those of ``keras.callbacks.CSVLogger``: ``epoch`` (0-based), the logs' keys
    sorted and, when no key is a validation one, ``val_<key>`` for each; a missing value is
    written ``MISSING`` ("NA"), as CSVLogger does. ``history.csv`` keeps these cells as they are.
    """

    def __init__(self, path: str | Path, start_epoch: int):
        super().__init__()
        self.path = Path(path)
        self.rows = [r for r in read_csv_rows(self.path) if int(r["epoch"]) < start_epoch]

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **{k: _cell(v) for k, v in (logs or {}).items()}})
        keys = sorted({k for row in self.rows for k in row} - {"epoch"})
        if not any(k.startswith("val_") for k in keys):
            keys += [f"val_{k}" for k in keys]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["epoch", *keys], restval=MISSING,
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buffer.getvalue())


#: How a phase log (and so ``history.csv``) writes a missing value: ``CSVLogger``'s marker.
MISSING = "NA"


def _cell(value: Any) -> Any:
    try:
        return float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return value


def history_value(cell: str | None) -> float | None:
    """A number of a phase log or ``history.csv`` cell; None for a missing one ("NA" or "")."""
    if cell is None or cell in ("", MISSING):
        return None
    return float(cell)


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """Rows of a phase log, cells as written (the last row of an epoch wins); [] if none.

    Rows with a missing or non-integer ``epoch`` (a line cut short) are skipped.
    """
    path = Path(path)
    if not path.exists():
        return []
    rows: dict[int, dict[str, str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if None in row or None in row.values():  # more or fewer cells than the header
                continue
            with contextlib.suppress(ValueError):
                rows[int(row["epoch"])] = row
    return [rows[k] for k in sorted(rows)]


class TrainingHealth(keras.callbacks.Callback):
    """Stops a diverged phase and warns about a degenerate one, at every epoch end.

    Raises ``TrainingDivergedError`` when the loss is NaN / infinite or a trainable weight is
    non-finite or beyond ``WEIGHT_LIMIT`` in magnitude (a learning rate far too high). It runs
    before the backup callback, so the last backup keeps the last sound weights. Warns (once per
    phase) when the loss is exactly 0: its gradients vanish and nothing is learned; for a margin
    loss (triplet, contrastive, lifted structure) it says instead, at INFO, that every triplet or
    pair satisfies the margin.

    Args:
        loss_name: name of the loss, for the messages.
        phase: name of the training phase (``"train"``, ``"pretrain"``, ``"probe"``).
    """

    def __init__(self, loss_name: str, phase: str):
        super().__init__()
        self.loss_name = loss_name
        self.phase = phase
        self.failed_epoch: int | None = None
        self._warned_zero = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("loss")
        if value is not None:
            value = float(np.asarray(value).reshape(-1)[0])
            if not math.isfinite(value):
                self.failed_epoch = epoch + 1
                raise TrainingDivergedError(
                    f"Training stopped: the loss {self.loss_name!r} became {value} in epoch "
                    f"{epoch + 1} of the {self.phase} phase. Try a lower --learning_rate or other "
                    "--loss_params.")
            if value == 0.0 and not self._warned_zero:
                self._warned_zero = True
                self._report_zero_loss(epoch)
        for weights, limit, what in ((self.model.trainable_weights, WEIGHT_LIMIT, "weight"),
                                     (self.model.non_trainable_weights, STATE_LIMIT,
                                      "non-trainable weight (e.g. a batch-norm variance)")):
            largest = max((float(np.max(np.abs(w.numpy()), initial=0.0)) for w in weights),
                          default=0.0)
            if not math.isfinite(largest) or largest > limit:
                self.failed_epoch = epoch + 1
                raise TrainingDivergedError(
                    f"Training stopped: the weights exploded in epoch {epoch + 1} of the "
                    f"{self.phase} phase (largest |{what}| {largest:.3g}, limit {limit:g}; loss "
                    f"{self.loss_name!r} = {'n/a' if value is None else f'{value:.4g}'}). Try a "
                    "lower --learning_rate.")


    def _report_zero_loss(self, epoch: int) -> None:
        # A margin loss (a hinge: max(0, d_ap - d_an + margin), margin > 0) is 0 exactly when
        # every triplet or pair of the batches satisfies its margin: a result, not a fault. Any
        # other loss at exactly 0 has vanishing gradients from a hyperparameter or a bug.
        loss = getattr(self.model, "loss", None)
        margin = getattr(loss, "margin", None)
        if isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin > 0:
            unit = "triplet" if "triplet" in type(loss).__name__.lower() else "pair"
            log.info(
                "The loss %r is 0 in epoch %d of the %s phase because every %s of the training "
                "batches already satisfies the margin (margin=%g): the embedding separates the "
                "classes by at least the margin there. Not a fault; a larger margin (e.g. "
                "--loss_params=margin=%g) keeps the encoder learning.", self.loss_name,
                epoch + 1, self.phase, unit, margin, 2 * margin)
            return
        log.warning(
            "The loss %r is exactly 0 in epoch %d of the %s phase: its gradients vanish and the "
            "model learns nothing. Check --loss_params (e.g. a huge focal gamma) and "
            "--batch_size.", self.loss_name, epoch + 1, self.phase)


class ExpectStartEpoch(keras.callbacks.Callback):
    """Checks that Keras starts at the epoch the data stream was built for.

    The data of epoch ``k`` is generated for ``k`` (see ``nodulelearn.training.data``); if Keras
    resumed elsewhere, batches and epochs would silently disagree.
    """

    def __init__(self, start_epoch: int):
        super().__init__()
        self.start_epoch = start_epoch
        self._checked = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._checked and epoch != self.start_epoch:
            raise RuntimeError(
                f"Keras resumed at epoch {epoch + 1} but the data stream starts at epoch "
                f"{self.start_epoch + 1}; the backup and the run directory disagree.")
        self._checked = True


def tensorboard(log_dir: str | Path) -> keras.callbacks.TensorBoard:
    """Keras' TensorBoard callback: ``<log_dir>/train`` and ``<log_dir>/validation`` event files
    with the same tags, so TensorBoard overlays training and validation curves."""
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False,
                                       update_freq="epoch", profile_batch=0)
