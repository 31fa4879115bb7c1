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


def _semihard_negatives(distances, negative):
    """Semi-hard negative of every (anchor, positive) pair, with one sort per row, O(B² log B).

    For pair (a, p): the smallest negative distance D_an > D_ap if one exists, else the largest
    negative distance. Row a of D is sorted once; every entry plays one role in it (negative,
    or a query when it is a positive). Entries of equal value form a tie group; the count of
    negatives up to the end of a query's group is #{n : D_an ≤ D_ap}, the slot of the chosen
    negative among the row's sorted negatives. No [B, B, B] tensor is formed.

    Args:
        distances: [B, B] (no gradient needed).
        negative: [B, B] bool mask of the negatives of each anchor.

    Returns:
        chosen: [B, B] chosen negative distance (meaningful where the anchor has negatives).
        chosen_group: [B, B] int id, in [0, B²), of the tie group of the chosen negative.
        entry_group: [B, B] int tie-group id of every entry.
        negatives_in_group: [B²] number of negatives in each tie group.
    """
    batch = ops.shape(distances)[0]
    n_groups = batch * batch
    # Row-major offsets: flat gathers and segment sums are much faster than take_along_axis and
    # scatter_nd on CPU.
    offsets = ops.arange(batch, dtype="int32")[:, None] * batch
    columns = ops.broadcast_to(ops.arange(batch, dtype="int32")[None, :], (batch, batch))

    def take_rows(values, indices):  # values[a, indices[a, j]]
        return ops.take(ops.reshape(values, (-1,)), indices + offsets)

    def scatter_rows(indices, values, width):  # out[a, indices[a, j]] = values[a, j] (unique)
        flat = ops.reshape(indices + ops.arange(batch, dtype="int32")[:, None] * width, (-1,))
        out = ops.segment_sum(ops.reshape(values, (-1,)), flat, batch * width)
        return ops.reshape(out, (batch, width))

    order = ops.cast(ops.argsort(distances, axis=1), "int32")
    sorted_d = take_rows(distances, order)
    is_negative = take_rows(ops.cast(negative, "int32"), order)
    negatives_up_to = ops.cumsum(is_negative, axis=1)

    starts = ops.cast(sorted_d[:, 1:] != sorted_d[:, :-1], "int32")
    starts = ops.concatenate([ops.zeros_like(starts[:, :1]), starts], axis=1)
    group = ops.cumsum(starts, axis=1) + offsets  # sorted position -> tie group
    flat_group = ops.reshape(group, (-1,))
    negatives_le = ops.segment_max(ops.reshape(negatives_up_to, (-1,)), flat_group, n_groups)
    negatives_in_group = ops.segment_sum(ops.reshape(is_negative, (-1,)), flat_group, n_groups)

    rank = scatter_rows(order, columns, batch)  # inverse permutation
    entry_group = take_rows(group, rank)
    count_le = ops.take(negatives_le, entry_group)
    n_negative = negatives_up_to[:, -1:]
    slot = ops.clip(ops.where(count_le < n_negative, count_le, n_negative - 1), 0, batch - 1)
    # Sorted position of each row's k-th negative (non-negatives go to a spare last column).
    negative_position = scatter_rows(
        ops.where(is_negative > 0, negatives_up_to - 1, batch), columns, batch + 1
    )[:, :batch]
    chosen_position = take_rows(negative_position, slot)
    chosen = take_rows(sorted_d, chosen_position)
    chosen_group = take_rows(group, chosen_position)
    return chosen, chosen_group, entry_group, negatives_in_group


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
    chosen, chosen_group, entry_group, group_size = _semihard_negatives(fixed, negative)
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
    share = ops.take(n_choosing, entry_group) / ops.cast(
        ops.maximum(ops.take(group_size, entry_group), 1), distances.dtype
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


@register("triplet_semihard", consumes="embeddings")
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
        base.check_rank(self.name, y_pred, 2, "[B, D]")
        return triplet_semihard_loss(
            base.labels_1d(y_true), y_pred, self.margin, self.distance_metric
        )


@register("triplet_hard", consumes="embeddings")
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
        base.check_rank(self.name, y_pred, 2, "[B, D]")
        return triplet_hard_loss(
            base.labels_1d(y_true), y_pred, self.margin, self.soft, self.distance_metric
        )
