"""The one run-directory contract: layout names, one typed load_run behind both public names."""

import json

import keras
import numpy as np
import pytest

from nodulelearn import run_dir
from nodulelearn.model_io import ModelLoadError


def _classifier():
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(inputs)))


def test_training_and_the_analysis_share_one_load_run():
    from nodulelearn import sensitivity, training

    assert training.load_run is sensitivity.load_run is run_dir.load_run
    assert training.TrainedRun is sensitivity.TrainedRun is run_dir.TrainedRun
    from nodulelearn.training.run_dir import RunDirectory

    assert RunDirectory is run_dir.RunDirectory


def test_load_run_returns_the_typed_run(tmp_path):
    model = _classifier()
    model.save(tmp_path / run_dir.MODEL)
    (tmp_path / run_dir.CONFIG).write_text(json.dumps({"test_dists": ["clinical"], "seed": 3}))
    (tmp_path / run_dir.METRICS).write_text(json.dumps({"clinical": {"auc": 0.5}}))
    (tmp_path / run_dir.STATUS).write_text(json.dumps({"state": "complete"}))
    run = run_dir.load_run(tmp_path)
    assert isinstance(run, run_dir.TrainedRun)
    assert (run.name, run.test_dists, run.config["seed"]) == (tmp_path.name, ("clinical",), 3)
    assert run.metrics == {"clinical": {"auc": 0.5}} and run.status == "complete"
    assert run.encoder is None
    images = np.zeros((2, 8, 8, 1), np.float32)
    np.testing.assert_array_equal(run.model.predict(images, verbose=0),
                                  model.predict(images, verbose=0))


def test_an_unfinished_run_names_its_status_and_contents(tmp_path):
    (tmp_path / run_dir.CONFIG).write_text("{}")
    (tmp_path / run_dir.STATUS).write_text(json.dumps({"state": "running"}))
    with pytest.raises(ModelLoadError, match=r"no model.keras.*config.json.*status: running"):
        run_dir.load_run(tmp_path)
    with pytest.raises(ModelLoadError, match="not found"):
        run_dir.load_run(tmp_path / "absent")


def test_a_file_passed_as_run_directory_says_it_is_a_file(tmp_path):
    model_file = tmp_path / run_dir.MODEL
    model_file.write_text("a model file, not a folder")
    with pytest.raises(ModelLoadError, match=r"model.keras' is a file, not a run directory.*"
                                             r"--model.*keras.saving.load_model") as raised:
        run_dir.load_run(model_file)
    assert "not found" not in str(raised.value)


def test_history_is_written_as_csv_with_the_union_of_the_columns(tmp_path):
    run = run_dir.RunDirectory(tmp_path)
    run.write_history([{"phase": "pretrain", "epoch": 1, "loss": 4.5},
                       {"phase": "probe", "epoch": 1, "loss": 0.5, "auc": None, "note": "a,b"}])
    assert (tmp_path / run_dir.HISTORY).read_text().splitlines() == [
        "phase,epoch,loss,auc,note", "pretrain,1,4.5,,", 'probe,1,0.5,,"a,b"']


def test_the_saved_model_export_replaces_the_folder_atomically(tmp_path):
    target = tmp_path / run_dir.SAVED_MODEL
    target.mkdir()
    (target / "old").write_text("old")

    class Broken:
        def export(self, path, verbose=False):
            (tmp_path / "seen").write_text(path)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        run_dir.atomic_export(Broken(), target)
    assert (target / "old").read_text() == "old"  # untouched on failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model", "seen"]

    class Fine:
        def export(self, path, verbose=False):
            (tmp_path / "x").write_text("")
            open(f"{path}/saved_model.pb", "w").close()

    run_dir.atomic_export(Fine(), target)
    assert sorted(p.name for p in target.iterdir()) == ["saved_model.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model", "seen", "x"]


@pytest.mark.parametrize("name, content, message", [
    (run_dir.STATUS, [1, 2], r"status.json is damaged: the run status should be a JSON object "
                             r"\{\.\.\.\}, but it holds a list: \[1, 2\]"),
    (run_dir.STATUS, {"state": 3}, r"status.json is damaged: its \"state\" should be one of new, "
                                   r"running, complete, failed, interrupted; it is 3"),
    (run_dir.CONFIG, [], r"config.json is damaged: the run configuration should be a JSON object"
                         r" \{\.\.\.\}, but it holds a list: \[\]"),
    (run_dir.CONFIG, {"test_dists": 5}, r"config.json is damaged: its \"test_dists\" should be a "
                                        r"list of distribution names; it is 5"),
    (run_dir.CONFIG, {"test_dists": ["clinical", None]}, r"it is \[\"clinical\", null\]"),
    (run_dir.METRICS, "x", r"metrics.json is damaged: the run metrics should be a JSON object"),
    (run_dir.CONFIG, {"train_dist": ["a"]}, r"its \"train_dist\" should be a distribution name"),
    (run_dir.CONFIG, {"image_size": "32"}, r"its \"image_size\" should be a number of pixels"),
])
def test_a_damaged_run_file_is_one_clear_error(tmp_path, name, content, message):
    """Valid JSON of the wrong shape names the file and what it holds, before any model loads."""
    (tmp_path / name).write_text(json.dumps(content))
    (tmp_path / run_dir.MODEL).write_text("not a model: it must not be reached")
    with pytest.raises(ModelLoadError, match=message):
        run_dir.load_run(tmp_path)
    if name == run_dir.STATUS:  # training reads the status through RunDirectory
        with pytest.raises(run_dir.RunDirectoryError, match=message):
            run_dir.RunDirectory(tmp_path).status()


def test_a_config_that_is_not_an_object_is_refused_when_a_run_is_claimed(tmp_path):
    (tmp_path / run_dir.CONFIG).write_text("[]")
    with pytest.raises(run_dir.RunDirectoryError, match=r"config.json is damaged.*--overwrite"):
        run_dir.RunDirectory(tmp_path).prepare({"loss": "ce"})


def test_probing_a_run_without_config_json_says_the_file_is_missing(tmp_path):
    from nodulelearn.sensitivity.probe import probe_run

    _classifier().save(tmp_path / run_dir.MODEL)
    (tmp_path / run_dir.STATUS).write_text(json.dumps({"state": "complete"}))
    out = tmp_path / "probe"
    with pytest.raises(ModelLoadError, match=r"has no config.json \(deleted or never written\)"):
        probe_run(tmp_path, str(out), n=4, repeats=1, seed=0)
    (tmp_path / run_dir.CONFIG).write_text("{}")  # present, but without test_dists
    with pytest.raises(ModelLoadError, match=r"has no test_dists in its config.json"):
        probe_run(tmp_path, str(out), n=4, repeats=1, seed=0)
    assert not out.exists()


def test_the_reliability_docs_name_the_errors_the_run_folder_checks_raise():
    """A caller catching what docs/reliability.md names must catch what load_run raises."""
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| Run folder: `status.json`"))
    assert issubclass(ModelLoadError, ValueError) and issubclass(run_dir.RunDirectoryError,
                                                                 RuntimeError)
    assert "from `load_run` and `probe --run_dir` a `ModelLoadError` (a `ValueError`" in row
    assert "from training (`RunDirectory`) a `RunDirectoryError` (a `RuntimeError`)" in row
