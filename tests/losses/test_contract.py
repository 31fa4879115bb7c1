"""The contract every registered loss meets, built-in or plugged in (parametrised over names()).

A plug-in installed in the environment (entry-point group ``nodulelearn.losses``) is collected
here too; tests/losses/test_plugins.py proves that by running this file on a plug-in.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from nodulelearn import losses

NAMES = losses.names()
BATCH, DIM, VIEWS = 8, 4, 2
JAX_SCRIPT = pathlib.Path(__file__).with_name("jax_values.py")


def make_inputs(name, regime="random", seed=0):
    """(y_true int32 [B], y_pred) for a loss, shaped as its ``consumes`` says."""
    rng = np.random.default_rng(seed)
    consumes = losses.info(name).consumes
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1], np.int32)
    shape = {"logits": (BATCH, 1), "embeddings": (BATCH, DIM), "views": (BATCH, VIEWS, DIM)}
    y_pred = rng.standard_normal(shape[consumes]).astype(np.float32)
    if consumes == "logits":
        labels = labels % 2
    if regime == "singleton":  # class 5 has one member
        labels[-1] = 5
    elif regime == "single_class":
        labels[:] = 1
    elif regime == "duplicated":
        y_pred[1] = y_pred[0]
        labels[1] = labels[0]
    elif regime == "large_norm":
        y_pred *= 1e3
    return labels, y_pred


def value_and_grad(loss, y_true, y_pred):
    y_pred = tf.convert_to_tensor(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(y_pred)
        value = loss(y_true, y_pred)
    return value, tape.gradient(value, y_pred)


@pytest.mark.parametrize(
    "regime", ["random", "singleton", "single_class", "duplicated", "large_norm"]
)
@pytest.mark.parametrize("name", NAMES)
def test_finite_value_and_gradients(name, regime):
    y_true, y_pred = make_inputs(name, regime)
    value, grad = value_and_grad(losses.get(name), y_true, y_pred)
    assert value.shape == () and np.isfinite(value.numpy()), f"{name}/{regime}: {value}"
    assert grad.shape == y_pred.shape and np.isfinite(grad.numpy()).all(), f"{name}/{regime}"


@pytest.mark.parametrize("name", NAMES)
def test_registry_info_and_per_example_values(name):
    info = losses.info(name)
    assert info.consumes in losses.CONSUMES
    loss = losses.get(name)
    assert isinstance(loss, keras.losses.Loss) and isinstance(loss, info.cls)
    y_true, y_pred = make_inputs(name)
    per_example = losses.get(name, reduction=None)(y_true, y_pred)
    assert per_example.shape == (BATCH,)
    np.testing.assert_allclose(np.mean(per_example), loss(y_true, y_pred), rtol=1e-5)
    # Per-example values carry sample weights as any Keras loss does.
    weighted = loss(y_true, y_pred, sample_weight=np.full(BATCH, 2.0, np.float32))
    np.testing.assert_allclose(weighted, 2.0 * loss(y_true, y_pred), rtol=1e-5)
    # Labels as Keras may hand them over inside fit(): float, [B, 1].
    as_column = loss(y_true.astype(np.float32)[:, None], y_pred)
    np.testing.assert_allclose(as_column, loss(y_true, y_pred), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    info = losses.info(name)
    loss = losses.get(name)
    config = loss.get_config()
    assert set(info.hparams) <= set(config)
    clone = info.cls.from_config(config)
    assert clone.get_config() == config
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == config
    y_true, y_pred = make_inputs(name)
    np.testing.assert_allclose(clone(y_true, y_pred), loss(y_true, y_pred), rtol=1e-6)


def tiny_model(consumes):
    if consumes == "logits":
        inputs = keras.Input((3,))
        outputs = keras.layers.Dense(1)(inputs)
    elif consumes == "embeddings":
        inputs = keras.Input((3,))
        outputs = keras.layers.Dense(DIM)(inputs)
    else:
        inputs = keras.Input((VIEWS, 3))
        outputs = keras.layers.Dense(DIM)(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("name", NAMES)
def test_fit_save_and_load(name, tmp_path):
    keras.utils.set_random_seed(0)
    consumes = losses.info(name).consumes
    model = tiny_model(consumes)
    model.compile(optimizer="sgd", loss=losses.get(name))
    y, _ = make_inputs(name)
    x = np.random.default_rng(1).standard_normal((BATCH, *model.input_shape[1:])).astype("float32")
    history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is losses.info(name).cls
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5
    )


@pytest.mark.parametrize("name", NAMES)
def test_tf_function_and_xla_match_eager(name):
    loss = losses.get(name)
    y_true, y_pred = make_inputs(name, "singleton")
    eager_value, eager_grad = value_and_grad(loss, y_true, y_pred)
    for jit_compile in (False, True):
        compiled = tf.function(lambda t, p: value_and_grad(loss, t, p), jit_compile=jit_compile)
        value, grad = compiled(tf.constant(y_true), tf.constant(y_pred))
        np.testing.assert_allclose(value, eager_value, rtol=1e-5, err_msg=f"jit={jit_compile}")
        np.testing.assert_allclose(
            grad, eager_grad, rtol=1e-4, atol=1e-6, err_msg=f"jit={jit_compile}"
        )


def test_same_values_under_jax(tmp_path):
    """One subprocess with KERAS_BACKEND=jax evaluates every loss on the same inputs."""
    pytest.importorskip("jax")
    inputs = {}
    for name in NAMES:
        for regime in ("random", "singleton", "duplicated"):
            y_true, y_pred = make_inputs(name, regime)
            inputs[f"{name}/{regime}/y_true"], inputs[f"{name}/{regime}/y_pred"] = y_true, y_pred
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, str(JAX_SCRIPT), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")],
        env=env,
        check=True,
        timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    assert json.loads(str(out["backend"])) == "jax"
    for key in sorted(k.rsplit("/", 1)[0] for k in inputs if k.endswith("/y_pred")):
        y_true, y_pred = inputs[f"{key}/y_true"], inputs[f"{key}/y_pred"]
        value, grad = value_and_grad(losses.get(key.split("/")[0]), y_true, y_pred)
        np.testing.assert_allclose(out[f"{key}/value"], value, rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(out[f"{key}/grad"], grad, rtol=1e-4, atol=1e-6, err_msg=key)
