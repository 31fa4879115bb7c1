"""Change from initialisation: planted truths on small encoders (32-pixel images, few samples).

Every mode that varies here is numeric (size, contrast, noise, position: ridge read-outs, a few
milliseconds each); the others are pinned, so each test runs in seconds.
"""

import keras
import numpy as np
import pytest

from nodulelearn.datasets import BatchRenderer, sample_factors, spec_from_dict
from nodulelearn.sensitivity import untrained
from nodulelearn.sensitivity.intervals import change_interval
from nodulelearn.sensitivity.layers import (
    PooledApply,
    default_layers,
    layer_encoding,
    pooled_model,
    resolve_layers,
)

PINNED = {"margin": {"fixed": "smooth"}, "texture": {"fixed": "solid"},
          "calcification": {"fixed": "none"}, "vessels": {"fixed": 0}}
VARYING = ("size", "contrast", "noise", "position")


def _spec(name, **alignments):
    modes = dict(PINNED, **{m: {"alignment": alignments.get(m, 0.0)} for m in VARYING})
    return spec_from_dict({"name": name, "image_size": 32, "pixel_spacing_mm": 1.5,
                           "modes": modes})


SPEC = _spec("untrained_test")
TRIALS, TRIAL_N, INITS = 20, 200, 5


@pytest.fixture(scope="module")
def renderer():
    return BatchRenderer(image_size=32, pixel_spacing_mm=1.5, fn=lambda x: x, batch_size=512)


@pytest.fixture(scope="module")
def pool(renderer):
    """TRIALS disjoint samples of TRIAL_N (one render), then 300 more for the planted filters."""
    factors = sample_factors(SPEC, TRIALS * TRIAL_N + 300, 5)
    return factors, renderer.apply(factors)


def _tiny_encoder():
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(8, 5, strides=2, padding="same", activation="relu", name="conv0")(
        inputs)
    x = keras.layers.MaxPooling2D(name="pool0")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="embedding")(x))


def _wide_encoder():
    """A 9x9 first convolution (room for a wide box blur or a Laplacian), then one 3x3 block."""
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(16, 9, padding="same", activation="relu", name="conv0")(inputs)
    x = keras.layers.MaxPooling2D(name="pool0")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="embedding")(x))


def _verdicts(by_layer, layer="embedding"):
    return {r["mode"]: r["verdict"] for r in by_layer[layer] if r["varies"]}


def test_untrained_encoders_probed_as_trained_are_unchanged(pool):
    """Coverage: 20 independent trials (own sample, own "trained" init, own reference)."""
    factors, images = pool
    base = _tiny_encoder()
    host = untrained.reinitialized(base, 0)
    apply = PooledApply(pooled_model(host, ["embedding"]))
    unchanged = 0
    for trial in range(TRIALS):
        rows = np.arange(trial * TRIAL_N, (trial + 1) * TRIAL_N)
        host.set_weights(untrained.reinitialized(base, 1000 + trial).get_weights())
        by_layer, reference = layer_encoding(
            base, SPEC, factors.subset(rows), images[rows], seed=trial, layers=["embedding"],
            inits=INITS, pooled=apply(images[rows]), bootstrap=100)
        verdicts = _verdicts(by_layer)
        assert sorted(verdicts) == sorted(VARYING)
        assert len(reference["layers"]["embedding"]["size"]) == INITS
        unchanged += all(v == "unchanged" for v in verdicts.values())
    # Measured: 20 of 20 (the interval is simultaneous over the 4 modes at 95%).
    assert unchanged >= 19, f"every mode unchanged in {unchanged} of {TRIALS} trials"


@pytest.fixture(scope="module")
def planted(pool):
    """The wide encoder as initialised (init 77), and a function measuring it with its first
    convolution's kernel replaced."""
    factors, images = pool
    rows = np.arange(TRIALS * TRIAL_N, len(factors))
    sample, sample_images = factors.subset(rows), images[rows]
    encoder = untrained.reinitialized(_wide_encoder(), 77)
    kernel, bias = encoder.get_layer("conv0").get_weights()

    def measure(new_kernel):
        encoder.get_layer("conv0").set_weights([new_kernel, bias])
        by_layer, _ = layer_encoding(encoder, SPEC, sample, sample_images, seed=0,
                                     layers=["pool0", "embedding"], inits=INITS, bootstrap=100)
        return by_layer

    return kernel, measure


