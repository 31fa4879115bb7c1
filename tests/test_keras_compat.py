"""The private Keras APIs nodulelearn relies on exist in the installed Keras (else: one clear
message saying which, and the tested version)."""

import keras
import pytest

from nodulelearn import keras_compat


def test_the_installed_keras_has_every_private_api_used():
    keras_compat.check()  # fails with KerasCompatibilityError naming what is missing


def test_another_major_version_is_reported_clearly(monkeypatch):
    monkeypatch.setattr(keras, "__version__", "4.0.0")
    with pytest.raises(keras_compat.KerasCompatibilityError,
                       match=r"Keras major version 3.*Keras 4.0.0 lacks.*keras>=3.10,<4"):
        keras_compat.check()


def test_a_missing_private_hook_is_named(monkeypatch):
    owner = next(c for c in keras.Model.__mro__ if "_symbolic_build" in vars(c))
    monkeypatch.delattr(owner, "_symbolic_build")
    with pytest.raises(keras_compat.KerasCompatibilityError, match=r"keras.Model._symbolic_build"):
        keras_compat.check()


def test_the_adapters_read_what_keras_keeps():
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(inputs))
    assert dense in keras_compat.operations(model)
    assert keras_compat.operations(object()) == []
    (node,) = keras_compat.inbound_nodes(dense)
    assert node.outputs[0] is model.outputs[0]
    assert keras_compat.model_strategy(model) is None  # built outside any strategy scope
    with pytest.raises(keras_compat.KerasCompatibilityError, match="_inbound_nodes"):
        keras_compat.inbound_nodes(object())


#: Private Keras names that only keras_compat may spell.
PRIVATE = ("_inbound_nodes", "_operations", "_maybe_symbolic_build", "_symbolic_build",
           "_distribute_strategy", "keras.src")


def test_private_keras_apis_are_used_only_through_the_adapter():
    import pathlib

    package = pathlib.Path(keras_compat.__file__).parent
    direct = {str(p.relative_to(package)) for p in package.rglob("*.py")
              if p.name != "keras_compat.py" and any(n in p.read_text() for n in PRIVATE)}
    assert direct == set(), f"a private Keras API used outside keras_compat, in {sorted(direct)}"
