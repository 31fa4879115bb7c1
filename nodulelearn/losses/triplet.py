"""Triplet losses with TensorFlow Addons' mining: ``triplet_semihard`` and ``triplet_hard``."""

from __future__ import annotations

import keras
from keras import ops

from nodulelearn.losses import base
from nodulelearn.losses.distances import (
    DISTANCE_METRICS,
    label_masks,
    masked_maximum,
    masked_minimum,
    pairwise_distances,
)
from nodulelearn.losses.registry import register


def _semihard_negatives(distances, positive, negative):
    """Semi-hard negative of every (anchor, positive) pair in O(B² log B), no [B, B, B] tensor.

    For pair (a, p): the smallest negative distance D_an > D_ap if one exists, else the largest
    negative distance. Found by sorting each row's negative distances together with the row's
    own distances as queries (a stable sort puts a negative equal to a query first, so the
    count of negatives sorted before a query is #{n : D_an ≤ D_ap}).

    Args:
        distances: [B, B] (no gradient needed).
        positive, negative: [B, B] bool masks.

    Returns:
        chosen: [B, B] chosen negative distance (meaningful where the anchor has negatives).
        group_ids: [B, B] int, row-major id of the tie group (equal distances in a row) of the
            chosen negative, and of each negative itself (``negative_group``), in [0, B²).
        group_size: [B²] number of negatives in each tie group.
        negative_group: [B, B] tie group of each negative entry.
    """
    batch = ops.shape(distances)[0]
    negative_d = ops.where(negative, distances, float("inf"))
    n_negative = ops.sum(ops.cast(negative, "int32"), axis=1, keepdims=True)

    merged = ops.concatenate([negative_d, distances], axis=1)  # [B, 2B]: negatives, then queries
    order = ops.argsort(merged, axis=1)
    is_negative = ops.concatenate(
        [ops.cast(negative, "int32"), ops.zeros_like(order[:, :batch])], 1
    )
    negatives_up_to = ops.cumsum(ops.take_along_axis(is_negative, order, axis=1), axis=1)
    rank = ops.argsort(order, axis=1)  # inverse permutation: sorted position of each entry
    at_rank = ops.take_along_axis(negatives_up_to, rank, axis=1)
    count_le = at_rank[:, batch:]  # queries: #negatives with D_an <= D_ap
    negative_position = ops.clip(at_rank[:, :batch] - 1, 0, batch - 1)  # negatives: sorted slot

    sorted_negative = ops.sort(negative_d, axis=1)
    slot = ops.where(count_le < n_negative, count_le, n_negative - 1)  # else: farthest negative
    slot = ops.clip(slot, 0, batch - 1)
    chosen = ops.take_along_axis(sorted_negative, slot, axis=1)

    # Tie groups of equal values in each sorted row, so that gradients split over ties as
    # TensorFlow's reduce_min / reduce_max do in the reference.
    starts = ops.cast(sorted_negative[:, 1:] != sorted_negative[:, :-1], "int32")
    starts = ops.concatenate([ops.zeros_like(starts[:, :1]), starts], axis=1)
    groups = ops.cumsum(starts, axis=1) + ops.arange(batch, dtype="int32")[:, None] * batch
    group_size = ops.segment_sum(
        ops.ones((batch * batch,), distances.dtype), ops.reshape(groups, (-1,)), batch * batch
    )
    chosen_group = ops.take_along_axis(groups, slot, axis=1)
    negative_group = ops.take_along_axis(groups, negative_position, axis=1)
    return chosen, chosen_group, group_size, negative_group


