"""Tracking: TensorBoard's train/validation overlay, one HParams session per run with its test
metrics, and the versions and git commit in config.json (not part of the run's identity)."""

import importlib.metadata
import json
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from nodulelearn.training import TrainConfig, tracking, train
from nodulelearn.training.run_dir import RunDirectory

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracking") / "run"
    trained = train(TrainConfig(loss="ce", smoke=True, test_dists=("clinical",)), out, verbose=0)
    return out, trained.metrics


def _events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    accumulator.Reload()
    return accumulator


def test_training_and_validation_curves_share_their_tags(run):
    out, _ = run
    train_events = _events(out / "logs" / "train" / "train")
    validation_events = _events(out / "logs" / "train" / "validation")
    assert "epoch_loss" in train_events.Tags()["tensors"]
    assert "epoch_loss" in validation_events.Tags()["tensors"]  # overlaid in one chart
    assert "epoch_auc" in validation_events.Tags()["tensors"]


def test_one_hparams_session_with_the_settings_and_the_test_metrics(run):
    out, metrics = run
    events = _events(out / "logs" / "hparams")
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert values["loss"].string_value == "ce"
    assert values["train_dist"].string_value == "clinical"
    assert values["seed"].number_value == 0 and values["protocol"].string_value == "end_to_end"
    config = json.loads((out / "config.json").read_text())
    assert values["learning_rate"].number_value == pytest.approx(config["learning_rate"])
    auc = events.Tensors("test/clinical/auc")
    assert len(auc) == 1
    assert float(tf.make_ndarray(auc[0].tensor_proto)) == pytest.approx(metrics["clinical"]["auc"])


def test_config_records_the_versions_and_the_commit(run):
    out, _ = run
    environment = json.loads((out / "config.json").read_text())["environment"]
    assert environment["tensorflow"] == tf.__version__
    assert environment["keras"] == keras.__version__
    assert environment["numpy"] == np.__version__
    assert environment["nodulelearn"] == importlib.metadata.version("nodulelearn")
    checkout = shutil.which("git") and subprocess.run(
        ["git", "-C", str(REPO / "nodulelearn"), "rev-parse", "HEAD"], capture_output=True,
    ).returncode == 0
    if not checkout:
        assert environment["git_commit"] is None
        return
    commit = environment["git_commit"]
    assert len(commit) == 40 and set(commit) <= set("0123456789abcdef")
    # A commit of this checkout (HEAD itself may have moved on since the run started).
    exists = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"])
    assert exists.returncode == 0


def test_no_commit_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    assert tracking.git_commit(str(tmp_path)) is None  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path))  # no git program at all
    tracking.git_commit.cache_clear()
    try:
        assert tracking.git_commit() is None
    finally:
        tracking.git_commit.cache_clear()


def test_versions_are_not_part_of_the_run_identity(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.prepare({"loss": "ce", "seed": 0, "environment": {"git_commit": "a" * 40}})
    run.prepare({"loss": "ce", "seed": 0, "environment": {"git_commit": "b" * 40}})  # accepted
    assert run.read_json("config.json")["environment"]["git_commit"] == "b" * 40
