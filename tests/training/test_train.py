"""train(): run directory contents, resume after interruption, determinism, divergence."""

import json

import keras
import numpy as np
import pytest

from nodulelearn import losses
from nodulelearn.training import TrainConfig, TrainingDivergedError, set_determinism, train
from nodulelearn.training.metrics import METRIC_NAMES


class _Interrupt(keras.callbacks.Callback):
    """Simulates a kill after the backup of epoch ``after`` (0-based) was written."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.after:
            raise KeyboardInterrupt("simulated interruption")


def _weights(run_dir):
    return keras.saving.load_model(run_dir / "model.keras").get_weights()


def test_end_to_end_run_writes_the_run_directory_and_is_not_redone(tmp_path):
    config = TrainConfig(loss="ce", smoke=True, test_dists=("clinical", "margin_size_reversed"))
    trained = train(config, tmp_path / "run", verbose=0)
    metrics = trained.metrics
    assert metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert trained.run_dir == str(tmp_path / "run") and trained.encoder is not None
    assert trained.config == json.loads((tmp_path / "run" / "config.json").read_text())
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "model.keras", "encoder.keras", "history.csv", "metrics.json",
            "logs", "saved_model", "status.json"} <= files
    assert "backup" not in files
    assert set(metrics) == {"clinical", "margin_size_reversed"}
    assert all(set(row) == set(METRIC_NAMES) and row["n"] == 64 for row in metrics.values())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["loss"] == "ce" and saved["test_dists"] == ["clinical", "margin_size_reversed"]
    assert saved["n_train"] == 64 and saved["out_dir"] == str(tmp_path / "run")
    assert (tmp_path / "run" / "history.csv").read_text().startswith("phase,epoch,")
    assert any((tmp_path / "run" / "logs" / "train").iterdir())  # TensorBoard events

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.output_shape == (None, 1)
    images = np.random.default_rng(0).random((4, *model.input_shape[1:]), dtype=np.float32)
    np.testing.assert_array_equal(trained.model.predict(images, verbose=0),  # the exported one
                                  model.predict(images, verbose=0))
    mtime = (tmp_path / "run" / "model.keras").stat().st_mtime_ns
    again = train(config, tmp_path / "run", verbose=0)  # complete: returned, not redone
    assert again.metrics == metrics and again.model.output_shape == (None, 1)
    assert (tmp_path / "run" / "model.keras").stat().st_mtime_ns == mtime


def test_interrupted_and_resumed_run_ends_with_the_uninterrupted_weights(tmp_path):
    config = TrainConfig(loss="supcon", smoke=True, epochs=2, probe_epochs=2, n_train=48,
                         batch_size=16, deterministic=True, test_dists=("clinical",))
    set_determinism(0)
    train(config, tmp_path / "whole", verbose=0)
    set_determinism(0)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", verbose=0, callbacks=[_Interrupt(after=0)])
    assert json.loads((tmp_path / "resumed" / "status.json").read_text())["state"] == "interrupted"
    assert not (tmp_path / "resumed" / "model.keras").exists()
    set_determinism(0)
    train(config, tmp_path / "resumed", verbose=0)
    for a, b in zip(_weights(tmp_path / "whole"), _weights(tmp_path / "resumed"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ((tmp_path / "whole" / "metrics.json").read_text()
            == (tmp_path / "resumed" / "metrics.json").read_text())
    history = (tmp_path / "resumed" / "history.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in history[1:]] == [
        ["pretrain", "1"], ["pretrain", "2"], ["probe", "1"], ["probe", "2"]]


class _NaNLoss(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return keras.ops.mean(y_pred, axis=-1) * float("nan")


@pytest.fixture
def nan_loss():
    # Registered only for this test: tests that compare the registry with the docs or the
    # protocols' built-in losses must not see it.
    losses.register("_nan_for_tests", consumes="logits")(_NaNLoss)
    yield "_nan_for_tests"
    losses.unregister("_nan_for_tests")


def test_nan_loss_stops_with_the_epoch_and_leaves_no_model(tmp_path, nan_loss):
    config = TrainConfig(loss="_nan_for_tests", smoke=True, test_dists=("clinical",))
    with pytest.raises(TrainingDivergedError, match="'_nan_for_tests' became nan in epoch 1"):
        train(config, tmp_path / "run", verbose=0)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "epoch 1" in status["reason"]
    assert not (tmp_path / "run" / "model.keras").exists()
    assert not (tmp_path / "run" / "metrics.json").exists()
