"""tf-explain saliency on nested and non-functional models; report writing and table."""

import os

import keras
import numpy as np
import pytest

from nodulelearn.atomic_files import atomic_path
from nodulelearn.sensitivity import report
from nodulelearn.sensitivity.saliency_maps import SaliencyUnavailable, gradcam_model, saliency


def _nested_classifier():
    image = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(image)
    encoder = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x), name="encoder")
    inputs = keras.Input((16, 16, 1), name="image")
    out = keras.layers.Dense(1, activation="sigmoid")(encoder(inputs))
    return keras.Model(inputs, out)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(2, 3)
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(1, activation="sigmoid")

    def call(self, x):
        return self.dense(self.pool(self.conv(x)))


def test_gradcam_exposes_the_nested_feature_map_without_changing_the_model(rng):
    model = _nested_classifier()
    images = rng.random((4, 16, 16, 1)).astype("float32")
    flat, layer_name = gradcam_model(model)
    assert flat.get_layer(layer_name).output.shape[1:] == (16, 16, 3)
    np.testing.assert_array_equal(np.asarray(flat(images)), np.asarray(model(images)))
    maps = saliency(model, images, np.array([0, 0, 1, 1]), np.asarray(model(images))[:, 0])
    assert maps["gradcam_message"] is None
    assert maps["gradcam"].shape == (4, 16, 16) and maps["occlusion"].shape == (4, 16, 16)
    assert np.isfinite(maps["gradcam"]).all() and maps["gradcam"].max() <= 1.0


def test_subclassed_model_skips_gradcam_with_a_reason_and_keeps_occlusion(rng):
    model = _Subclassed()
    images = rng.random((2, 16, 16, 1)).astype("float32")
    probs = np.asarray(model(images))[:, 0]
    with pytest.raises(SaliencyUnavailable, match="functional"):
        gradcam_model(model)
    maps = saliency(model, images, np.array([0, 1]), probs)
    assert maps["gradcam"] is None and "functional" in maps["gradcam_message"]
    assert maps["occlusion"].shape == (2, 16, 16)


def _result(varies_noise=True):
    records = []
    for i, mode in enumerate(("size", "noise")):
        record = {"mode": mode, "kind": "continuous", "varies": mode == "size" or varies_noise,
                  "n": 10, "repeats": 2}
        for name in ("delta_accuracy", "delta_auc", "flip_rate", "mean_abs_delta_p", "reliance"):
            value = None if not record["varies"] else 0.1 * (2 - i)
            record.update({name: value, f"{name}_ci_low": value, f"{name}_ci_high": value})
        records.append(record)
    return {"distribution": "d", "n": 10, "repeats": 2, "seed": 0,
            "baseline": {"accuracy": 0.9, "auc": float("nan")}, "modes": records}


def test_table_sorts_by_reliance_and_marks_modes_that_do_not_vary():
    table = report.format_table(_result(varies_noise=False))
    lines = table.splitlines()
    assert lines[3].startswith("size") and "0.200 [0.200, 0.200]" in lines[3]
    assert lines[4].startswith("noise") and "does not vary" in lines[4]


def test_writes_are_atomic_and_json_is_standard(tmp_path):
    paths = report.write_sensitivity(str(tmp_path), _result())
    assert sorted(os.listdir(tmp_path)) == ["sensitivity.csv", "sensitivity.json"]
    assert '"auc": null' in open(paths[0]).read()  # NaN written as null, not NaN
    with pytest.raises(RuntimeError):
        with atomic_path(str(tmp_path / "broken.json")) as tmp:
            open(tmp, "w").write("{half")
            raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["sensitivity.csv", "sensitivity.json"]