def test_the_wide_encoder_as_initialised_is_unchanged(planted):
    kernel, measure = planted
    by_layer = measure(kernel)
    for layer in ("pool0", "embedding"):
        assert set(_verdicts(by_layer, layer).values()) == {"unchanged"}, by_layer[layer]


def test_a_wide_box_blur_first_convolution_is_suppressed_on_noise(planted):
    kernel, measure = planted
    by_layer = measure(np.full_like(kernel, 1.0 / 81))
    assert _verdicts(by_layer)["noise"] == "suppressed"
    assert _verdicts(by_layer, "pool0")["noise"] == "suppressed"
    assert _verdicts(by_layer)["size"] != "suppressed"  # a blur keeps the nodule's extent


def test_a_laplacian_first_convolution_is_suppressed_on_contrast(planted):
    kernel, measure = planted
    laplacian = np.zeros_like(kernel)
    laplacian[4, 4] = -4.0
    laplacian[3, 4] = laplacian[5, 4] = laplacian[4, 3] = laplacian[4, 5] = 1.0
    by_layer = measure(laplacian)
    assert _verdicts(by_layer)["contrast"] == "suppressed"  # a flat region's level is gone
    assert _verdicts(by_layer)["noise"] != "suppressed"  # a high-pass keeps the noise


def test_training_where_only_noise_predicts_enhances_noise(pool, renderer):
    """An encoder whose random init reads noise poorly (its 9x9 first convolution starts near a
    box blur) trained where only noise predicts the label."""
    factors, images = pool
    rows = np.arange(TRIALS * TRIAL_N, len(factors))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Conv2D(8, 9, padding="same", name="conv0",
                            kernel_initializer=keras.initializers.RandomNormal(1 / 81, 0.002))(
        inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    x = keras.layers.MaxPooling2D(name="pool0")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))
    encoder = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="embedding")(x))

    def noise_verdict():
        by_layer, _ = layer_encoding(encoder, SPEC, factors.subset(rows), images[rows], seed=0,
                                     layers=["embedding"], inits=INITS, bootstrap=100)
        return {r["mode"]: r for r in by_layer["embedding"]}["noise"]

    before = noise_verdict()
    assert before["verdict"] == "unchanged" and before["baseline_normalized"] < 0.3
    train = sample_factors(_spec("noise_predicts", noise=1.0), 1024, 1)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(encoder.output))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(renderer.apply(train), train.labels, epochs=10, batch_size=64,
                        verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    after = noise_verdict()
    assert after["verdict"] == "enhanced" and after["change_ci_low"] > 0.3


def test_change_interval_verdicts_and_width():
    baseline = [0.50, 0.52, 0.48, 0.51, 0.49]
    assert change_interval(0.9, 0.01, baseline)["verdict"] == "enhanced"
    assert change_interval(0.1, 0.01, baseline)["verdict"] == "suppressed"
    same = change_interval(0.5, 0.01, baseline)
    assert same["verdict"] == "unchanged" and same["change"] == pytest.approx(0.0)
    assert same["baseline"] == pytest.approx(0.5) and same["baseline_sd"] == pytest.approx(
        np.std(baseline, ddof=1))

    def width(**kwargs):
        found = change_interval(0.5, kwargs.pop("sd", 0.01), kwargs.pop("b", baseline), **kwargs)
        return found["change_ci_high"] - found["change_ci_low"]

    assert width(comparisons=6) > width(comparisons=1)  # Bonferroni
    assert width(sd=0.1) > width(sd=0.01)  # the test-sample part
    assert width(b=[0.3, 0.7, 0.5, 0.45, 0.55]) > width()  # the spread between inits
    with pytest.raises(ValueError, match="at least 2 baseline scores"):
        change_interval(0.5, 0.01, [0.5])


def test_reinitialized_is_seeded_per_init_and_keeps_the_architecture():
    base = _tiny_encoder()
    a, b, c = (untrained.reinitialized(base, k) for k in (0, 0, 1))
    assert [w.shape for w in a.get_weights()] == [w.shape for w in base.get_weights()]
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(),
                                                        strict=True))
    assert not np.allclose(a.get_weights()[0], c.get_weights()[0])
    assert not np.allclose(a.get_weights()[0], base.get_weights()[0])
    assert untrained.architecture_key(a) == untrained.architecture_key(base)


