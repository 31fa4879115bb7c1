"""Proof that the analysis finds what is there: hand-made classifiers that each read one mode.

Each oracle is a functional Keras model of built-in layers with fixed weights, saved to a
.keras file and loaded back in safe mode like any other model:
- size: erode the image (a min-filter, as -maxpool(-x)) to wipe out thin vessels and spicules,
  then the area of pixels brighter than lung parenchyma -> the nodule's extent;
- noise: energy of a Laplacian filter, averaged over pixels far from any bright structure (a
  softmax over "darkness" weights), so that edges of vessels and nodules do not count;
- constant: reads nothing;
- corner: the mean of a 5 x 5 corner of lung parenchyma, which no mode describes (nuisance).
And for "learned versus used": an encoder whose embedding holds the size and the noise feature,
with a head that reads noise only.
The analysis must rank the oracle's mode first, clearly, and report exactly zero effects for
the constant model. Only the final logistic layer is calibrated (on images of another seed),
so that P(malignant) spans (0, 1) instead of saturating.
"""

import keras
import numpy as np
import pytest

from nodulelearn.datasets import load_spec, sample_factors, spec_at_image_size, spec_from_dict
from nodulelearn.sensitivity import (
    encoding_distribution,
    load_keras_model,
    measure_encoding,
    permutation_sensitivity,
    recoverability,
)
from nodulelearn.sensitivity.prediction import BatchedRenderer, Predictor

PARENCHYMA_CEILING = 0.29  # windowed intensity: parenchyma ~0.24, ground glass ~0.38
BRIGHT = 0.45  # above ground glass: vessels, solid nodules, calcification


def _constant(value):
    return keras.initializers.Constant(value)


def _erode(x, size):
    x = keras.layers.Rescaling(-1.0)(x)
    return keras.layers.Rescaling(-1.0)(keras.layers.MaxPooling2D(size, 1, "same")(x))


def size_feature(image_size):
    image = keras.Input((image_size, image_size, 1), name="image")
    x = _erode(image, 5)
    x = keras.layers.Conv2D(1, 1, activation="sigmoid", kernel_initializer=_constant(100.0),
                            bias_initializer=_constant(-100.0 * PARENCHYMA_CEILING))(x)
    return image, keras.layers.GlobalAveragePooling2D()(x)


def noise_feature(image_size):
    image = keras.Input((image_size, image_size, 1), name="image")
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)[:, :, None, None]
    energy = keras.layers.Conv2D(1, 3, use_bias=False, kernel_initializer=_constant(laplacian))(image)
    energy = keras.layers.Cropping2D(1)(keras.layers.Multiply()([energy, energy]))
    # Weight ~ uniform over pixels whose 5x5 neighbourhood holds nothing bright, ~0 elsewhere.
    nearby = keras.layers.MaxPooling2D(5, 1, "valid")(image)
    darkness = keras.layers.Conv2D(1, 1, kernel_initializer=_constant(-60.0),
                                   bias_initializer=_constant(60.0 * BRIGHT))(nearby)
    weights = keras.layers.Softmax()(keras.layers.Flatten()(darkness))
    weighted = keras.layers.Multiply()([weights, keras.layers.Flatten()(energy)])
    total = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(weighted)
    return image, total


def constant_feature(image_size):
    image = keras.Input((image_size, image_size, 1), name="image")
    x = keras.layers.GlobalAveragePooling2D()(image)
    return image, keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer="zeros")(x)


def build_oracle(feature, spec, *, logits=False):
    """``feature`` plus a logistic layer mapping the feature's 5th-95th percentile to -4..4."""
    image, value = feature(spec.image_size)
    calibration = sample_factors(spec, 64, seed=99)
    renderer = BatchedRenderer(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                               fn=keras.Model(image, value), batch_size=64)
    low, high = np.percentile(renderer.apply(calibration), [5, 95])
    scale = 8.0 / max(high - low, 1e-6)
    out = keras.layers.Dense(1, activation=None if logits else "sigmoid",
                             kernel_initializer=_constant(scale),
                             bias_initializer=_constant(-scale * (low + high) / 2))(value)
    return keras.Model(image, out)


def _saved_and_loaded(model, tmp_path):
    path = str(tmp_path / "oracle.keras")
    model.save(path)
    return load_keras_model(path)  # safe mode: built-in layers only


