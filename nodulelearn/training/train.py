"""``train(config, run_dir)``: one training run, from a config to a complete run directory."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nodulelearn.atomic_files import atomic_path
from nodulelearn.datasets import spec_at_image_size
from nodulelearn.determinism import require_determinism
from nodulelearn.locks import hold_lock
from nodulelearn.run_dir import (
    BACKUP,
    CONFIG,
    ENCODER,
    METRICS,
    MODEL,
    SAVED_MODEL,
    STATUS,
    RunDirectory,
    TrainedRun,
    atomic_export,
    atomic_save_model,
    atomic_write_json,
    load_run,
)
from nodulelearn.training.augment import build_augment
from nodulelearn.training.callbacks import event as file_event
from nodulelearn.training.config import TrainConfig, check_fields, resolve_config
from nodulelearn.training.data import render_split, split_seed
from nodulelearn.training.distribute import make_strategy, worker_info
from nodulelearn.training.evaluate import evaluate_on
from nodulelearn.training.fitting import RunContext, read_phase_log
from nodulelearn.training.protocols import protocol_for
from nodulelearn.training.tracking import environment, hparams, write_hparams

log = logging.getLogger(__name__)


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    overwrite: bool = False,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: Any = "auto",
) -> TrainedRun | None:
    """Trains, exports and evaluates one run; resumes it when ``run_dir`` holds it unfinished.

    The data follow ``config.seed``; process-wide seeds and deterministic ops (``--deterministic``)
    are the caller's: call ``nodulelearn.training.set_determinism(config.seed,
    config.deterministic)`` first, as ``bin/train`` and the study runner do. With
    ``config.deterministic`` and no such call, ``DeterminismError`` is raised before any work.

    Args:
        config: the run's config (unset fields take the defaults of the loss' protocol).
        run_dir: the run directory (created; see ``RunDirectory`` for the layout).
        overwrite: delete a run directory holding another config instead of refusing.
        callbacks: extra Keras callbacks for every training phase.
        verbose: Keras ``fit`` verbosity (progress bars by default).

    Returns:
        The finished run, as ``nodulelearn.load_run(run_dir)`` would load it: ``.model`` (the
        exported classifier, image -> P(malignant)), ``.encoder``, ``.metrics`` (``metrics.json``:
        ``{test dist: {accuracy, sensitivity, specificity, balanced_accuracy, auc, n}}``),
        ``.config``, ``.run_dir``. None on a non-chief worker of a multi-worker run (the chief
        alone writes the run directory).

    Raises:
        RunDirectoryError: ``run_dir`` holds another run and ``overwrite`` is False, or one of
            its JSON files is damaged.
        LockedError: another process works on ``run_dir`` (the message names its pid).
        TrainingDivergedError: the loss became NaN / infinite or the weights exploded.
        OSError: ``run_dir`` is not a directory, not writable, or the disk is full.
        TypeError: ``config`` is not a ``TrainConfig`` or a field has the wrong type.
        ValueError / UnknownNameError: invalid config (see ``resolve_config``).
        DeterminismError: ``config.deterministic`` without ``set_determinism(config.seed)``.

    On any failure after the directory was claimed, ``status.json`` says ``failed`` (or
    ``interrupted``) and why; the backups stay, and re-running resumes.
    """
    check_fields(config)  # a dict or a mistyped field fails here, before TensorFlow starts work
    strategy = make_strategy(config.strategy)  # First: multi-worker needs it before other ops.
    config = resolve_config(config)
    if config.deterministic:
        require_determinism(config.seed)  # set by the caller; never silently non-deterministic
    index, _, is_chief = worker_info(strategy)
    record = {**config.to_dict(), "out_dir": str(run_dir), "overwrite": overwrite,
              "environment": environment()}
    run = RunDirectory(run_dir)
    if not is_chief:
        return _train_as_worker(config, strategy, run, index, overwrite, callbacks, verbose)
    if run.path.exists() and not run.path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory (the run directory must be one)",
                                 str(run.path))
    with hold_lock(run.path, what="run directory"):
        run.prepare(record, overwrite=overwrite)
        run.remove_stale_temporaries()
        if run.status()["state"] == "complete" and not overwrite:
            log.info("%s already holds this complete run; returning it.", run.path)
            return load_run(run.path)
        run.set_status("running")
        try:
            return _train_and_export(config, strategy, run, run, True, callbacks, verbose)
        except KeyboardInterrupt:
            _record_failure(run, "interrupted", "interrupted (KeyboardInterrupt)")
            raise
        except Exception as error:
            _record_failure(run, "failed", f"{type(error).__name__}: {error}")
            raise


def _record_failure(run: RunDirectory, state: str, reason: str) -> None:
    """``status.json`` says the run stopped, and why (unless the disk is too full to say it)."""
    try:
        run.set_status(state, reason=reason)
    except OSError as error:
        log.error("Could not record the run's state in %s: %s", run.file(STATUS), error)


def _train_as_worker(config, strategy, run, index, overwrite, callbacks, verbose):
    """A non-chief worker of a multi-worker run: trains in lockstep, writes only its scratch."""
    if run.status()["state"] == "complete" and not overwrite:
        # Every worker sees it (shared filesystem), so none waits for a training that never starts.
        return None
    # Other workers keep their own backups beside the run directory, in a fixed place, so that a
    # restarted run resumes every worker from the same epoch.
    work = RunDirectory(run.path.parent / f".{run.path.name}.worker{index}")
    if overwrite:
        shutil.rmtree(work.path, ignore_errors=True)
    _train_and_export(config, strategy, run, work, False, callbacks, verbose)
    shutil.rmtree(work.path, ignore_errors=True)
    return None


def _warn_if_one_class(labels: np.ndarray, dist: str) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        log.warning(
            "The training set of %r holds a single class (%d samples of label %s): the model "
            "can only learn to predict that class, and balanced accuracy and AUC are "
            "meaningless. Check the distribution's prevalence.", dist, int(counts.sum()),
            int(classes[0]) if len(classes) else "none")


def _train_and_export(config, strategy, run, work, is_chief, callbacks, verbose):
    from nodulelearn import losses

    info, protocol = losses.info(config.loss), protocol_for(config.loss)
    train_spec = spec_at_image_size(config.train_dist, config.image_size)
    train_images, train_labels = render_split(train_spec, config.n_train, split_seed(
        config.seed, "train"), class_balanced=protocol.class_balanced)
    _warn_if_one_class(train_labels, config.train_dist)
    val_images, val_labels = render_split(train_spec, config.n_val, split_seed(config.seed, "val"))
    ctx = RunContext(
        config=config, loss=losses.get(config.loss, **dict(config.loss_params)),
        consumes=info.consumes, strategy=strategy, run=work,
        train_images=train_images, train_labels=train_labels,
        val_images=val_images, val_labels=val_labels,
        data_seed=split_seed(config.seed, "epochs"), augment=build_augment(config.augment),
        callbacks=list(callbacks), verbose=verbose,
    )
    values = hparams(config, protocol.name)
    encoder, classifier = protocol(ctx)
    if not is_chief:
        return None
    # Every phase's rows, from the phase logs: a phase finished before an interruption (and not
    # re-run on resume) keeps its rows.
    run.write_history([row for phase in protocol.phases for row in read_phase_log(run, phase)])
    atomic_save_model(encoder, run.file(ENCODER))
    # model.keras is renamed into place last: its presence never means more than status.json.
    with atomic_path(run.file(MODEL)) as staged:
        classifier.save(staged)
        file_event("model_staged", Path(staged))
        # Evaluate what was exported: the reloaded file, outside any distribution strategy.
        exported = keras.saving.load_model(staged)
        atomic_export(exported, run.file(SAVED_MODEL))
        metrics = evaluate_on(exported, config.test_dists, config.n_test,
                              split_seed(config.seed, "test"), config.batch_size)
        atomic_write_json(run.file(METRICS), metrics)
        write_hparams(run.logs, values, metrics, trial_id=run.path.name)
    run.set_status("complete")
    shutil.rmtree(run.path / BACKUP, ignore_errors=True)
    return TrainedRun(
        run_dir=str(run.path), name=run.path.name, config=run.read_json(CONFIG), model=exported,
        encoder=keras.saving.load_model(run.file(ENCODER)), test_dists=tuple(config.test_dists),
        metrics=metrics)
