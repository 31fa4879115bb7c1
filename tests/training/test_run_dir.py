"""Run directories: atomic files and the config check."""

import json

import pytest

from nodulelearn.training.run_dir import RunDirectory, RunDirectoryError, atomic_write_json


def test_atomic_json_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "a.json", {"x": float("nan")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_different_config_is_refused_unless_overwrite(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.prepare({"loss": "ce", "seed": 0, "out_dir": "a"})
    run.set_status("complete")
    run.prepare({"loss": "ce", "seed": 0, "out_dir": "b"})  # same run, other out_dir: fine
    assert run.status()["state"] == "complete"
    with pytest.raises(RunDirectoryError, match="seed: 0 there, 1 now"):
        run.prepare({"loss": "ce", "seed": 1})
    run.prepare({"loss": "ce", "seed": 1}, overwrite=True)
    assert run.status() == {"state": "new"} and run.read_json("config.json")["seed"] == 1


def test_a_foreign_directory_is_never_claimed(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not a nodulelearn run"):
        RunDirectory(tmp_path).prepare({"loss": "ce"}, overwrite=True)
    assert (tmp_path / "notes.txt").exists()


def test_history_rows_share_one_header(tmp_path):
    run = RunDirectory(tmp_path)
    run.write_history([{"phase": "pretrain", "epoch": 1, "loss": 2.0},
                       {"phase": "probe", "epoch": 1, "loss": 0.5, "accuracy": 0.9}])
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "phase,epoch,loss,accuracy", "pretrain,1,2.0,", "probe,1,0.5,0.9"]
