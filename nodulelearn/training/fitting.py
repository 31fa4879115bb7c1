"""One training phase: compile, resume from the backup, stream the data, fit, log."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from nodulelearn import keras_compat
from nodulelearn.run_dir import RunDirectory
from nodulelearn.training.augment import AugmentFn
from nodulelearn.training.callbacks import (
    AtomicBackup,
    ExpectStartEpoch,
    PhaseLog,
    TrainingHealth,
    backed_up_epoch,
    read_csv_rows,
    tensorboard,
)
from nodulelearn.training.config import TrainConfig
from nodulelearn.training.data import epoch_stream, steps_per_epoch
from nodulelearn.training.distribute import distribute_stream

log = logging.getLogger(__name__)


class TrainingModel(keras_compat.LocalFirstBatchBuild, keras.Model):
    """A functional model for ``fit`` under any ``tf.distribute`` strategy.

    Works around two failures of Keras 3's TF trainer under ``MultiWorkerMirroredStrategy``
    (keras-team/keras#20585): (1) it builds the compiled metrics from a first batch that it
    averages across replicas with ``strategy.reduce``, which fails on the (images, labels)
    tuple; only the batch's shapes are needed, so the local replica's part is used instead.
    (2) it averages the logged values with ``strategy.reduce("MEAN", v, axis=0)``, which fails
    on scalars; the steps return them as ``[1]`` vectors, which that reduction averages across
    workers into scalars. Training models are never exported: ``model.keras`` is built from
    plain ``keras.Model``s. The private Keras hooks this needs live in ``keras_compat``.
    """

    def _multi_worker(self) -> bool:
        return isinstance(keras_compat.model_strategy(self),
                          tf.distribute.MultiWorkerMirroredStrategy)

    def train_step(self, data):
        logs = super().train_step(data)
        return {k: tf.reshape(v, [1]) for k, v in logs.items()} if self._multi_worker() else logs

    def test_step(self, data):
        logs = super().test_step(data)
        return {k: tf.reshape(v, [1]) for k, v in logs.items()} if self._multi_worker() else logs


def trainable(chain: Sequence[keras.Model], name: str) -> TrainingModel:
    """The ``TrainingModel`` applying ``chain`` in order (sharing their layers and weights)."""
    inputs = keras.Input(chain[0].input_shape[1:], name="input")
    outputs = inputs
    for model in chain:
        outputs = model(outputs)
    return TrainingModel(inputs, outputs, name=name)


@dataclasses.dataclass
class RunContext:
    """What a protocol needs from the run (built by ``train``).

    Attributes:
        config: the resolved config.
        loss: the configured ``keras.losses.Loss``.
        consumes: what the loss consumes (``"logits"``, ``"embeddings"`` or ``"views"``).
        strategy: the ``tf.distribute`` strategy (variables are created in its scope).
        run: where backups and logs go (the run directory, or a worker's scratch folder).
        train_images, train_labels: the training set, ``[N, H, W, 1]`` float32 / ``[N]`` int32.
        val_images, val_labels: the validation set.
        data_seed: seed of the epoch streams.
        augment: the view augmentation, or None.
        callbacks: extra Keras callbacks (appended after the run's own ones).
        verbose: Keras ``fit`` verbosity.
    """

    config: TrainConfig
    loss: keras.losses.Loss
    consumes: str
    strategy: tf.distribute.Strategy
    run: RunDirectory
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    data_seed: int
    augment: AugmentFn | None
    callbacks: Sequence[keras.callbacks.Callback] = ()
    verbose: Any = "auto"
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def fit_phase(
    ctx: RunContext,
    phase: str,
    model: keras.Model,
    loss: keras.losses.Loss,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    views: int = 1,
    augment: AugmentFn | None = None,
    class_balanced: bool = False,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    metrics: Sequence[keras.metrics.Metric] = (),
) -> None:
    """Trains ``model`` for ``epochs`` epochs, resuming from ``backup/<phase>`` when present.

    Adam with a cosine-decayed learning rate; the optimizer step counter is part of the backup,
    so a resumed run continues the same schedule. Epoch rows are logged to
    ``logs/history_<phase>.csv`` and TensorBoard ``logs/<phase>``.
    """
    config = ctx.config
    steps = steps_per_epoch(labels, config.batch_size, class_balanced)
    loss_name = config.loss if phase != "probe" else "ce (linear probe)"
    if class_balanced and config.batch_size // ctx.strategy.num_replicas_in_sync < 2:
        log.warning(
            "Batches of %d sample per replica hold a single class: the %s loss %r sees no "
            "pair of different classes (positives only between a sample's own views), so it "
            "teaches nothing about the labels. Use a --batch_size of at least 2 per replica "
            "(contrastive losses want many).", config.batch_size // ctx.strategy.num_replicas_in_sync,
            phase, loss_name)
    backup_dir = ctx.run.backup_dir(phase)
    start_epoch = min(backed_up_epoch(backup_dir, phase=phase), epochs)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(1, epochs * steps), alpha=0.01)
    with ctx.strategy.scope():
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss,
                      metrics=list(metrics), jit_compile=False)
    stream = distribute_stream(
        ctx.strategy,
        functools.partial(
            epoch_stream, inputs, labels, seed=ctx.data_seed, start_epoch=start_epoch,
            epochs=epochs, batch_size=config.batch_size, views=views, augment=augment,
            class_balanced=class_balanced),
        config.batch_size,
    )
    ctx.run.logs.mkdir(parents=True, exist_ok=True)
    callbacks = [
        TrainingHealth(loss_name, phase),  # First: a diverged epoch is never logged or backed up.
        PhaseLog(ctx.run.logs / f"history_{phase}.csv", start_epoch),
        AtomicBackup(backup_dir, start_epoch),
        tensorboard(ctx.run.logs / phase),
        ExpectStartEpoch(start_epoch),
        *ctx.callbacks,
    ]
    validation_data = None
    if validation is not None:
        validation_data = tf.data.Dataset.from_tensor_slices(validation).batch(config.batch_size)
    model.fit(stream, epochs=epochs, initial_epoch=start_epoch, steps_per_epoch=steps,
              validation_data=validation_data, callbacks=callbacks, verbose=ctx.verbose,
              shuffle=False)
    ctx.history.extend(read_phase_log(ctx.run, phase))


def read_phase_log(run: RunDirectory, phase: str) -> list[dict[str, Any]]:
    """Rows of ``logs/history_<phase>.csv`` as ``history.csv`` rows: ``phase``, 1-based ``epoch``.

    An epoch may be logged twice when a run was killed between logging and backing it up: the
    last row wins.
    """
    rows = read_csv_rows(run.logs / f"history_{phase}.csv")
    return [{"phase": phase, **row, "epoch": int(row["epoch"]) + 1} for row in rows]
