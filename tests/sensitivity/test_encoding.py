"""Encoding: modes written into the embedding are read off it, the others are not."""

import numpy as np
import pytest

from nodulelearn.datasets import MODE_NAMES, Factors, load_spec, sample_factors
from nodulelearn.sensitivity.encoding import (
    balanced_accuracy,
    decodability,
    encoding_distribution,
    encoding_sample_size,
    measure_encoding,
    r_squared,
)


def _factors(n, rng):
    values = {
        "margin": rng.integers(0, 3, n).astype(np.float32),
        "size": rng.uniform(4, 30, n).astype(np.float32),
        "texture": rng.integers(0, 3, n).astype(np.float32),
        "calcification": rng.integers(0, 2, n).astype(np.float32),
        "contrast": rng.uniform(-250, 150, n).astype(np.float32),
        "position": rng.uniform(0, 12, n).astype(np.float32),
        "noise": np.full(n, 20.0, np.float32),  # fixed: does not vary
        "vessels": rng.integers(0, 7, n).astype(np.float32),
    }
    return Factors(
        labels=rng.integers(0, 2, n).astype(np.int32),
        values=values,
        noise_seeds=rng.integers(0, 2**31 - 1, (n, 2)).astype(np.int32),
        index=np.arange(n, dtype=np.int64),
    )


def _embeddings(factors, rng, distractors=20):
    n = len(factors)
    return np.concatenate([
        factors.values["size"][:, None] + rng.normal(0, 0.5, (n, 1)),
        np.eye(3)[factors.values["margin"].astype(int)] + rng.normal(0, 0.1, (n, 3)),
        rng.normal(size=(n, distractors)),  # distractor dimensions
    ], axis=1)


def test_encoded_modes_read_high_and_unencoded_ones_near_zero():
    rng = np.random.default_rng(0)
    factors = _factors(600, rng)
    records = {r["mode"]: r for r in decodability(_embeddings(factors, rng), factors, seed=0,
                                                   bootstrap=200)}
    assert list(records) == list(MODE_NAMES)
    assert records["size"]["metric"] == "r2" and records["size"]["score"] > 0.95
    assert records["margin"]["metric"] == "accuracy" and records["margin"]["normalized"] > 0.95
    assert records["margin"]["balanced_chance"] == pytest.approx(1 / 3)
    for mode in ("texture", "calcification", "contrast", "position", "vessels"):
        record = records[mode]
        assert 0.0 <= record["normalized"] < 0.06, (mode, record)
        assert record["normalized_ci_low"] == 0.0  # the interval reaches the floor
    for record in records.values():
        if record["varies"]:
            assert 0 <= record["normalized_ci_low"] <= record["normalized"]
            assert record["normalized"] <= record["normalized_ci_high"] <= 1
            assert record["score_ci_low"] <= record["score"] <= record["score_ci_high"]
            assert record["folds"] == 5 and record["n_test"] == 600 and record["n_fit"] == 480
    assert records["noise"]["varies"] is False and records["noise"]["normalized"] is None


def test_interval_narrows_with_more_samples():
    rng = np.random.default_rng(3)
    widths = []
    for n in (200, 1600):
        factors = _factors(n, rng)
        emb = np.concatenate([factors.values["size"][:, None] + rng.normal(0, 5, (n, 1)),
                              rng.normal(size=(n, 4))], axis=1)
        size = decodability(emb, factors, seed=0, modes=["size"], bootstrap=200)[0]
        widths.append(size["normalized_ci_high"] - size["normalized_ci_low"])
    assert widths[1] < 0.6 * widths[0]


def test_scores_match_their_definitions():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 1, 0, 2])
    # recalls 3/4, 2/2, 1/2 -> 0.75 (sklearn's balanced_accuracy_score gives the same)
    from sklearn.metrics import balanced_accuracy_score, r2_score

    assert balanced_accuracy(y, predicted, np.arange(3)) == pytest.approx(0.75)
    assert balanced_accuracy_score(y, predicted) == pytest.approx(0.75)
    t = np.array([1.0, 2.0, 4.0, 7.0])
    p = np.array([1.5, 2.0, 3.0, 8.0])
    assert r_squared(t, p) == pytest.approx(r2_score(t, p))


def test_sample_size_rule():
    assert encoding_sample_size(128) == 2560
    assert encoding_sample_size(8) == 1000
    with pytest.raises(ValueError, match="positive"):
        encoding_sample_size(0)


def test_encoding_distribution_decorrelates_and_keeps_looks_and_pins(fixed_noise_spec_path):
    spec = load_spec(fixed_noise_spec_path)
    assert spec.modes["size"].alignment == 0.6
    flat = encoding_distribution(spec)
    assert all(m.alignment == 0.0 for name, m in flat.modes.items() if name != "noise")
    assert flat.modes["noise"].fixed == spec.modes["noise"].fixed
    assert flat.image_size == spec.image_size and flat.pixel_spacing_mm == spec.pixel_spacing_mm
    # Independent of the label: size's mean is the same in both classes (alignment 0.6 before).
    factors = sample_factors(flat, 4000, 0)
    size = factors.values["size"]
    gap = size[factors.labels == 1].mean() - size[factors.labels == 0].mean()
    assert abs(gap) < 0.6
    original = sample_factors(spec, 4000, 0)
    size = original.values["size"]
    assert size[original.labels == 1].mean() - size[original.labels == 0].mean() > 5


def test_measure_encoding_sizes_the_sample_and_rejects_bad_embeddings(spec_path):
    spec = encoding_distribution(spec_path)
    seen = {}

    def encode(factors):
        seen["n"] = len(factors)
        return np.stack([factors.values["size"], factors.values["contrast"]], axis=1)

    result = measure_encoding(encode, spec, seed=0, embedding_dim=2, bootstrap=50,
                              modes=["size", "margin"])
    assert seen["n"] == 1000 == result["n"]
    assert result["embedding_dim"] == 2 and result["distribution"] == spec.name
    by_mode = {r["mode"]: r for r in result["modes"]}
    assert by_mode["size"]["normalized"] > 0.99
    with pytest.raises(ValueError, match="non-finite"):
        measure_encoding(lambda f: np.full((len(f), 2), np.nan), spec, seed=0,
                         embedding_dim=2, n=20)
    with pytest.raises(ValueError, match="at least 10"):
        measure_encoding(encode, spec, seed=0, embedding_dim=2, n=6)