@pytest.mark.parametrize("bad", [1, -1, True, 2.5])
def test_baseline_inits_must_be_zero_or_at_least_two(bad):
    with pytest.raises(ValueError, match="0 .no untrained reference. or at least 2"):
        untrained.check_inits(bad)


def test_layers_default_to_pooling_and_embedding_and_unknown_names_are_listed():
    encoder = _tiny_encoder()
    assert default_layers(encoder) == ["pool0", "embedding"]
    assert resolve_layers(encoder, ["embedding", "conv1"]) == ["conv1", "embedding"]
    with pytest.raises(ValueError, match="Unknown encoding layer.*'nope'.*conv0, pool0"):
        resolve_layers(encoder, ["nope"])


def test_the_reference_is_cached_in_memory_and_on_disk(pool, tmp_path, monkeypatch):
    factors, images = pool
    rows = np.arange(100)
    sample, sample_images = factors.subset(rows), images[rows]
    encoder = _tiny_encoder()
    calls = []

    def render():
        calls.append(1)
        return sample_images

    def reference(**overrides):
        settings = dict(inits=2, seed=0, layers=["embedding"], folds=5, cache_dir=tmp_path)
        return untrained.encoding_reference(encoder, SPEC, sample, render,
                                            **{**settings, **overrides})

    first = reference()
    assert reference() is first and len(calls) == 1  # memory
    monkeypatch.setattr(untrained, "_MEMORY", {})
    assert reference()["layers"] == first["layers"] and len(calls) == 1  # disk
    [stored] = tmp_path.glob("untrained_encoding_*.json")
    stored.write_text('["damaged"')  # a damaged cache file is recomputed, not trusted
    monkeypatch.setattr(untrained, "_MEMORY", {})
    assert reference()["layers"] == first["layers"] and len(calls) == 2
    calls.pop()
    reference(inits=3)  # another K is another reference
    assert len(calls) == 2
    other = untrained.encoding_reference(encoder, _spec("other", size=0.5), sample, render,
                                         inits=2, seed=0, layers=["embedding"], folds=5)
    assert other["key"] != first["key"] and len(calls) == 3
    # The same samples under another name and description: the same reference, not recomputed.
    renamed = spec_from_dict({**SPEC.to_dict(), "name": "renamed", "description": "another"})
    again = untrained.encoding_reference(encoder, renamed, sample, render, inits=2, seed=0,
                                         layers=["embedding"], folds=5, cache_dir=tmp_path)
    assert again["key"] == first["key"] and again["layers"] == first["layers"]
    assert len(calls) == 3


def test_the_shared_host_gives_each_encoders_own_activations_and_reference(pool):
    """The host clone (one traced function per architecture) computes what each encoder computes
    itself, bit for bit, whichever weights it held before; the reference is each init's own
    read-out."""
    from nodulelearn.sensitivity.encoding import decodability

    factors, images = pool
    rows = np.arange(120)
    sample, sample_images = factors.subset(rows), images[rows]
    base, layers = _tiny_encoder(), ["pool0", "embedding"]
    encoders = [untrained.reinitialized(base, k) for k in (7, 8, 7)]
    for encoder in encoders:
        own = PooledApply(pooled_model(encoder, layers))(sample_images)
        shared = untrained.activations(encoder, layers, sample_images, encoder.get_weights())
        assert all(np.array_equal(a, b) for a, b in zip(own, shared, strict=True))
    reference = untrained.encoding_reference(base, SPEC, sample, lambda: sample_images,
                                             inits=2, seed=3, layers=layers, folds=5)
    for k in range(2):
        init = untrained.reinitialized(base, k)
        for layer, x in zip(layers, PooledApply(pooled_model(init, layers))(sample_images),
                            strict=True):
            records = decodability(x, sample, seed=3, bootstrap=10)
            for record in records:
                if record["varies"]:
                    assert reference["layers"][layer][record["mode"]][k] == record["normalized"]