def _by_mode(result):
    return {r["mode"]: r for r in result["modes"]}


@pytest.mark.parametrize("feature, mode", [(size_feature, "size"), (noise_feature, "noise")])
def test_oracle_mode_is_ranked_first(spec_path, tmp_path, feature, mode):
    spec = load_spec(spec_path)
    model = _saved_and_loaded(build_oracle(feature, spec), tmp_path)
    result = permutation_sensitivity(model, spec, n=160, repeats=3, seed=0, bootstrap=100)
    records = _by_mode(result)
    ranking = sorted(records, key=lambda m: -records[m]["reliance"])
    assert ranking[0] == mode, ranking
    target = records.pop(mode)
    assert target["reliance"] > 0.4
    # Clearly first: the target's interval lies above every other mode's interval.
    for name in ("reliance", "mean_abs_delta_p", "flip_rate"):
        assert target[f"{name}_ci_low"] > max(r[f"{name}_ci_high"] for r in records.values())
    # Size and noise are partly predictive in this distribution: scrambling them costs accuracy.
    assert target["delta_accuracy_ci_low"] > 0 and target["delta_auc_ci_low"] > 0


def test_logit_outputs_give_the_same_analysis_as_probabilities(spec_path):
    spec = load_spec(spec_path)
    kwargs = dict(n=64, repeats=2, seed=1, bootstrap=50, modes=("size", "texture"))
    probs = permutation_sensitivity(build_oracle(size_feature, spec), spec, **kwargs)
    logits = permutation_sensitivity(build_oracle(size_feature, spec, logits=True), spec,
                                     outputs="logit", **kwargs)
    for mode in ("size", "texture"):
        a, b = _by_mode(probs)[mode], _by_mode(logits)[mode]
        assert a["flip_rate"] == b["flip_rate"]
        assert a["mean_abs_delta_p"] == pytest.approx(b["mean_abs_delta_p"], abs=1e-5)
    with pytest.raises(ValueError, match="--outputs=logit"):
        permutation_sensitivity(build_oracle(size_feature, spec, logits=True), spec, **kwargs)


def test_constant_model_has_no_effect_anywhere(spec_path, tmp_path):
    spec = load_spec(spec_path)
    model = _saved_and_loaded(build_oracle(constant_feature, spec), tmp_path)
    result = permutation_sensitivity(model, spec, n=64, repeats=2, seed=0, bootstrap=50)
    for record in result["modes"]:
        assert record["varies"] is True
        for name in ("delta_accuracy", "delta_auc", "flip_rate", "mean_abs_delta_p"):
            assert record[name] == 0.0
            assert record[f"{name}_ci_low"] <= 0.0 <= record[f"{name}_ci_high"]
        assert record["reliance"] is None  # no change anywhere: no share to hand out


# Planted truth for "learned versus used": an encoder whose embedding holds size and noise, and
# a head that reads noise only.
SIZE_ONLY_SPEC = {
    "name": "size_predicts", "image_size": 32, "pixel_spacing_mm": 1.5,
    "modes": {"size": {"alignment": 1.0}, "noise": {"alignment": 0.0}},
}


def _feature_model(feature, image_size):
    return keras.Model(*feature(image_size))


def size_and_noise_encoder(image_size):
    image = keras.Input((image_size, image_size, 1), name="image")
    embedding = keras.layers.Concatenate()([_feature_model(size_feature, image_size)(image),
                                            _feature_model(noise_feature, image_size)(image)])
    return keras.Model(image, embedding, name="encoder")


def noise_reading_classifier(encoder, spec):
    """``encoder`` plus a logistic head on the noise dimension only, calibrated like
    ``build_oracle``."""
    renderer = BatchedRenderer(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                               fn=encoder, batch_size=64)
    low, high = np.percentile(renderer.apply(sample_factors(spec, 64, seed=99))[:, 1], [5, 95])
    scale = 8.0 / max(high - low, 1e-6)
    head = keras.layers.Dense(1, activation="sigmoid",
                              kernel_initializer=_constant(np.array([[0.0], [scale]])),
                              bias_initializer=_constant(-scale * (low + high) / 2))
    image = keras.Input((spec.image_size, spec.image_size, 1), name="image")
    return keras.Model(image, head(encoder(image)))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, spec_path):
    spec = load_spec(spec_path)
    tmp = tmp_path_factory.mktemp("planted")
    encoder = size_and_noise_encoder(spec.image_size)
    model = noise_reading_classifier(encoder, spec)
    model.save(str(tmp / "model.keras"))
    encoder.save(str(tmp / "encoder.keras"))
    return spec, load_keras_model(tmp / "model.keras"), load_keras_model(tmp / "encoder.keras")


