"""TrainConfig resolution and the bad-input errors of training."""

import pytest

from nodulelearn.registry import UnknownNameError
from nodulelearn.training.config import (
    SMOKE_DEFAULTS,
    TrainConfig,
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
