"""Faults in the file that marks pretraining as finished (``backup/pretrain_done/``): a damaged
one is reported, set aside and pretraining redone, and the run ends identical to an
uninterrupted ``--deterministic`` one."""

import logging

import keras
import pytest

from nodulelearn.training import TrainConfig, set_determinism, train

CONFIG = dict(loss="supcon", smoke=True, epochs=1, deterministic=True, test_dists=("clinical",))


def _train(run, **kwargs):
    set_determinism(0)  # as bin/train does before every run
    return train(TrainConfig(**CONFIG), run, verbose=0, **kwargs)


class _StopAtTheProbe(keras.callbacks.Callback):
    """Interrupts the run when its second phase (the linear probe) starts."""

    def __init__(self):
        super().__init__()
        self.phases = 0

    def on_train_begin(self, logs=None):
        self.phases += 1
        if self.phases == 2:
            raise KeyboardInterrupt("simulated interruption")


def test_a_damaged_pretrain_done_file_is_reported_set_aside_and_pretraining_redone(
        tmp_path, caplog, assert_same_run):
    whole = tmp_path / "whole"
    _train(whole)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train(run, callbacks=[_StopAtTheProbe()])
    done = run / "backup" / "pretrain_done" / "encoder.weights.h5"
    data = done.read_bytes()
    done.write_bytes(data[: len(data) // 2])  # as a writer killed mid-write leaves it
    with caplog.at_level(logging.WARNING, logger="nodulelearn.training.callbacks"):
        _train(run)
    warnings = [r.getMessage() for r in caplog.records if "is unreadable" in r.getMessage()]
    assert len(warnings) == 1 and str(done) in warnings[0], caplog.text
    kept = run / "backup_corrupt" / "pretrain_done" / "encoder.weights.h5"
    assert kept.read_bytes() == data[: len(data) // 2]  # set aside, not deleted
    assert_same_run(whole, run)
