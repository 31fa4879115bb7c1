"""Untrusted model files and bad input: refusals that say why and what to do."""

import json

import keras
import numpy as np
import pytest

from nodulelearn.sensitivity import (
    ModelLoadError,
    check_input_shape,
    load_keras_model,
    load_run,
)
from nodulelearn.sensitivity.prediction import ModelOutputError, to_probabilities


def _lambda_model(image_size=16):
    inputs = keras.Input((image_size, image_size, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)  # arbitrary Python code
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def test_lambda_model_is_refused_in_safe_mode_and_loads_when_allowed(tmp_path):
    path = str(tmp_path / "lambda.keras")
    model = _lambda_model()
    model.save(path)
    with pytest.raises(ModelLoadError) as info:
        load_keras_model(path)
    message = str(info.value)
    assert "Lambda" in message and "--unsafe_deserialization" in message
    assert "safe mode" in message
    loaded = load_keras_model(path, unsafe_deserialization=True)
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_missing_or_misnamed_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_keras_model(str(tmp_path / "absent.keras"))
    weights = tmp_path / "model.h5"
    weights.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"\.keras"):
        load_keras_model(str(weights))


def test_input_shape_mismatch_names_both_shapes():
    inputs = keras.Input((32, 32, 1))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    check_input_shape(model, 32)
    with pytest.raises(ModelLoadError) as info:
        check_input_shape(model, 64)
    assert "(None, 32, 32, 1)" in str(info.value) and "(None, 64, 64, 1)" in str(info.value)


def test_run_directory_without_model_names_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"test_dists": ["clinical"]}))
    (tmp_path / "history.csv").write_text("epoch\n")
    with pytest.raises(ModelLoadError) as info:
        load_run(str(tmp_path))
    assert "model.keras" in str(info.value) and "history.csv" in str(info.value)
    with pytest.raises(ModelLoadError, match="not found"):
        load_run(str(tmp_path / "nope"))


def test_probability_outputs_out_of_range_suggest_logits():
    with pytest.raises(ModelOutputError, match="--outputs=logit"):
        to_probabilities(np.array([-2.0, 0.3, 4.0]), "probability")
    np.testing.assert_allclose(
        to_probabilities(np.array([-2.0, 0.0, 40.0]), "logit"),
        1 / (1 + np.exp(-np.array([-2.0, 0.0, 40.0]))),
    )
    with pytest.raises(ModelOutputError, match="non-finite"):
        to_probabilities(np.array([np.nan, 0.2]), "probability")
    with pytest.raises(ValueError, match="outputs"):
        to_probabilities(np.array([0.2]), "softmax")
