"""Pair-based metric-learning losses: ``contrastive``, ``lifted`` and ``npairs``.

TensorFlow Addons' semantics, re-implemented in keras.ops. Each class returns one value per
anchor, scaled so that their mean over the batch is the reference's batch loss.
"""

from __future__ import annotations

import keras
from keras import ops

from nodulelearn.losses import base
from nodulelearn.losses.distances import (
    explicit_pairwise_l2,
    label_masks,
    masked_logsumexp,
    pairwise_distances,
)
from nodulelearn.losses.registry import register


def contrastive_pair_loss(y_true, distances, margin: float = 1.0):
    """Margin contrastive loss of pairs (Hadsell, Chopra & LeCun 2006), TFA's form (no ½).

    ``ℓ = y d² + (1 - y) max(m - d, 0)²``.

    Args:
        y_true: [P], 1 for a similar pair, 0 otherwise.
        distances: [P] pair distances.
        margin: m > 0.

    Returns:
        [P] per-pair loss.
    """
    y_true = ops.cast(y_true, distances.dtype)
    return y_true * ops.square(distances) + (1.0 - y_true) * ops.square(
        ops.maximum(margin - distances, 0.0)
    )


def contrastive_inbatch_loss(labels, embeddings, margin: float = 1.0):
    """Contrastive loss over all in-batch pairs i < j (similar = same label), Euclidean distance.

    Args:
        labels: int [B].
        embeddings: [B, D].
        margin: m > 0.

    Returns:
        [B]: per anchor, the mean of ℓ over its pairs with the B - 1 others. The batch mean is the
        mean over the B(B-1)/2 pairs (0 for a batch of one).
    """
    distances = explicit_pairwise_l2(embeddings)
    positive, negative = label_masks(labels)
    pair_loss = contrastive_pair_loss(ops.cast(positive, distances.dtype), distances, margin)
    pair_loss = ops.where(ops.logical_or(positive, negative), pair_loss, 0.0)  # drop i == j
    n_others = ops.cast(ops.shape(embeddings)[0] - 1, distances.dtype)
    return ops.sum(pair_loss, axis=1) / ops.maximum(n_others, 1.0)


def lifted_struct_loss(labels, embeddings, margin: float = 1.0):
    """Lifted structured loss (Oh Song et al. 2016), TensorFlow Addons' semantics, L2 distances.

    For each positive pair {i, j}: ``J_ij = D_ij + log(Σ_{k∉y_i} e^{m - D_ik} + Σ_{l∉y_j} e^{m - D_jl})``
    and ``loss = 1/(2P) Σ_{i<j} max(J_ij, 0)²`` over the P positive pairs. The log-sum-exp is
    evaluated per row with masked terms removed before exponentiating, so it is finite for any
    input scale; pairs without negatives, and batches without positive pairs, contribute 0
    (the reference gives NaN for both).

    Args:
        labels: int [B].
        embeddings: [B, D].
        margin: m > 0.

    Returns:
        [B]: ``B/(4P) Σ_{j ∈ P(i)} max(J_ij, 0)²`` per anchor i; its mean is the loss.
    """
    distances = pairwise_distances(embeddings, "L2")
    positive, negative = label_masks(labels)
    logits = margin - distances
    row_lse, has_negative = masked_logsumexp(logits, negative)
    pair_lse = ops.logaddexp(row_lse[:, None], row_lse[None, :])
    valid = ops.logical_and(positive, has_negative[:, None])  # i, j share their negatives
    hinge = ops.where(valid, ops.maximum(distances + pair_lse, 0.0), 0.0)
    n_pairs = ops.sum(ops.cast(positive, distances.dtype)) / 2.0
    batch = ops.cast(ops.shape(embeddings)[0], distances.dtype)
    scale = ops.where(n_pairs > 0, batch / (4.0 * ops.maximum(n_pairs, 1.0)), 0.0)
    return scale * ops.sum(ops.square(hinge), axis=1)


def npairs_loss(labels, anchors, positives):
    """N-pairs loss (Sohn 2016), TensorFlow Addons' semantics (no L2 regularisation term).

    ``S = A Pᵀ``; ``T_ij = [y_i = y_j] / Σ_k [y_i = y_k]``; per anchor
    ``ℓ_i = -Σ_j T_ij log softmax(S_i·)_j``.

    Args:
        labels: int [B].
        anchors: [B, D].
        positives: [B, D].

    Returns:
        [B] per-anchor loss; its mean is the reference loss.
    """
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    similarity = ops.matmul(anchors, ops.transpose(positives))
    targets = ops.cast(ops.equal(labels[:, None], labels[None, :]), similarity.dtype)
    targets = targets / ops.sum(targets, axis=1, keepdims=True)
    return -ops.sum(targets * ops.log_softmax(similarity, axis=1), axis=1)


@register("contrastive", consumes="embeddings")
@keras.saving.register_keras_serializable(package="nodulelearn")
class Contrastive(base.NoduleLoss):
    """In-batch margin contrastive loss; see :func:`contrastive_inbatch_loss`.

    Args:
        margin: float > 0, default 1.0.
    """

    def __init__(self, margin=1.0, **kwargs):
        kwargs.setdefault("name", "contrastive")
        super().__init__(**kwargs)
        self.margin = base.positive_float("margin", margin)

    def call(self, y_true, y_pred):
        base.check_rank(self.name, y_pred, 2, "[B, D]")
        return contrastive_inbatch_loss(base.labels_1d(y_true), y_pred, self.margin)


@register("lifted", consumes="embeddings")
@keras.saving.register_keras_serializable(package="nodulelearn")
class LiftedStruct(base.NoduleLoss):
    """Lifted structured loss; see :func:`lifted_struct_loss`.

    Args:
        margin: float > 0, default 1.0.
    """

    def __init__(self, margin=1.0, **kwargs):
        kwargs.setdefault("name", "lifted")
        super().__init__(**kwargs)
        self.margin = base.positive_float("margin", margin)

    def call(self, y_true, y_pred):
        base.check_rank(self.name, y_pred, 2, "[B, D]")
        return lifted_struct_loss(base.labels_1d(y_true), y_pred, self.margin)


@register("npairs", consumes="views", views=2)
@keras.saving.register_keras_serializable(package="nodulelearn")
class NPairs(base.NoduleLoss):
    """N-pairs loss on two views [B, 2, D] (view 0: anchors, view 1: positives); see
    :func:`npairs_loss`. No hyperparameters."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "npairs")
        super().__init__(**kwargs)

    def call(self, y_true, y_pred):
        if len(y_pred.shape) != 3 or y_pred.shape[1] != 2:
            raise ValueError(
                f"Loss 'npairs' expects two views of shape [B, 2, D]. Received: shape={y_pred.shape}"
            )
        return npairs_loss(base.labels_1d(y_true), y_pred[:, 0], y_pred[:, 1])
