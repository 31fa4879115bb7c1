"""Shared fixtures of the sensitivity tests: a small test distribution and tiny models."""

import json

import keras
import numpy as np
import pytest

# 32 pixels of 1.5 mm: the same 48 mm field of view as the default 64 x 0.75 mm, 4x cheaper.
# Every mode varies; size and noise are partly predictive, so accuracy and AUC effects exist.
TEST_SPEC = """
name = "sensitivity_test"
description = "Small test distribution of the sensitivity tests."
image_size = 32
pixel_spacing_mm = 1.5

[modes.size]
alignment = 0.6

[modes.noise]
alignment = 0.6
"""

FIXED_NOISE_SPEC = TEST_SPEC.replace(
    'name = "sensitivity_test"', 'name = "fixed_noise"'
).replace("[modes.noise]\nalignment = 0.6", "[modes.noise]\nfixed = 20.0")


@pytest.fixture(scope="session")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "sensitivity_test.toml"
    path.write_text(TEST_SPEC)
    return str(path)


@pytest.fixture(scope="session")
def fixed_noise_spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "fixed_noise.toml"
    path.write_text(FIXED_NOISE_SPEC)
    return str(path)


def tiny_cnn(image_size=32, seed=0, name="tiny_cnn"):
    """A small randomly initialised functional CNN classifier (P(malignant) output)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(0.0))(x)
    return keras.Model(inputs, keras.layers.Activation("sigmoid")(x), name=name)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def make_tiny_cnn():
    return tiny_cnn


def tiny_classifier_with_encoder(image_size=32, seed=0):
    """Like a bin/train export: the encoder is a nested functional model inside the classifier."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((image_size, image_size, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    encoder = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x), name="encoder")
    inputs = keras.Input((image_size, image_size, 1), name="image")
    logit = keras.layers.Dense(1, name="logit")(encoder(inputs))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(logit), name="classifier")
    return model, encoder


@pytest.fixture
def make_run_dir(tmp_path):
    """Writes a bin/train-like run directory (config.json, model.keras, encoder.keras)."""

    def make(name, test_dists, seed=0, image_size=32):
        run_dir = tmp_path / name
        run_dir.mkdir()
        model, encoder = tiny_classifier_with_encoder(image_size, seed)
        model.save(str(run_dir / "model.keras"))
        encoder.save(str(run_dir / "encoder.keras"))
        (run_dir / "config.json").write_text(
            json.dumps({"train_dist": "clinical", "test_dists": list(test_dists),
                        "image_size": image_size})
        )
        return str(run_dir)

    return make