def test_planted_noise_head_relies_on_noise(planted):
    spec, model, _ = planted
    records = _by_mode(permutation_sensitivity(model, spec, n=160, repeats=2, seed=0,
                                               bootstrap=100))
    ranking = sorted(records, key=lambda m: -(records[m]["reliance"] or 0))
    assert ranking[0] == "noise" and records["noise"]["reliance"] > 0.5, ranking
    assert records["size"]["reliance"] < 0.05


def test_planted_embedding_encodes_size_and_noise_not_margin(planted):
    spec, _, encoder = planted
    flat = encoding_distribution(spec)
    renderer = BatchedRenderer(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                               fn=encoder, batch_size=256)
    result = measure_encoding(renderer.apply, flat, seed=0, embedding_dim=2, bootstrap=200)
    assert result["n"] == 1000  # the sample-size rule for a 2-wide embedding
    records = _by_mode(result)
    assert records["size"]["normalized_ci_low"] > 0.6, records["size"]
    assert records["noise"]["normalized_ci_low"] > 0.6, records["noise"]
    assert records["margin"]["normalized"] < 0.15, records["margin"]


def test_planted_size_is_recoverable_where_the_head_is_at_chance(planted):
    spec, model, encoder = planted
    target = spec_from_dict(SIZE_ONLY_SPEC)
    geometry = dict(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                    batch_size=256)
    predictor = Predictor(model, **geometry)
    encode = BatchedRenderer(fn=encoder, **geometry).apply
    record = recoverability(predictor.predict, encode, target, seed=0, n_test=400, n_fit=200)
    assert record["retrained_accuracy"] >= 0.9, record
    assert abs(record["original_accuracy"] - 0.5) < 0.1, record
    assert record["gain_ci_low"] > 0.3
    for key in ("original_accuracy", "retrained_accuracy"):
        assert record[f"{key}_ci_low"] < record[key] < record[f"{key}_ci_high"]


def corner_parenchyma_feature(image_size):
    """Mean intensity of the top-left 5 x 5 pixels: lung texture, nothing of the nodule."""
    image = keras.Input((image_size, image_size, 1), name="image")
    corner = keras.layers.Cropping2D(((0, image_size - 5), (0, image_size - 5)))(image)
    return image, keras.layers.GlobalAveragePooling2D()(corner)


def test_corner_parenchyma_reader_is_driven_by_nuisance(spec_path, tmp_path):
    spec = load_spec(spec_path)
    model = _saved_and_loaded(build_oracle(corner_parenchyma_feature, spec), tmp_path)
    records = _by_mode(permutation_sensitivity(model, spec, n=160, repeats=2, seed=0,
                                               bootstrap=100))
    ranking = sorted(records, key=lambda m: -(records[m]["reliance"] or 0))
    assert ranking[0] == "nuisance", [(m, records[m]["reliance"]) for m in ranking]
    assert records["nuisance"]["kind"] == "nuisance"
    others = [r["reliance_ci_high"] for m, r in records.items() if m != "nuisance"]
    assert records["nuisance"]["reliance_ci_low"] > max(others)


def test_encoding_on_the_training_distribution_is_confounded_and_decorrelation_removes_it(
        planted):
    # The embedding holds size and noise only. On margin_size, margin and size both predict the
    # label, so margin "decodes" through size; on the decorrelated version it does not.
    _, _, encoder = planted
    own = spec_at_image_size("margin_size", 32)
    normalized = {}
    for spec in (own, encoding_distribution(own)):
        renderer = BatchedRenderer(image_size=32, pixel_spacing_mm=spec.pixel_spacing_mm,
                                   fn=encoder, batch_size=256)
        result = measure_encoding(renderer.apply, spec, seed=0, embedding_dim=2, n=600,
                                  bootstrap=100, modes=["margin"])
        normalized[spec.name] = result["modes"][0]
    assert normalized["margin_size"]["normalized_ci_low"] > 0.25
    assert normalized["margin_size_independent"]["normalized"] < 0.1
