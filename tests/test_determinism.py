"""Determinism is the caller's: set_determinism seeds the process; a deterministic run checks it."""

import subprocess
import sys

import pytest

from nodulelearn import determinism


def test_a_deterministic_run_without_set_determinism_fails_loudly(monkeypatch):
    monkeypatch.setattr(determinism, "_state", {"seed": None, "deterministic": False})
    with pytest.raises(determinism.DeterminismError,
                       match=r"not set up for deterministic ops.*set_determinism\(3\)"):
        determinism.require_determinism(3)
    monkeypatch.setattr(determinism, "_state", {"seed": 1, "deterministic": True})
    with pytest.raises(determinism.DeterminismError, match="seeded with 1"):
        determinism.require_determinism(3)
    determinism.require_determinism(1)


def test_train_refuses_a_deterministic_config_before_any_work(monkeypatch, tmp_path):
    from nodulelearn.training import DeterminismError, TrainConfig, train

    monkeypatch.setattr(determinism, "_state", {"seed": None, "deterministic": False})
    with pytest.raises(DeterminismError):
        train(TrainConfig(loss="ce", smoke=True, deterministic=True), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_set_determinism_seeds_the_process_the_same_way_each_time():
    script = ("from nodulelearn.training import set_determinism; import numpy as np, random, "
              "keras; set_determinism(7); print(np.random.rand(), random.random(), "
              "float(keras.random.uniform(()))); "
              "from nodulelearn import determinism; determinism.require_determinism(7)")
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()
