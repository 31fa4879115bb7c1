"""bin/probe_features on a classifier in another convention: 3 channels, ImageNet normalisation, a
2-unit softmax; saliency also on real patches (--images); a softmax INDEX out of range refused."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--n=32", "--repeats=1", "--bootstrap=10", "--partial_dependence_n=0",
         "--saliency_per_class=1"]


def _probe(*args):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "bin", "probe_features"), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
    )


@pytest.fixture(scope="module")
def rgb_softmax(tmp_path_factory):
    keras.utils.set_random_seed(0)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(image)
    encoder = keras.Model(image, keras.layers.GlobalAveragePooling2D()(x), name="backbone")
    model = keras.Model(image, keras.layers.Dense(2, activation="softmax")(encoder(image)))
    path = tmp_path_factory.mktemp("rgb") / "rgb_softmax.keras"
    model.save(path)
    encoder.save(path.parent / "rgb_encoder.keras")
    patches = path.parent / "patches.npz"
    rng = np.random.default_rng(0)
    np.savez(patches, images=rng.uniform(-1000, 200, (6, 32, 32)), labels=[0, 1] * 3)
    return path, patches


def test_probe_reads_the_model_through_its_adapter(tmp_path, spec_path, rgb_softmax):
    model, patches = rgb_softmax
    out = tmp_path / "out"
    proc = _probe(f"--model={model}", f"--dist={spec_path}", "--input_intensity=imagenet",
                  "--outputs=softmax:1", f"--images={patches}", "--images_intensity=hu",
                  f"--encoder={model.parent / 'rgb_encoder.keras'}", "--encoding_n=40",
                  *SMALL, f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "sensitivity.json").read_text())
    assert result["adapter"] == {"input_intensity": "imagenet", "outputs": "softmax:1",
                                 "channels": 3, "model_input_shape": [32, 32, 3]}
    assert (out / "saliency.png").is_file() and (out / "saliency_images.png").is_file()
    encoding = json.loads((out / "decodability.json").read_text())
    assert encoding["adapter"] == {**result["adapter"], "model_input_shape": [32, 32, 3]}
    assert any(r["normalized"] is not None for r in encoding["modes"])
    assert ("model read through the adapter: input imagenet on 3 channel(s), outputs softmax:1"
            in proc.stdout)
    # Grad-CAM reached the wrapped model's feature map, on renders and on the patches.
    assert "Grad-CAM skipped" not in proc.stderr


def test_probe_refuses_a_softmax_index_out_of_range(tmp_path, spec_path, rgb_softmax):
    model, _ = rgb_softmax
    out = tmp_path / "out"
    proc = _probe(f"--model={model}", f"--dist={spec_path}", "--input_intensity=imagenet",
                  "--outputs=softmax:2", *SMALL, f"--out={out}")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "INDEX 2 is out of range for a model with 2 output unit(s); valid: 0..1" in last
    assert "Traceback" not in proc.stderr and not out.exists()
