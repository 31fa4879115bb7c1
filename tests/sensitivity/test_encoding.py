"""Linear decodability: modes written into the embedding are decoded, the others are not."""

import numpy as np

from nodulelearn.datasets import MODE_NAMES, Factors
from nodulelearn.sensitivity.decodability import decodability, fit_softmax, softmax_gradient


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


def test_encoded_modes_decode_and_unencoded_ones_stay_at_chance():
    rng = np.random.default_rng(0)
    factors = _factors(400, rng)
    margin_onehot = np.eye(3)[factors.values["margin"].astype(int)]
    embeddings = np.concatenate(
        [
            factors.values["size"][:, None] + rng.normal(0, 0.5, (400, 1)),
            margin_onehot + rng.normal(0, 0.1, (400, 3)),
            rng.normal(size=(400, 4)),  # distractor dimensions
        ],
        axis=1,
    )
    records = {r["mode"]: r for r in decodability(embeddings, factors, seed=0)}
    assert [r for r in records] == list(MODE_NAMES)
    assert records["size"]["metric"] == "r2" and records["size"]["score"] > 0.95
    assert records["margin"]["metric"] == "accuracy" and records["margin"]["score"] > 0.95
    assert records["margin"]["chance"] < 0.5
    assert records["contrast"]["score"] < 0.1  # not in the embedding: R^2 near (or below) 0
    assert records["texture"]["score"] < records["texture"]["chance"] + 0.12
    assert records["noise"]["varies"] is False and records["noise"]["score"] is None
    assert records["size"]["n_fit"] + records["size"]["n_test"] == 400


def test_softmax_fit_reaches_the_optimum_on_correlated_heavy_tailed_features():
    # Like a trained encoder's ReLU embedding: one dominant shared factor, heavy tails. A
    # fixed-step gradient descent stalls or oscillates here (it once scored below chance on a
    # real embedding); Newton's method must land on the optimum: zero gradient.
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 500)
    x = np.exp(1.5 * (rng.normal(size=(500, 1)) + 0.5 * rng.normal(size=(500, 40))))
    x[:, :3] += np.eye(3)[y]
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([x, np.ones((500, 1))], axis=1)
    weights = fit_softmax(x, y, 3)
    assert np.abs(softmax_gradient(x, y, weights)).max() < 1e-8
    assert np.mean(np.argmax(x @ weights, axis=1) == y) > np.bincount(y).max() / 500