def triplet_semihard_loss(labels, embeddings, margin: float = 1.0, distance_metric: str = "L2"):
    """Triplet loss with semi-hard negative mining (Schroff et al. 2015, FaceNet), TFA semantics.

    Over ordered positive pairs (a, p): ``max(m + D_ap - D_an*, 0)`` where n* is the closest
    negative farther than p, else the farthest negative (else, with no negative at all, the row
    minimum of D). Loss = sum / number of positive pairs (0 when there is none; the reference
    gives NaN).

    Args:
        labels: int [B].
        embeddings: [B, D].
        margin: m > 0.
        distance_metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.

    Returns:
        [B]: ``B / #pairs · Σ_p hinge(a, p)`` per anchor a; its mean is the loss.
    """
    distances = pairwise_distances(embeddings, distance_metric)
    positive, negative = label_masks(labels)
    fixed = ops.stop_gradient(distances)
    chosen, chosen_group, group_size, negative_group = _semihard_negatives(
        fixed, positive, negative
    )
    has_negative = ops.any(negative, axis=1, keepdims=True)
    negative_distance = ops.where(has_negative, chosen, ops.min(distances, axis=1, keepdims=True))
    hinge_input = margin + distances - negative_distance
    active = ops.logical_and(ops.logical_and(positive, has_negative), hinge_input >= 0)
    hinge = ops.where(positive, ops.maximum(hinge_input, 0.0), 0.0)

    # The chosen negative carries no gradient above; add it back, split over tied negatives:
    # a zero-valued term whose gradient is -(active pairs choosing n's group)/(group size).
    batch = ops.shape(distances)[0]
    n_choosing = ops.segment_sum(
        ops.reshape(ops.cast(active, distances.dtype), (-1,)),
        ops.reshape(chosen_group, (-1,)),
        batch * batch,
    )
    flat_group = ops.reshape(negative_group, (-1,))
    share = ops.reshape(
        ops.take(n_choosing, flat_group) / ops.take(group_size, flat_group), ops.shape(distances)
    )
    share = ops.where(negative, share, 0.0)
    per_anchor = ops.sum(hinge, axis=1) - ops.sum(share * (distances - fixed), axis=1)

    n_pairs = ops.sum(ops.cast(positive, distances.dtype))
    scale = ops.where(
        n_pairs > 0, ops.cast(batch, distances.dtype) / ops.maximum(n_pairs, 1.0), 0.0
    )
    return scale * per_anchor


def triplet_hard_loss(
    labels, embeddings, margin: float = 1.0, soft: bool = False, distance_metric: str = "L2"
):
    """Batch-hard triplet loss (Hermans et al. 2017), TensorFlow Addons' semantics.

    Per anchor: hardest positive ``hp`` (largest same-label distance; row minimum if none) and
    hardest negative ``hn`` (smallest other-label distance; row maximum if none);
    ``max(hp - hn + m, 0)``, or ``softplus(hp - hn)`` when ``soft`` (margin unused). softplus is
    evaluated stably (the reference overflows to inf beyond hp - hn ≈ 88.7 in float32).

    Args:
        labels: int [B].
        embeddings: [B, D].
        margin: m > 0.
        soft: soft-margin variant.
        distance_metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.

    Returns:
        [B] per-anchor loss; its mean is the reference loss.
    """
    distances = pairwise_distances(embeddings, distance_metric)
    positive, negative = label_masks(labels)
    gap = masked_maximum(distances, positive) - masked_minimum(distances, negative)
    if soft:
        return ops.softplus(gap)
    return ops.maximum(gap + margin, 0.0)


class _Triplet(base.NoduleLoss):
    def __init__(self, margin, distance_metric, **kwargs):
        super().__init__(**kwargs)
        self.margin = base.positive_float("margin", margin)
        self.distance_metric = base.one_of("distance_metric", distance_metric, DISTANCE_METRICS)


@register("triplet_semihard", protocol="pretrain_probe", consumes="embeddings")
@keras.saving.register_keras_serializable(package="nodulelearn")
class TripletSemiHard(_Triplet):
    """Semi-hard triplet loss; see :func:`triplet_semihard_loss`.

    Args:
        margin: float > 0, default 1.0.
        distance_metric: ``"L2"`` (default), ``"squared-L2"`` or ``"angular"``.
    """

    def __init__(self, margin=1.0, distance_metric="L2", **kwargs):
        kwargs.setdefault("name", "triplet_semihard")
        super().__init__(margin, distance_metric, **kwargs)

    def call(self, y_true, y_pred):
        return triplet_semihard_loss(
            base.labels_1d(y_true), y_pred, self.margin, self.distance_metric
        )


@register("triplet_hard", protocol="pretrain_probe", consumes="embeddings")
@keras.saving.register_keras_serializable(package="nodulelearn")
class TripletHard(_Triplet):
    """Batch-hard triplet loss; see :func:`triplet_hard_loss`.

    Args:
        margin: float > 0, default 1.0 (unused when ``soft``).
        soft: bool, default False.
        distance_metric: ``"L2"`` (default), ``"squared-L2"`` or ``"angular"``.
    """

    def __init__(self, margin=1.0, soft=False, distance_metric="L2", **kwargs):
        kwargs.setdefault("name", "triplet_hard")
        super().__init__(margin, distance_metric, **kwargs)
        self.soft = base.boolean("soft", soft)

    def call(self, y_true, y_pred):
        return triplet_hard_loss(
            base.labels_1d(y_true), y_pred, self.margin, self.soft, self.distance_metric
        )
