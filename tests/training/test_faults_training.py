"""Training that goes wrong without crashing: exploding weights, a loss identically 0, batches
of one class, a one-class training set, any failure's status, a second process on the run
directory, and the history of a pretrain-probe run resumed after its pretraining."""

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from nodulelearn.locks import LockedError
from nodulelearn.training import TrainConfig, TrainingDivergedError, train
from nodulelearn.training.callbacks import STATE_LIMIT, WEIGHT_LIMIT, TrainingHealth

PRESETS = Path(__file__).resolve().parents[2] / "datasets"


def _fit_tiny(loss, *, kernel=None, health):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    if kernel is not None:
        model.layers[0].kernel.assign(np.full((2, 1), kernel, np.float32))
    model.compile(keras.optimizers.SGD(0.0), loss=loss)
    x = np.ones((4, 2), np.float32)
    model.fit(x, np.zeros((4, 1), np.float32), epochs=2, verbose=0, callbacks=[health])


def test_health_stops_on_a_weight_beyond_the_limit():
    health = TrainingHealth("mse", "train")
    with pytest.raises(TrainingDivergedError, match=r"weights exploded in epoch 1 of the train "
                                                    r"phase \(largest \|weight\| 1e\+07"):
        _fit_tiny("mse", kernel=10 * WEIGHT_LIMIT, health=health)
    assert health.failed_epoch == 1
    _fit_tiny("mse", kernel=WEIGHT_LIMIT / 10, health=TrainingHealth("mse", "train"))  # fine
    assert STATE_LIMIT > WEIGHT_LIMIT


def test_health_warns_once_about_a_loss_of_exactly_zero(caplog):
    def zero(y_true, y_pred):
        return 0.0 * keras.ops.mean(y_pred, axis=-1)

    with caplog.at_level(logging.WARNING, logger="nodulelearn.training.callbacks"):
        _fit_tiny(zero, health=TrainingHealth("zero", "train"))
        _fit_tiny("mse", health=TrainingHealth("mse", "train"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1  # two epochs of 0, one warning; mse is not 0
    assert "'zero' is exactly 0 in epoch 1 of the train phase" in messages[0]


def _status(run):
    return json.loads((run / "status.json").read_text())


def test_a_learning_rate_of_1e4_fails_the_run_instead_of_completing_it(tmp_path):
    config = TrainConfig(loss="ce", smoke=True, learning_rate=1e4, test_dists=("clinical",))
    with pytest.raises(TrainingDivergedError, match="exploded in epoch 1|became nan in epoch 1"):
        train(config, tmp_path / "run", verbose=0)
    status = _status(tmp_path / "run")
    assert status["state"] == "failed" and "TrainingDivergedError" in status["reason"]
    assert not (tmp_path / "run" / "model.keras").exists()


def test_degenerate_setups_are_warned_about(tmp_path, caplog):
    """supcon on batches of 1 (constant loss 0), focal with gamma=1e6 (loss 0), one class."""
    one_class = tmp_path / "benign_only.toml"
    clinical = (PRESETS / "clinical.toml").read_text()
    assert clinical.startswith('name = "clinical"\n') and "malignant_fraction" not in clinical
    one_class.write_text('name = "benign_only"\nmalignant_fraction = 0.0\n'
                         + clinical.split("\n", 1)[1])
    tiny = dict(smoke=True, n_train=8, n_val=8, n_test=8, test_dists=("clinical",))
    with caplog.at_level(logging.WARNING, logger="nodulelearn.training"):
        train(TrainConfig(loss="supcon", batch_size=1, **tiny), tmp_path / "supcon", verbose=0)
        supcon = [r.getMessage() for r in caplog.records]
        caplog.clear()
        train(TrainConfig(loss="focal", loss_params={"gamma": 1e6}, batch_size=8, **tiny),
              tmp_path / "focal", verbose=0)
        focal = [r.getMessage() for r in caplog.records]
        caplog.clear()
        train(TrainConfig(loss="ce", train_dist=str(one_class), batch_size=8, **tiny),
              tmp_path / "one_class", verbose=0)
        single = [r.getMessage() for r in caplog.records]
    assert any("Batches of 1 sample per replica hold a single class" in m and "'supcon'" in m
               for m in supcon), supcon
    assert any("'supcon' is exactly 0 in epoch 1 of the pretrain phase" in m for m in supcon)
    assert any("'focal' is exactly 0 in epoch 1 of the train phase" in m for m in focal), focal
    assert any("holds a single class (8 samples of label 0)" in m for m in single), single
    assert not any("single class" in m for m in focal)  # a two-class set is not warned about


class _RaiseAtTrainBegin(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise RuntimeError("a bug far from the run directory")


def test_any_failure_marks_the_run_failed_not_running(tmp_path):
    config = TrainConfig(loss="ce", smoke=True, test_dists=("clinical",))
    with pytest.raises(RuntimeError, match="a bug far"):
        train(config, tmp_path / "run", verbose=0, callbacks=[_RaiseAtTrainBegin()])
    assert _status(tmp_path / "run") == {
        "state": "failed", "reason": "RuntimeError: a bug far from the run directory"}


def test_a_second_process_on_the_run_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from nodulelearn.locks import hold_lock
            with hold_lock({str(run)!r}, what="run directory"):
                print("held", flush=True)
                sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"run directory {run} is in use by another "
                                              rf"process \(pid {holder.pid}"):
            train(TrainConfig(loss="ce", smoke=True), run, verbose=0)
        assert not (run / "config.json").exists() and not (run / "status.json").exists()
    finally:
        holder.communicate("\n", timeout=30)


class _StopInProbe(keras.callbacks.Callback):
    """A kill after the pretraining, in the first probe epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if self.model.name == "probe":
            raise KeyboardInterrupt("simulated interruption")


def test_resuming_after_the_pretraining_keeps_its_history_rows(tmp_path):
    config = TrainConfig(loss="supcon", smoke=True, n_train=32, batch_size=16, epochs=2,
                         probe_epochs=2, test_dists=("clinical",))
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", verbose=0, callbacks=[_StopInProbe()])
    assert _status(tmp_path / "run")["state"] == "interrupted"
    train(config, tmp_path / "run", verbose=0)
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in history[1:]] == [
        ["pretrain", "1"], ["pretrain", "2"], ["probe", "1"], ["probe", "2"]]


@pytest.mark.parametrize("loss_name, unit", [("triplet_semihard", "triplet"),
                                             ("contrastive", "pair")])
def test_a_margin_loss_at_zero_says_every_triplet_satisfies_the_margin(caplog, loss_name, unit):
    """A hinge at 0 is a result (every triplet beyond the margin), not a zeroing hyperparameter."""
    from nodulelearn import losses

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].kernel.assign(np.eye(2, dtype=np.float32))
    model.compile(keras.optimizers.SGD(0.0), loss=losses.get(loss_name, margin=0.5))
    x = np.array([[0, 0], [0, 0], [10, 10], [10, 10]], np.float32)  # classes 14 apart, margin 0.5
    with caplog.at_level(logging.INFO, logger="nodulelearn.training.callbacks"):
        model.fit(x, np.array([0, 0, 1, 1], np.int32), epochs=1, batch_size=4, verbose=0,
                  callbacks=[TrainingHealth(loss_name, "pretrain")])
    [record] = caplog.records
    assert record.levelno == logging.INFO, record.getMessage()
    assert (f"{loss_name!r} is 0 in epoch 1 of the pretrain phase because every {unit} of the "
            "training batches already satisfies the margin (margin=0.5)") in record.getMessage()
    assert "learns nothing" not in record.getMessage()
