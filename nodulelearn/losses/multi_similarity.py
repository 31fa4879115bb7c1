"""Multi-similarity loss (``multi_similarity``): pair mining and weighting on cosine similarity."""

from __future__ import annotations

import keras
from keras import ops

from nodulelearn.losses import base
from nodulelearn.losses.distances import label_masks, masked_logsumexp, unit_vectors
from nodulelearn.losses.registry import register


def _log_one_plus_sum_exp(logits, mask):
    """``log(1 + Σ_{mask} exp(logits))`` per row: 0 where the mask is empty."""
    lse, nonempty = masked_logsumexp(logits, mask)
    return ops.where(nonempty, ops.logaddexp(ops.zeros_like(lse), lse), 0.0)


def multi_similarity_loss(
    labels,
    embeddings,
    alpha: float = 2.0,
    beta: float = 50.0,
    threshold: float = 0.5,
    epsilon: float = 0.1,
):
    """Multi-similarity loss (Wang et al. 2019, "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning").

    On cosine similarities S (embeddings are L2-normalised inside), pairs are mined per anchor
    i: a negative k is kept if ``S_ik + ε > min_{p ∈ P_i} S_ip``, a positive k if
    ``S_ik - ε < max_{n ∈ N_i} S_in``. Then::

        ℓ_i = 1/α log(1 + Σ_{kept pos} e^{-α (S_ik - λ)}) + 1/β log(1 + Σ_{kept neg} e^{β (S_ik - λ)})

    An anchor without positives or without negatives keeps no pair and contributes 0.

    Args:
        labels: int [B].
        embeddings: [B, D].
        alpha: α > 0, weight scale of positive pairs.
        beta: β > 0, weight scale of negative pairs.
        threshold: λ, the similarity margin (pytorch-metric-learning calls it ``base``).
        epsilon: ε ≥ 0, the mining margin.

    Returns:
        [B] per-anchor loss; the loss is its mean.
    """
    unit = unit_vectors(embeddings)
    similarity = ops.matmul(unit, ops.transpose(unit))
    positive, negative = label_masks(labels)
    fixed = ops.stop_gradient(similarity)
    # An anchor needs both a positive and a negative to keep any pair. The fill values only
    # keep min/max defined on empty rows; they never decide a pair (with ε > 1 they would).
    has_both = ops.logical_and(ops.any(positive, axis=1, keepdims=True),
                               ops.any(negative, axis=1, keepdims=True))
    hardest_positive = ops.min(ops.where(positive, fixed, 2.0), axis=1, keepdims=True)
    hardest_negative = ops.max(ops.where(negative, fixed, -2.0), axis=1, keepdims=True)
    keep_negative = ops.logical_and(
        ops.logical_and(negative, has_both), fixed + epsilon > hardest_positive)
    keep_positive = ops.logical_and(
        ops.logical_and(positive, has_both), fixed - epsilon < hardest_negative)
    positive_term = _log_one_plus_sum_exp(-alpha * (similarity - threshold), keep_positive)
    negative_term = _log_one_plus_sum_exp(beta * (similarity - threshold), keep_negative)
    return positive_term / alpha + negative_term / beta


@register("multi_similarity", consumes="embeddings")
@keras.saving.register_keras_serializable(package="nodulelearn")
class MultiSimilarity(base.NoduleLoss):
    """Multi-similarity loss; see :func:`multi_similarity_loss`.

    Args:
        alpha: float > 0, default 2.0.
        beta: float > 0, default 50.0.
        threshold: float in [-1, 1], default 0.5.
        epsilon: float ≥ 0, default 0.1.
    """

    def __init__(self, alpha=2.0, beta=50.0, threshold=0.5, epsilon=0.1, **kwargs):
        kwargs.setdefault("name", "multi_similarity")
        super().__init__(**kwargs)
        self.alpha = base.positive_float("alpha", alpha)
        self.beta = base.positive_float("beta", beta)
        self.threshold = base.bounded_float("threshold", threshold, -1.0, 1.0)
        self.epsilon = base.non_negative_float("epsilon", epsilon)

    def call(self, y_true, y_pred):
        base.check_rank(self.name, y_pred, 2, "[B, D]")
        return multi_similarity_loss(
            base.labels_1d(y_true), y_pred, self.alpha, self.beta, self.threshold, self.epsilon
        )
