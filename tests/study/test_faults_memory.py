"""Memory between the runs of a study that run in this process (stage functions given): Keras'
global state is freed before every run and after the last (peak RSS over 8 smoke runs: growth of
about 28 MB per run without it, 17 MB with it; the default stages run in child processes,
tests/study/test_worker.py)."""

import pytest

from nodulelearn.study import load_study, run_study


@pytest.fixture
def study(tmp_path, tiny_study_files):
    return load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0, 1, 2))))


def test_keras_state_is_freed_between_runs(study, tmp_path, fake_stages, monkeypatch):
    keras = pytest.importorskip("keras")
    cleared = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(1))
    stages = fake_stages()
    calls = []

    def train(fields, train_dir, overwrite):
        calls.append(len(cleared))  # how many times the session was cleared before this run
        return stages.train(fields, train_dir, overwrite)

    run_study(study, tmp_path / "out", train_fn=train, sensitivity_fn=stages.sensitivity,
              encoding_fn=stages)  # fmt: skip
    assert len(calls) == 6
    assert calls == sorted(calls) and len(set(calls)) == 6  # freed before every run
    assert len(cleared) == 7  # and once after the last
