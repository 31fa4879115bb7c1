"""The model adapter is exact: a classifier in another convention (3 channels at 96 px with ImageNet
normalisation, raw HU, a 2-unit softmax, a logit) that wraps one single-channel model gets the
plain model's evaluation, permutation reliance and encoding (planted truth), and every form the
adapter refuses is refused in one line."""

import keras
import numpy as np
import pytest
from keras import ops

from nodulelearn.datasets import BatchRenderer, load_spec, spec_at_image_size
from nodulelearn.model_adapter import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelAdapter,
    adapter_record,
    parse_intensity,
    parse_outputs,
)
from nodulelearn.model_io import ModelLoadError, ModelOutputError
from nodulelearn.sensitivity import (
    Predictor,
    measure_encoding,
    partial_dependence,
    permutation_sensitivity,
    probe_dists,
    saliency,
)
from nodulelearn.training.evaluate import evaluate_model, evaluate_on

LOW_HU, WIDTH_HU = -1250.0, 1700.0  # our window (render.py): unit = (HU - LOW) / WIDTH
MODES = ("size", "noise", "nuisance")


def _plain(size):
    """Single-channel encoder, logit and P(malignant) models sharing weights; the bias is set so
    that predictions fall on both sides of 0.5 (accuracy effects exist)."""
    keras.utils.set_random_seed(3)
    image = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    encoder = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x), name="encoder")
    head = keras.layers.Dense(1)
    logit = keras.Model(image, head(encoder(image)), name="logit")
    probe = np.random.default_rng(0).uniform(0.2, 0.8, (16, size, size, 1)).astype("float32")
    head.bias.assign(head.bias - float(np.median(logit(probe))))
    return encoder, logit, keras.Model(image, ops.sigmoid(logit(image)), name="plain")


def _convention(inner, shape, to_unit, out=lambda z: z, name="wrapped"):
    image = keras.Input(shape)
    return keras.Model(image, out(inner(to_unit(image))), name=name)


def _from_imagenet(x):  # ImageNet-normalised 3 channels -> our one channel
    rgb = x * ops.convert_to_tensor(IMAGENET_STD) + ops.convert_to_tensor(IMAGENET_MEAN)
    return ops.mean(rgb, axis=-1, keepdims=True)


def _from_hu(x):
    return (x - LOW_HU) / WIDTH_HU


def _two_class_softmax(z):
    return ops.softmax(ops.concatenate([ops.zeros_like(z), z], axis=-1))


@pytest.fixture(scope="module")
def models():
    """name -> (size, plain model, plain encoder, wrapped model, wrapped encoder, adapter)."""
    built = {}
    for size in (32, 96):
        encoder, logit, plain = _plain(size)
        built[size] = (encoder, logit, plain)
    enc32, logit32, plain32 = built[32]
    enc96, logit96, plain96 = built[96]
    return {
        "imagenet_rgb96": (96, plain96, enc96,
                           _convention(plain96, (96, 96, 3), _from_imagenet),
                           _convention(enc96, (96, 96, 3), _from_imagenet),
                           ModelAdapter("imagenet")),
        "raw_hu": (32, plain32, enc32, _convention(plain32, (32, 32, 1), _from_hu),
                   _convention(enc32, (32, 32, 1), _from_hu), ModelAdapter("hu")),
        "softmax": (32, plain32, enc32, _convention(logit32, (32, 32, 1), lambda x: x,
                                                    _two_class_softmax),
                    enc32, ModelAdapter(outputs="softmax:1")),
        "logit": (32, plain32, enc32, logit32, enc32, ModelAdapter(outputs="logit")),
    }


CONVENTIONS = ("imagenet_rgb96", "raw_hu", "softmax", "logit")


