"""Pairwise distances and masked reductions with TensorFlow Addons' semantics (pure keras.ops)."""

from __future__ import annotations

from keras import ops

DISTANCE_METRICS = ("L2", "squared-L2", "angular")


def pairwise_distances(embeddings, metric: str = "L2"):
    """Distance matrix of a batch of embeddings, as TensorFlow Addons' metric-learning losses.

    * ``"L2"``: sqrt(max(‖x_i‖² + ‖x_j‖² - 2 x_i·x_j, 0)) in this expanded form (one matmul);
      entries whose clamped square is 0 are exactly 0 with zero gradient (no NaN from the sqrt);
      diagonal forced to 0.
    * ``"squared-L2"``: the clamped square, diagonal 0.
    * ``"angular"``: max(1 - x̂_i·x̂_j, 0) with x̂ = x / sqrt(max(‖x‖², 1e-12)); diagonal ≈ 0
      (not forced).

    Args:
        embeddings: [B, D].
        metric: one of ``DISTANCE_METRICS``.

    Returns:
        [B, B] distances, dtype of ``embeddings``.
    """
    if metric == "angular":
        unit = unit_vectors(embeddings)
        return ops.maximum(1.0 - ops.matmul(unit, ops.transpose(unit)), 0.0)
    if metric not in ("L2", "squared-L2"):
        raise ValueError(
            f"Invalid value for argument `distance_metric`. Expected one of {DISTANCE_METRICS}. "
            f"Received: distance_metric={metric!r}"
        )
    sq_norm = ops.sum(ops.square(embeddings), axis=1, keepdims=True)
    squared = (
        sq_norm + ops.transpose(sq_norm) - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings))
    )
    squared = ops.maximum(squared, 0.0)
    positive = squared > 0
    off_diagonal = ops.logical_not(ops.eye(ops.shape(embeddings)[0], dtype="bool"))
    keep = ops.logical_and(positive, off_diagonal)
    if metric == "squared-L2":
        return ops.where(keep, squared, 0.0)
    # The inner where keeps sqrt's gradient finite where the entry is dropped.
    return ops.where(keep, ops.sqrt(ops.where(positive, squared, 1.0)), 0.0)


def explicit_pairwise_l2(embeddings):
    """Euclidean distance matrix from explicit differences ‖e_i - e_j‖₂ ([B, B, D] intermediate).

    Exact (0 for coincident rows, with zero gradient there), unlike the expanded form.

    Args:
        embeddings: [B, D].

    Returns:
        [B, B] distances.
    """
    diff = embeddings[:, None, :] - embeddings[None, :, :]
    squared = ops.sum(ops.square(diff), axis=-1)
    positive = squared > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, squared, 1.0)), 0.0)


def unit_vectors(embeddings):
    """``x / sqrt(max(‖x‖², 1e-12))`` row-wise: L2-normalised embeddings, [B, D]."""
    sq_norm = ops.sum(ops.square(embeddings), axis=1, keepdims=True)
    return embeddings * ops.rsqrt(ops.maximum(sq_norm, 1e-12))


def masked_logsumexp(logits, mask):
    """``log Σ_{j: mask_ij} exp(logits_ij)`` per row, finite for any input scale.

    Shifted by the row maximum over the mask, with masked-out terms removed *before* ``exp``
    (multiplying after ``exp`` turns an overflow into NaN, as in the references).

    Args:
        logits: [B, N]; mask: [B, N] bool.

    Returns:
        ``(lse [B], nonempty [B] bool)``; ``lse`` is finite (and meaningless) on an empty row.
    """
    row_min = ops.min(logits, axis=1, keepdims=True)
    row_max = ops.stop_gradient(ops.max(ops.where(mask, logits, row_min), axis=1, keepdims=True))
    terms = ops.where(mask, ops.exp(ops.where(mask, logits - row_max, 0.0)), 0.0)
    total = ops.sum(terms, axis=1)
    nonempty = total > 0
    return ops.log(ops.where(nonempty, total, 1.0)) + row_max[:, 0], nonempty


def masked_maximum(data, mask):
    """Row-wise maximum of ``data`` over ``mask`` (TensorFlow Addons' form and gradient).

    ``max_j((data_ij - min_j data_ij) · mask_ij) + min_j data_ij``: a row with an empty mask
    falls back to its minimum.

    Args:
        data: [B, N]; mask: [B, N] bool.

    Returns:
        [B].
    """
    row_min = ops.min(data, axis=1, keepdims=True)
    masked = (data - row_min) * ops.cast(mask, data.dtype)
    return ops.max(masked, axis=1) + row_min[:, 0]


def masked_minimum(data, mask):
    """Row-wise minimum over ``mask``; an empty row falls back to its maximum (TFA's form).

    Args:
        data: [B, N]; mask: [B, N] bool.

    Returns:
        [B].
    """
    row_max = ops.max(data, axis=1, keepdims=True)
    masked = (data - row_max) * ops.cast(mask, data.dtype)
    return ops.min(masked, axis=1) + row_max[:, 0]


def label_masks(labels):
    """Positive (same label, not self) and negative (other label) masks, [B, B] bool each."""
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    same = ops.equal(labels[:, None], labels[None, :])
    not_self = ops.logical_not(ops.eye(ops.shape(labels)[0], dtype="bool"))
    return ops.logical_and(same, not_self), ops.logical_not(same)
