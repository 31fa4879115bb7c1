"""Faults inside the state files of a run: a kill inside the backup write or the export, a full
disk, a damaged backup. Each must end, after a re-run, with the weights and metrics of an
uninterrupted ``--deterministic`` run, and never with a half-written file taken for a result.

Kill points are deterministic: ``callbacks.fault_hook`` is called at each file event; a child
process ``os._exit``s there (no cleanup, like SIGKILL), or the hook raises ``OSError(ENOSPC)``.
"""

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import pytest

from nodulelearn.training import TrainConfig, callbacks, set_determinism, train
from nodulelearn.training.callbacks import backed_up_epoch

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
       "CUDA_VISIBLE_DEVICES": ""}
CONFIG = dict(loss="ce", smoke=True, epochs=2, deterministic=True, test_dists=("clinical",))


def _train(run, **kwargs):
    set_determinism(0)  # as bin/train does before every run
    return train(TrainConfig(**CONFIG), run, verbose=0, **kwargs)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run every faulty run must end up identical to."""
    run = tmp_path_factory.mktemp("faults") / "whole"
    _train(run)
    return run


@pytest.fixture
def hook(monkeypatch):
    """Installs ``fn(event, path)`` as the file-event hook for one test."""
    def install(fn):
        monkeypatch.setattr(callbacks, "fault_hook", fn)
    return install


def _train_and_die(run, event, nth, *, truncate):
    """Trains in a child process that dies (``os._exit(137)``) at the ``nth`` ``event``."""
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from nodulelearn.training import TrainConfig, callbacks, set_determinism, train
        seen = []
        def hook(event, path):
            if event == {event!r}:
                seen.append(path)
                if len(seen) == {nth}:
                    if {truncate!r}:  # the write got half way
                        data = Path(path).read_bytes()
                        Path(path).write_bytes(data[: len(data) // 2])
                    os._exit(137)
        callbacks.fault_hook = hook
        set_determinism(0)
        train(TrainConfig(**{CONFIG!r}), {str(run)!r}, verbose=0)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 137, result.stderr[-3000:]


def test_kill_inside_the_backup_write_keeps_the_last_backup_and_resumes_bit_identical(
        whole, tmp_path, assert_same_run):
    run = tmp_path / "run"
    _train_and_die(run, "backup_written", 2, truncate=True)  # inside epoch 2's backup
    backup = run / "backup" / "train"
    assert len(list(backup.glob(".tmp-*.weights.h5"))) == 1  # the half-written file
    assert backed_up_epoch(backup) == 1  # latest.weights.h5 is epoch 1's, whole
    assert json.loads((run / "status.json").read_text())["state"] == "running"  # killed
    assert not (run / "model.keras").exists()
    _train(run)
    assert_same_run(whole, run)


def test_disk_full_in_a_backup_fails_the_run_clearly_and_it_resumes_bit_identical(
        whole, tmp_path, hook, assert_same_run):
    calls = []

    def disk_full(event, path):
        if event == "backup_written":
            calls.append(path)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    hook(disk_full)
    run = tmp_path / "run"
    with pytest.raises(OSError) as error:
        _train(run)
    assert error.value.errno == errno.ENOSPC
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "No space left on device" in status["reason"]
    assert not (run / "model.keras").exists() and not (run / "metrics.json").exists()
    assert not list((run / "backup" / "train").glob(".tmp-*"))  # the failed write is removed
    assert backed_up_epoch(run / "backup" / "train") == 1
    hook(None)
    _train(run)
    assert_same_run(whole, run)


class _StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt("simulated interruption")


def test_a_damaged_backup_is_reported_set_aside_and_the_phase_restarts(
        whole, tmp_path, caplog, assert_same_run):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train(run, callbacks=[_StopAfterFirstEpoch()])
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    weights = run / "backup" / "train" / "latest.weights.h5"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # as an in-place writer killed mid-write leaves it
    with caplog.at_level(logging.WARNING, logger="nodulelearn.training.callbacks"):
        _train(run)
    warnings = [r.getMessage() for r in caplog.records if "is unreadable" in r.getMessage()]
    assert len(warnings) == 1 and str(weights) in warnings[0] and "restarts" in warnings[0]
    kept = run / "backup_corrupt" / "train" / "latest.weights.h5"
    assert kept.read_bytes() == data[: len(data) // 2]  # set aside, not deleted
    assert_same_run(whole, run)


def test_kill_during_the_export_leaves_no_model_and_no_orphan_after_resume(
        whole, tmp_path, assert_same_run):
    run = tmp_path / "run"
    _train_and_die(run, "model_staged", 1, truncate=False)
    assert list(run.glob(".model.keras.*"))  # the staged, not yet renamed, model
    assert not (run / "model.keras").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "running"
    _train(run)
    assert not list(run.glob(".model.keras.*"))
    assert_same_run(whole, run)


def test_weights_files_are_written_atomically_and_checked_before_use(tmp_path, hook, caplog):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "backup" / "pretrain_done" / "encoder.weights.h5"
    callbacks.save_weights_atomic(model, path)
    assert callbacks.readable_weights(path)
    good = path.read_bytes()

    def disk_full(event, tmp):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    hook(disk_full)
    with pytest.raises(OSError):
        callbacks.save_weights_atomic(model, path)
    assert path.read_bytes() == good and [p.name for p in path.parent.iterdir()] == [path.name]
    path.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="nodulelearn.training.callbacks"):
        assert not callbacks.readable_weights(path, what="pretrained encoder")
    assert f"The pretrained encoder {path} is unreadable" in caplog.text
    assert (tmp_path / "backup_corrupt" / "pretrain_done" / "encoder.weights.h5").exists()
    assert not path.exists() and not callbacks.readable_weights(path)