@pytest.mark.parametrize("name", CONVENTIONS)
def test_wrapped_model_is_evaluated_and_probed_like_the_plain_one(models, spec_path, name):
    size, plain, _, wrapped, _, adapter = models[name]
    spec = spec_at_image_size(load_spec(spec_path), size)
    ours = evaluate_model(plain, spec, 48, 5, 24)
    theirs = evaluate_model(wrapped, spec, 48, 5, 24, adapter=adapter)
    assert 0.2 < ours["accuracy"] < 0.9  # not a constant prediction: the comparison means much
    for key in ("accuracy", "sensitivity", "specificity", "auc"):
        assert theirs[key] == pytest.approx(ours[key], abs=1e-6), key
    kwargs = dict(n=40, repeats=1, seed=1, bootstrap=10, modes=MODES, batch_size=40)
    base = permutation_sensitivity(plain, spec, **kwargs)
    adapted = permutation_sensitivity(wrapped, spec, adapter=adapter, **kwargs)
    assert adapted["adapter"] == adapter_record(wrapped, adapter)
    assert adapted["adapter"]["outputs"] == adapter.outputs
    assert adapted["adapter"]["input_intensity"] == adapter.input_intensity
    for ours_mode, theirs_mode in zip(base["modes"], adapted["modes"], strict=True):
        for key in ("mean_abs_delta_p", "flip_rate", "reliance"):
            assert theirs_mode[key] == pytest.approx(ours_mode[key], abs=1e-5), key
    assert base["modes"][0]["mean_abs_delta_p"] > 0


@pytest.mark.parametrize("name", ("imagenet_rgb96", "raw_hu"))
def test_wrapped_encoder_encodes_like_the_plain_one(models, spec_path, name):
    size, _, encoder, _, wrapped_encoder, adapter = models[name]
    spec = spec_at_image_size(load_spec(spec_path), size)

    def encoding(model):
        renderer = BatchRenderer(image_size=size, pixel_spacing_mm=spec.pixel_spacing_mm,
                                 fn=lambda x: model(x, training=False), batch_size=40)
        return measure_encoding(renderer.apply, spec, seed=0, embedding_dim=6, n=40, folds=2,
                                bootstrap=10, modes=("size", "noise"))

    ours = encoding(encoder)
    theirs = encoding(adapter.adapt_encoder(wrapped_encoder))
    for a, b in zip(ours["modes"], theirs["modes"], strict=True):
        assert b["score"] == pytest.approx(a["score"], abs=1e-4)
    assert adapter_record(adapter.adapt_encoder(wrapped_encoder))["input_intensity"] == (
        adapter.input_intensity)


