"""The loss registry: names, info, get, validation errors, registration rules, --loss_module."""

import sys
import textwrap

import keras
import numpy as np
import pytest

from nodulelearn import losses
from nodulelearn.registry import UnknownNameError

BUILT_INS = {
    "ce": ("logits", None),
    "focal": ("logits", None),
    "supcon": ("views", None),
    "simclr": ("views", None),
    "contrastive": ("embeddings", None),
    "triplet_semihard": ("embeddings", None),
    "triplet_hard": ("embeddings", None),
    "lifted": ("embeddings", None),
    "npairs": ("views", 2),
    "multi_similarity": ("embeddings", None),
}


def test_built_ins_are_registered_with_what_they_consume():
    names = losses.names()
    assert names == sorted(names) and set(BUILT_INS) <= set(names)
    for name, (consumes, views) in BUILT_INS.items():
        info = losses.info(name)
        assert (info.name, info.consumes, info.views) == (name, consumes, views)


def test_the_catalogue_of_built_ins_matches_what_their_modules_register():
    import importlib

    from nodulelearn.losses.registry import _LOSSES

    assert set(losses.BUILT_INS) == set(BUILT_INS)
    for name, module in losses.BUILT_INS.items():
        importlib.import_module(module)
        assert _LOSSES.entry(name).obj.__module__ == module


def test_names_import_neither_keras_nor_tensorflow():
    """--help of the binaries lists the losses and encoders without importing TensorFlow."""
    import subprocess

    script = ("import sys; from nodulelearn import losses, models; "
              "print(losses.names(), models.names()); "
              "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    names, imported = done.stdout.strip().splitlines()
    assert "supcon" in names and "compact_cnn" in names
    assert imported == "[]"


def test_info_lists_hyperparameters_with_defaults():
    assert losses.info("supcon").hparams == {
        "temperature": 0.07,
        "base_temperature": 0.07,
        "contrast_mode": "all",
    }
    assert losses.info("triplet_hard").hparams == {
        "margin": 1.0,
        "soft": False,
        "distance_metric": "L2",
    }
    assert losses.info("focal").hparams == {"alpha": 0.25, "gamma": 2.0, "from_logits": True}
    assert losses.info("npairs").hparams == {}


def test_get_applies_hyperparameters():
    loss = losses.get("triplet_semihard", margin=0.5, distance_metric="angular", reduction="sum")
    assert (loss.margin, loss.distance_metric, loss.reduction) == (0.5, "angular", "sum")
    assert losses.get("ce", name="my_ce").name == "my_ce"  # Keras' own name= is no clash
    # numpy scalars (e.g. from a sweep) are plain floats in the config.
    loss = losses.get("supcon", temperature=np.float32(0.5), base_temperature=1)
    assert loss.get_config()["temperature"] == 0.5 and type(loss.temperature) is float
    assert loss.base_temperature == 1.0 and type(loss.base_temperature) is float


def test_unknown_name_lists_registered_names():
    with pytest.raises(UnknownNameError, match="Unknown loss 'supcom'.*supcon.*triplet_hard"):
        losses.get("supcom")
    with pytest.raises(KeyError):
        losses.info("nope")


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(
        ValueError, match=r"Unknown hyperparameter\(s\) 'temp' for loss 'supcon'. Valid "
                          r"hyperparameters: temperature \(default 0.07\), base_temperature"
    ):
        losses.get("supcon", temp=0.1)


@pytest.mark.parametrize(
    "name, arg, value, expected",
    [
        ("supcon", "temperature", -1, "a positive float"),
        ("simclr", "temperature", 0.0, "a positive float"),
        ("supcon", "base_temperature", "0.1", "a positive float"),
        ("supcon", "contrast_mode", "two", "one of ('all', 'one')"),
        ("contrastive", "margin", 0.0, "a positive float"),
        ("lifted", "margin", -1.0, "a positive float"),
        ("triplet_semihard", "margin", float("nan"), "a positive float"),
        ("triplet_hard", "distance_metric", "cosine", "one of ('L2', 'squared-L2', 'angular')"),
        ("triplet_hard", "soft", 1, "a bool"),
        ("ce", "label_smoothing", 1.5, "a float in [0, 1]"),
        ("focal", "gamma", -2.0, "a non-negative float"),
        ("focal", "alpha", 2.0, "a float in [0, 1] or None"),
    ],
)
def test_invalid_values_use_keras_wording(name, arg, value, expected):
    message = f"Invalid value for argument `{arg}`. Expected {expected}. Received: {arg}={value!r}"
    with pytest.raises(ValueError) as error:
        losses.get(name, **{arg: value})
    assert str(error.value) == message


class _Dummy(keras.losses.Loss):
    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * keras.ops.mean(keras.ops.square(y_pred), axis=-1)


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="'ce' is already registered"):
        losses.register("ce", consumes="logits")(_Dummy)
    assert losses.info("ce").cls is losses.BinaryCrossEntropy


