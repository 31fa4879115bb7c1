"""multi_similarity has no TensorFlow Addons reference: check it against a plain float64 numpy
evaluation of the paper's formula (Wang et al. 2019), value and directional derivative."""

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn import losses


def multi_similarity_np(labels, x, alpha=2.0, beta=50.0, threshold=0.5, epsilon=0.1):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    per_anchor = []
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        pos = others & (labels == labels[i])
        neg = labels != labels[i]
        if not pos.any() or not neg.any():
            per_anchor.append(0.0)
            continue
        kept_neg = neg & (sim[i] + epsilon > sim[i, pos].min())
        kept_pos = pos & (sim[i] - epsilon < sim[i, neg].max())
        pos_term = np.log1p(np.sum(np.exp(-alpha * (sim[i, kept_pos] - threshold)))) / alpha
        neg_term = np.log1p(np.sum(np.exp(beta * (sim[i, kept_neg] - threshold)))) / beta
        per_anchor.append(pos_term + neg_term)
    return np.mean(per_anchor)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "hparams", [{}, {"alpha": 1.0, "beta": 20.0, "threshold": 0.0, "epsilon": 0.3}]
)
def test_matches_numpy_formula(seed, hparams):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 24)
    labels[-1] = 7  # a singleton anchor (no positive): contributes 0
    x = rng.standard_normal((24, 6))
    x[:12] += 1.5  # make some classes close, so that mining keeps and drops pairs
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = losses.get("multi_similarity", dtype="float64", **hparams)(labels, x)
    grad = tape.gradient(value, x).numpy()
    expected = multi_similarity_np(labels, x.numpy(), **hparams)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10)
    direction = rng.standard_normal(x.shape)
    step = 1e-6
    numeric = (
        multi_similarity_np(labels, x.numpy() + step * direction, **hparams)
        - multi_similarity_np(labels, x.numpy() - step * direction, **hparams)
    ) / (2 * step)
    np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=1e-5)


def test_invalid_threshold():
    with pytest.raises(ValueError, match=r"Expected a float in \[-1, 1\]. Received: threshold=2"):
        losses.get("multi_similarity", threshold=2)