def test_identity_adapter_keeps_the_model_and_intensity_forms_parse():
    _, _, plain = _plain(32)
    assert ModelAdapter().adapt(plain) is plain
    assert ModelAdapter(outputs="logit").output_kind == "logit"
    assert ModelAdapter(outputs="softmax:1").output_kind == "probability"
    assert parse_intensity("window:-1000,400") == ("window", {"low": -1000.0, "high": 400.0})
    assert parse_intensity("window:low=-1000,high=400") == parse_intensity("window:-1000,400")
    assert parse_intensity("zscore:-600,300") == ("zscore", {"mean": -600.0, "std": 300.0})
    assert parse_outputs("softmax:2") == ("softmax", 2)
    # window and zscore are exact transforms of the HU the patch came from
    unit = np.array([[[[0.0]], [[0.5]]]], np.float32).reshape(1, 2, 1, 1)
    hu = unit * WIDTH_HU + LOW_HU
    window = np.asarray(ModelAdapter("window:-1000,400").transform(unit, 1))
    np.testing.assert_allclose(window, np.clip((hu + 1000) / 1400, 0, 1), atol=1e-6)
    z = np.asarray(ModelAdapter("zscore:-600,300").transform(unit, 3))
    assert z.shape == (1, 2, 1, 3)
    np.testing.assert_allclose(z[..., 1], ((hu + 600) / 300)[..., 0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(ModelAdapter("uint8").transform(unit, 1)), unit * 255)


@pytest.mark.parametrize("form, message", [
    ("window:400,-1000", "LOW must be below HIGH"),
    ("window:-1000", "window takes LOW,HIGH"),
    ("window:a,b", "low must be a finite number"),
    ("zscore:0,0", "STD must be positive"),
    ("gamma", "unknown form 'gamma'"),
    ("hu:3", "'hu' takes no values"),
])
def test_intensity_forms_that_do_not_parse(form, message):
    with pytest.raises(ValueError, match=message) as err:
        ModelAdapter(form)
    assert "Expected one of unit, hu, window:LOW,HIGH, zscore:MEAN,STD, imagenet, uint8" in str(
        err.value)
    assert "\n" not in str(err.value)


def test_outputs_that_the_model_cannot_give():
    _, _, plain = _plain(32)
    image = keras.Input((32, 32, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    two = keras.Model(image, keras.layers.Dense(2, activation="softmax")(pooled))
    with pytest.raises(ModelOutputError, match=r"INDEX 2 is out of range for a model with 2 "
                                               r"output unit\(s\); valid: 0..1"):
        ModelAdapter(outputs="softmax:2").adapt(two)
    with pytest.raises(ModelOutputError, match="pass --outputs=softmax:INDEX"):
        ModelAdapter().adapt(two)
    several = keras.Model(image, [keras.layers.Dense(1)(pooled), keras.layers.Dense(1)(pooled)])
    with pytest.raises(ModelOutputError, match="with 2 outputs"):
        ModelAdapter(outputs="logit").adapt(several)
    for bad in ("softmax", "softmax:-1", "softmax:one", "probabilities"):
        with pytest.raises(ValueError, match="Expected one of probability, logit, softmax:INDEX"):
            ModelAdapter(outputs=bad)
    with pytest.raises(ModelLoadError, match="this model takes 1 channel"):
        ModelAdapter("imagenet").adapt(plain)
    rgba = keras.Input((32, 32, 4))
    four = keras.Model(rgba, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(rgba)))
    with pytest.raises(ModelLoadError, match=r"C in \(1, 3\). Received input shape"):
        ModelAdapter("hu").adapt(four)


def test_public_functions_refuse_wrong_argument_types(spec_path, tmp_path):
    _, _, plain = _plain(32)
    with pytest.raises(TypeError, match="Expected model to be a Keras model .* or a loaded run "
                                        r".*Received: str 'runs/x/model.keras'"):
        permutation_sensitivity("runs/x/model.keras", spec_path, n=8, repeats=1, seed=0)
    with pytest.raises(TypeError, match=r"Expected an integer. Received: repeats=1.5"):
        permutation_sensitivity(plain, spec_path, n=8, repeats=1.5, seed=0)
    with pytest.raises(TypeError, match=r"Expected an integer. Received: n='32'"):
        permutation_sensitivity(plain, spec_path, n="32", repeats=1, seed=0)
    with pytest.raises(TypeError, match="Expected spec to be a preset name"):
        permutation_sensitivity(plain, 3, n=8, repeats=1, seed=0)
    with pytest.raises(TypeError, match="a list of mode names"):
        permutation_sensitivity(plain, spec_path, n=8, repeats=1, seed=0, modes="size")
    with pytest.raises(TypeError, match="Expected adapter to be a nodulelearn.model_adapter"):
        permutation_sensitivity(plain, spec_path, n=8, repeats=1, seed=0, adapter="hu")
    with pytest.raises(TypeError, match="Expected model to be a Keras model.*Received: str 'm.k"):
        probe_dists("m.keras", [spec_path], str(tmp_path), n=8, repeats=1, seed=0)
    with pytest.raises(TypeError, match="Expected encoder to be a Keras model"):
        probe_dists(plain, [spec_path], str(tmp_path), n=8, repeats=1, seed=0, encoder="e.keras")
    with pytest.raises(TypeError, match="Expected a Keras model"):
        evaluate_model("m.keras", spec_path, 8, 0)
    with pytest.raises(ValueError, match="Expected at least one test distribution"):
        evaluate_on(plain, [], 8, 0)
    with pytest.raises(ValueError, match="Received: dists='clinical'"):
        evaluate_on(plain, "clinical", 8, 0)
    assert not any(tmp_path.iterdir())
    with pytest.raises(TypeError, match="Expected predictor to be a nodulelearn.sensitivity"):
        partial_dependence(plain, None)
    with pytest.raises(TypeError, match="Expected factors to be nodulelearn.datasets.Factors"):
        partial_dependence(Predictor(plain, image_size=32, pixel_spacing_mm=1.5), [1, 2])
    with pytest.raises(TypeError, match="Expected model to be a Keras model"):
        saliency("m.keras", np.zeros((1, 32, 32, 1)), [0], [0.5])
    with pytest.raises(ValueError, match=r"Expected images of shape \[k, H, W, 1\]"):
        saliency(plain, np.zeros((32, 32)), [0], [0.5])