def test_register_validates_its_arguments():
    with pytest.raises(ValueError, match="Invalid value for argument `protocol`"):
        losses.register("x", protocol="", consumes="logits")
    with pytest.raises(ValueError, match="Invalid value for argument `consumes`"):
        losses.register("x", consumes="images")
    with pytest.raises(ValueError, match="Invalid value for argument `views`.*Received: views=1"):
        losses.register("x", consumes="views", views=1)
    with pytest.raises(ValueError, match="Invalid value for argument `views`.*views=2"):
        losses.register("x", consumes="embeddings", views=2)
    with pytest.raises(TypeError, match="keras.losses.Loss subclass"):
        losses.register("x", consumes="logits")(lambda y, p: p)
    assert "x" not in losses.names()


def test_decorator_registers_a_user_loss():
    losses.register("dummy_square", consumes="embeddings")(_Dummy)
    try:
        assert "dummy_square" in losses.names()
        assert losses.info("dummy_square").hparams == {"scale": 1.0}
        assert losses.get("dummy_square", scale=2.0).scale == 2.0
    finally:
        losses.unregister("dummy_square")
    assert "dummy_square" not in losses.names()


def test_import_loss_module_registers_its_losses(tmp_path, monkeypatch):
    (tmp_path / "user_losses_for_test.py").write_text(
        textwrap.dedent("""
        import keras
        from nodulelearn import losses

        @losses.register("user_l1", consumes="embeddings")
        class UserL1(keras.losses.Loss):
            def call(self, y_true, y_pred):
                return keras.ops.mean(keras.ops.abs(y_pred), axis=-1)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = losses.import_loss_module("user_losses_for_test")
        assert module.__name__ == "user_losses_for_test"
        assert losses.info("user_l1").cls is module.UserL1
        assert float(losses.get("user_l1")([0, 1], [[1.0, -1.0], [3.0, 1.0]])) == 1.5
    finally:
        losses.unregister("user_l1")
        sys.modules.pop("user_losses_for_test", None)


@pytest.mark.parametrize("path", ["no_such_module_xyz", "losses.py", ""])
def test_import_loss_module_reports_what_failed(path):
    with pytest.raises(ImportError, match="Expected a dotted module path|Could not import the loss module"):
        losses.import_loss_module(path)


@pytest.mark.parametrize(
    "name, shape, expected",
    [
        ("supcon", (4, 3), r"\[B, V, D\]"),
        ("simclr", (4, 3), r"\[B, V, D\]"),
        ("npairs", (4, 3, 2), r"\[B, 2, D\]"),
        ("triplet_semihard", (4, 2, 3), r"\[B, D\]"),
        ("triplet_hard", (4, 2, 3), r"\[B, D\]"),
        ("lifted", (4, 2, 3), r"\[B, D\]"),
        ("contrastive", (4, 2, 3), r"\[B, D\]"),
        ("multi_similarity", (4, 2, 3), r"\[B, D\]"),
    ],
)
def test_wrong_input_rank_names_the_expected_shape(name, shape, expected):
    with pytest.raises(ValueError, match=f"expects .*{expected}. Received: shape="):
        losses.get(name)(np.zeros(4, np.int32), np.ones(shape, np.float32))


def test_logits_losses_accept_squeezed_logits():
    y_true, logits = np.array([0, 1, 1]), np.array([[0.5], [-1.0], [2.0]], np.float32)
    for name in ("ce", "focal"):
        loss = losses.get(name)
        np.testing.assert_allclose(loss(y_true, logits[:, 0]), loss(y_true, logits), rtol=1e-6)
