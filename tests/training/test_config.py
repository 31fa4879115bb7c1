"""TrainConfig resolution and the bad-input errors of training."""

import pytest

from nodulelearn.registry import UnknownNameError
from nodulelearn.training.config import (
    SMOKE_DEFAULTS,
    TrainConfig,
    check_field,
    parse_params,
    resolve_config,
)
from nodulelearn.training.protocols import protocol_for


def test_defaults_depend_on_the_protocol_and_test_dists_on_the_spec():
    from nodulelearn.datasets import load_spec

    ce = resolve_config(TrainConfig(loss="ce"))
    assert ce.probe_epochs == 0 and ce.epochs == protocol_for("ce").defaults["epochs"]
    supcon = resolve_config(TrainConfig(loss="supcon"))
    assert supcon.probe_epochs == protocol_for("supcon").defaults["probe_epochs"]
    assert (ce.epochs, supcon.epochs, supcon.probe_epochs) == (15, 12, 30)  # the documented ones
    assert supcon.test_dists == ("clinical",) + load_spec("clinical").ood_companions
    assert supcon.image_size == load_spec("clinical").image_size


def test_smoke_shrinks_but_explicit_values_win():
    smoke = resolve_config(TrainConfig(loss="supcon", smoke=True, epochs=2))
    assert smoke.image_size == SMOKE_DEFAULTS["image_size"]
    assert smoke.n_train == SMOKE_DEFAULTS["n_train"] and smoke.epochs == 2


def test_resolved_config_round_trips_through_a_dict():
    config = resolve_config(TrainConfig(loss="ce", loss_params={"label_smoothing": 0.1},
                                        test_dists=("clinical",), smoke=True))
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert resolve_config(config) == config


def test_probe_epochs_with_an_end_to_end_loss_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no linear-probe phase \(its phases: train\); "
                                         r"probe_epochs applies only.*supcon"):
        resolve_config(TrainConfig(loss="ce", probe_epochs=5))


@pytest.mark.parametrize("field,value,match", [
    ("loss", "hinge", "Valid names:.*ce.*supcon"),
    ("model", "vgg", "Valid names: compact_cnn"),
    ("train_dist", "nowhere", "nowhere"),
    ("test_dists", ("clinical", "nowhere"), "nowhere"),
    ("strategy", "tpu", "default, mirrored, multi_worker"),
])
def test_unknown_names_are_listed(field, value, match):
    with pytest.raises((UnknownNameError, ValueError), match=match):
        resolve_config(TrainConfig(**{"loss": "ce", field: value}))


@pytest.mark.parametrize("field, value, error, expected", [
    ("smoke", "false", TypeError, "a boolean"),
    ("deterministic", 1, TypeError, "a boolean"),
    ("learning_rate", True, TypeError, "a positive float"),
    ("learning_rate", float("inf"), ValueError, "a positive, finite float"),
    ("learning_rate", float("nan"), ValueError, "a positive, finite float"),
    ("learning_rate", "1e-3", TypeError, "a positive float"),
    ("image_size", 0, ValueError, r"an integer in \[8, 1024\]"),
    ("image_size", 7, ValueError, r"an integer in \[8, 1024\]"),
    ("image_size", 32.0, TypeError, "an integer number of pixels"),
    ("seed", "0", TypeError, "an integer"),
    ("seed", -1, ValueError, r"\[0, 4294967295\]"),
    ("seed", 2**32, ValueError, r"\[0, 4294967295\]"),
    ("n_train", True, TypeError, "a positive integer"),
    ("epochs", 2.5, TypeError, "a positive integer"),
    ("batch_size", 0, ValueError, "a positive integer"),
    ("test_dists", "margin_size", TypeError, "a string is not a list"),
    ("augment", "flip", TypeError, "a string is not a list"),
    ("augment", ["flip", 3], TypeError, "each a non-empty string"),
    ("loss_params", [("temperature", 0.1)], TypeError, "a mapping"),
    ("train_dist", None, TypeError, "a non-empty string"),
])
def test_every_field_is_type_checked_strictly(field, value, error, expected):
    """bool is not a number, a string is not a bool nor a list of names, inf is no rate."""
    with pytest.raises(error, match=rf"Invalid value for `{field}`\. Expected .*{expected}.*"
                                    rf"Received: {field}="):
        resolve_config(TrainConfig(**{"loss": "ce", field: value}))


def test_the_field_check_normalises_and_accepts_the_bounds():
    import numpy as np

    assert check_field("seed", np.int64(7)) == 7 and type(check_field("seed", np.int64(7))) is int
    assert check_field("seed", 2**32 - 1) == 2**32 - 1
    assert check_field("test_dists", ["clinical"]) == ("clinical",)
    from pathlib import Path

    assert check_field("train_dist", Path("a/b.toml")) == str(Path("a/b.toml"))
    assert check_field("test_dists", [Path("a.toml"), "clinical"]) == ("a.toml", "clinical")
    assert check_field("learning_rate", 1) == 1.0 and check_field("image_size", None) is None
    config = resolve_config(TrainConfig(loss="ce", smoke=True, image_size=8))
    assert config.image_size == 8
    with pytest.raises(ValueError, match="Unknown TrainConfig field 'lr'. Valid fields: augment"):
        check_field("lr", 0.1)


@pytest.mark.parametrize("d, error, message", [
    ({"loss": "ce", "test_dists": 5}, TypeError, r"`test_dists`\. Expected a list.*test_dists=5"),
    ({"loss": "ce", "augment": "flip"}, TypeError, r"a string is not a list"),
    ([("loss", "ce")], TypeError, r"Expected a mapping of TrainConfig fields\. Received: list"),
])
def test_from_dict_leaves_bad_values_to_the_check(d, error, message):
    with pytest.raises(error, match=message):
        resolve_config(TrainConfig.from_dict(d))


def test_train_refuses_a_dict_before_any_work(tmp_path):
    from nodulelearn.training import train

    with pytest.raises(TypeError, match=r"Expected a TrainConfig\. Received: dict\. Build one "
                                        r"with TrainConfig\(\*\*d\)"):
        train({"loss": "ce", "smoke": True}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_loss_params_name_the_valid_hyperparameters():
    with pytest.raises(ValueError, match="Valid hyperparameters: temperature"):
        resolve_config(TrainConfig(loss="supcon", loss_params={"temp": 0.1}))
    with pytest.raises(ValueError, match="positive integer"):
        resolve_config(TrainConfig(loss="ce", epochs=0))


def test_parse_params():
    assert parse_params("temperature=0.1,name=x, flag=true") == {
        "temperature": 0.1, "name": "x", "flag": True}
    assert parse_params("") == {}
    with pytest.raises(ValueError, match="Expected key=value"):
        parse_params("temperature")


def test_the_config_and_its_names_import_no_tensorflow():
    """bin/train's flags (STRATEGIES, the config) are defined without importing TensorFlow."""
    import subprocess
    import sys

    script = ("import sys; from nodulelearn.training import STRATEGIES, TrainConfig; "
              "TrainConfig(loss='ce').to_dict(); "
              "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_training_train_stays_the_function_when_its_module_is_imported():
    import types

    import nodulelearn.training
    import nodulelearn.training.train  # noqa: F401 (the submodule of the same name)
    from nodulelearn.training import train

    assert isinstance(train, types.FunctionType) and nodulelearn.training.train is train
