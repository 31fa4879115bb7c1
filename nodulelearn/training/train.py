"""``train(config, run_dir)``: one training run, from a config to a complete run directory."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from nodulelearn.datasets import spec_at_image_size
from nodulelearn.training.augment import build_augment
from nodulelearn.training.callbacks import TrainingDivergedError
from nodulelearn.training.config import TrainConfig, resolve_config
from nodulelearn.training.data import render_split, split_seed
from nodulelearn.training.distribute import make_strategy, worker_info
from nodulelearn.training.evaluate import evaluate_on
from nodulelearn.training.fitting import RunContext
from nodulelearn.training.protocols import PROTOCOLS
from nodulelearn.training.run_dir import (
    RunDirectory,
    atomic_export,
    atomic_save_model,
    atomic_write_json,
)

log = logging.getLogger(__name__)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seeds Python, NumPy and TF; ``deterministic`` also makes every TF op deterministic."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    overwrite: bool = False,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: Any = "auto",
) -> dict[str, dict[str, Any]]:
    """Trains, exports and evaluates one run; resumes it when ``run_dir`` holds it unfinished.

    Args:
        config: the run's config (unset fields take the defaults of the loss' protocol).
        run_dir: the run directory (created; see ``RunDirectory`` for the layout).
        overwrite: delete a run directory holding another config instead of refusing.
        callbacks: extra Keras callbacks for every training phase.
        verbose: Keras ``fit`` verbosity (progress bars by default).

    Returns:
        ``metrics.json``: ``{test dist: {accuracy, sensitivity, specificity, balanced_accuracy,
        auc, n}}`` (empty on a non-chief worker of a multi-worker run).

    Raises:
        RunDirectoryError: ``run_dir`` holds another run and ``overwrite`` is False.
        TrainingDivergedError: the loss became NaN / infinite (``status.json`` says where).
        ValueError / UnknownNameError: invalid config (see ``resolve_config``).
    """
    strategy = make_strategy(config.strategy)  # First: multi-worker needs it before other ops.
    config = resolve_config(config)
    set_determinism(config.seed, config.deterministic)
    index, _, is_chief = worker_info(strategy)
    record = {**config.to_dict(), "out_dir": str(run_dir), "overwrite": overwrite}
    run = RunDirectory(run_dir)
    if is_chief:
        run.prepare(record, overwrite=overwrite)
    if run.status()["state"] == "complete" and not overwrite:
        # Every worker sees it (shared filesystem), so none waits for a training that never starts.
        log.info("%s already holds this complete run; returning its metrics.", run.path)
        return run.read_json("metrics.json") if is_chief else {}
    if is_chief:
        run.set_status("running")
        work = run
    else:
        # Other workers train in lockstep and keep their own backups beside the run directory,
        # in a fixed place, so that a restarted run resumes every worker from the same epoch.
        work = RunDirectory(run.path.parent / f".{run.path.name}.worker{index}")
        if overwrite:
            shutil.rmtree(work.path, ignore_errors=True)

    try:
        metrics = _train_and_export(config, strategy, run, work, is_chief, callbacks, verbose)
    except TrainingDivergedError as error:
        if is_chief:
            run.set_status("failed", reason=str(error))
        raise
    if not is_chief:
        shutil.rmtree(work.path, ignore_errors=True)
    return metrics


def _train_and_export(config, strategy, run, work, is_chief, callbacks, verbose):
    from nodulelearn import losses

    info = losses.info(config.loss)
    train_spec = spec_at_image_size(config.train_dist, config.image_size)
    class_balanced = info.protocol == "pretrain_probe"
    train_images, train_labels = render_split(
        train_spec, config.n_train, split_seed(config.seed, "train"), class_balanced=class_balanced)
    val_images, val_labels = render_split(train_spec, config.n_val, split_seed(config.seed, "val"))
    ctx = RunContext(
        config=config, loss=losses.get(config.loss, **dict(config.loss_params)),
        consumes=info.consumes, strategy=strategy, run=work,
        train_images=train_images, train_labels=train_labels,
        val_images=val_images, val_labels=val_labels,
        data_seed=split_seed(config.seed, "epochs"), augment=build_augment(config.augment),
        callbacks=list(callbacks), verbose=verbose,
    )
    encoder, classifier = PROTOCOLS.get(info.protocol)(ctx)
    if not is_chief:
        return {}
    run.write_history(ctx.history)
    atomic_save_model(encoder, run.file("encoder.keras"))
    atomic_save_model(classifier, run.file("model.keras"))
    # Evaluate what was exported: the reloaded file, outside any distribution strategy.
    exported = keras.saving.load_model(run.file("model.keras"))
    atomic_export(exported, run.file("saved_model"))
    metrics = evaluate_on(exported, config.test_dists, config.n_test,
                          split_seed(config.seed, "test"), config.batch_size)
    atomic_write_json(run.file("metrics.json"), metrics)
    shutil.rmtree(run.path / "backup", ignore_errors=True)
    run.set_status("complete")
    return metrics


def load_run(run_dir: str | os.PathLike) -> tuple[keras.Model, dict[str, Any]]:
    """The classifier and ``metrics.json`` of a complete run directory."""
    run = RunDirectory(run_dir)
    if run.status().get("state") != "complete":
        raise FileNotFoundError(f"{Path(run_dir)} holds no complete run "
                                f"(status: {run.status().get('state')}).")
    return keras.saving.load_model(run.file("model.keras")), run.read_json("metrics.json")
