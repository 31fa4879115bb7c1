"""The shared model checks: files that are not what they say, and outputs that are not P."""

import json

import keras
import numpy as np
import pytest

from nodulelearn.model_io import (
    ModelLoadError,
    ModelOutputError,
    check_model,
    check_probabilities,
    load_keras_model,
    output_column,
    read_json,
    to_probabilities,
)
from nodulelearn.sensitivity import load_run, permutation_sensitivity


def _saved_model(path, outputs=1):
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    heads = [keras.layers.Dense(1, activation="sigmoid")(x) for _ in range(outputs)]
    model = keras.Model(inputs, heads[0] if outputs == 1 else heads)
    model.save(str(path))
    return model


def test_truncated_keras_file_is_reported_as_damaged_not_missing(tmp_path):
    path = tmp_path / "model.keras"
    _saved_model(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as info:
        load_keras_model(path)
    message = str(info.value)
    assert "not found" not in message.lower()
    assert "truncated" in message and str(path) in message


def test_file_of_another_format_named_keras_is_reported(tmp_path):
    path = tmp_path / "weights.keras"
    path.write_text("hello, not a zip")
    with pytest.raises(ModelLoadError, match="not a Keras model archive") as info:
        load_keras_model(path)
    assert "not found" not in str(info.value).lower()
    with pytest.raises(ModelLoadError, match="directory"):
        load_keras_model(tmp_path)


def test_intact_model_loads(tmp_path):
    model = _saved_model(tmp_path / "ok.keras")
    loaded = load_keras_model(tmp_path / "ok.keras")
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_json_errors_name_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"test_dists": ["clinical"')
    with pytest.raises(ModelLoadError) as info:
        read_json(path, what="run configuration")
    assert str(path) in str(info.value) and "line 1" in str(info.value)
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_json(tmp_path / "absent.json")
    path.write_text(json.dumps({"a": 1}))
    assert read_json(path) == {"a": 1}


def test_run_directory_with_truncated_config_names_it(tmp_path):
    _saved_model(tmp_path / "model.keras")
    (tmp_path / "config.json").write_text('{"image_size": 3')
    with pytest.raises(ModelLoadError, match="config.json.*not valid JSON"):
        load_run(tmp_path)


def test_model_with_three_outputs_is_refused_before_any_work(tmp_path):
    model = _saved_model(tmp_path / "three.keras", outputs=3)
    with pytest.raises(ModelOutputError, match="3 outputs"):
        check_model(model, 16)
    with pytest.raises(ModelOutputError, match="3 outputs"):
        output_column([np.zeros((2, 1))] * 3)
    spec = {"name": "tiny", "image_size": 16, "pixel_spacing_mm": 3.0}
    from nodulelearn.datasets import spec_from_dict

    with pytest.raises(ModelOutputError, match="3 outputs"):
        permutation_sensitivity(model, spec_from_dict(spec), n=4, repeats=1, seed=0)


def test_wide_output_is_refused():
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelOutputError, match=r"\(None, 3\)"):
        check_model(model, 16)


def test_probability_checks():
    np.testing.assert_array_equal(
        check_probabilities(np.array([[0.0], [0.25], [1.0]]), where="m"), [0.0, 0.25, 1.0]
    )
    with pytest.raises(ModelOutputError, match="m on clinical.*--outputs=logit"):
        check_probabilities(np.array([-2.0, 0.3, 4.0]), where="m on clinical")
    with pytest.raises(ModelOutputError, match="1 non-finite outputs"):
        check_probabilities(np.array([np.nan, 0.2]), where="m")
    with pytest.raises(ModelOutputError, match="non-finite"):
        to_probabilities(np.array([np.inf, 0.2]), "logit")
    with pytest.raises(ModelOutputError, match=r"shape"):
        check_probabilities(np.zeros((4, 2)), where="m")
    # Logits: the sigmoid, stable at large |x| (no overflow warning, exact limits).
    x = np.array([-800.0, -2.0, 0.0, 40.0, 800.0])
    with np.errstate(over="raise"):
        p = to_probabilities(x, "logit")
    np.testing.assert_allclose(p[1:4], 1 / (1 + np.exp(-x[1:4])))
    assert p[0] == 0.0 and p[-1] == 1.0
    with pytest.raises(ValueError, match="outputs"):
        to_probabilities(np.array([0.2]), "softmax")
