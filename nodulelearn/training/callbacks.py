"""Callbacks of the training loop: divergence stop, resume guard, backup epoch lookup."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training, by raising, at the end of the first epoch whose loss is NaN or infinite.

    Unlike ``keras.callbacks.TerminateOnNaN`` it says which epoch and which loss, and it raises
    before the backup callback runs, so the last backup keeps the last finite weights.

    Args:
        loss_name: name of the loss, for the message.
        phase: name of the training phase (``"train"``, ``"pretrain"``, ``"probe"``).
    """

    def __init__(self, loss_name: str, phase: str):
        super().__init__()
        self.loss_name = loss_name
        self.phase = phase
        self.failed_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("loss")
        if value is not None and not math.isfinite(float(value)):
            self.failed_epoch = epoch + 1
            raise TrainingDivergedError(
                f"Training stopped: the loss {self.loss_name!r} became {float(value)} in epoch "
                f"{epoch + 1} of the {self.phase} phase. Try a lower --learning_rate or other "
                "--loss_params.")


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


def backed_up_epoch(backup_dir: str | Path) -> int:
    """The epoch ``keras.callbacks.BackupAndRestore`` will resume from (0 without a backup).

    Reads the ``training_metadata.json`` that ``BackupAndRestore`` writes next to its weights.
    """
    path = Path(backup_dir) / "training_metadata.json"
    if not path.exists():
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


class EpochSummaries(keras.callbacks.Callback):
    """Writes every epoch's logs as TensorBoard scalars under ``log_dir``.

    Uses only TensorFlow's core ``tf.summary.write`` with the scalars plugin's metadata, so the
    event files open in TensorBoard while training needs no ``tensorboard`` package
    (``keras.callbacks.TensorBoard`` does).
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.log_dir = str(log_dir)
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        self._tf = tf
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def on_epoch_end(self, epoch, logs=None):
        with self._writer.as_default():
            for name, value in (logs or {}).items():
                self._tf.summary.write(f"epoch_{name}", self._tf.constant(float(value)),
                                       step=epoch + 1, metadata=self._metadata)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
