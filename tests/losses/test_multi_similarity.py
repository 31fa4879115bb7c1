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


def test_anchors_without_a_positive_or_a_negative_keep_no_pair_even_for_a_large_epsilon():
    # With ε > 1 every pair passes the mining test S ± ε vs the hardest pair, so only the
    # "anchor has both a positive and a negative" rule keeps the third anchor out of the loss.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    labels = np.array([0, 0, 1])
    expected = multi_similarity_np(labels, x, epsilon=1.5)
    # Independent check of the reference itself: anchors 0 and 1 each keep their positive
    # (S = 0) and the negative; anchor 2 has no positive and contributes 0.
    s = x / np.linalg.norm(x, axis=1, keepdims=True) @ (x / np.linalg.norm(x, axis=1,
                                                                           keepdims=True)).T
    by_hand = np.mean([
        np.log1p(np.exp(-2.0 * (s[0, 1] - 0.5))) / 2.0 + np.log1p(np.exp(50.0 * (s[0, 2] - 0.5))) / 50.0,
        np.log1p(np.exp(-2.0 * (s[1, 0] - 0.5))) / 2.0 + np.log1p(np.exp(50.0 * (s[1, 2] - 0.5))) / 50.0,
        0.0,
    ])
    np.testing.assert_allclose(expected, by_hand, rtol=1e-12)
    np.testing.assert_allclose(expected, 0.57113, atol=5e-6)
    value = losses.get("multi_similarity", dtype="float64", epsilon=1.5)(labels, tf.constant(x))
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("epsilon", [0.1, 1.5, 3.0])
def test_one_class_batches_give_zero(epsilon):
    x = np.random.default_rng(0).standard_normal((6, 4))
    labels = np.zeros(6, dtype=np.int64)
    assert multi_similarity_np(labels, x, epsilon=epsilon) == 0.0
    value = losses.get("multi_similarity", dtype="float64", epsilon=epsilon)(labels, tf.constant(x))
    assert value.numpy() == 0.0
