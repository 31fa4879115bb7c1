"""Classification losses on logits: binary cross-entropy (``ce``) and sigmoid focal (``focal``)."""

from __future__ import annotations

import keras
from keras import ops

from nodulelearn.losses import base
from nodulelearn.losses.registry import register

# Keras 2's epsilon, used by TensorFlow Addons' focal loss on probabilities.
_EPSILON = 1e-7


def _binary_targets(y_true, y_pred):
    """y_true as a float tensor shaped like y_pred ([B] or [B, 1] labels -> [B, 1])."""
    return ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))


def sigmoid_cross_entropy(y_true, logits):
    """Element-wise binary cross-entropy on logits, overflow-free.

    ``max(z, 0) - z * y + log(1 + exp(-|z|))``.
    """
    return ops.relu(logits) - logits * y_true + ops.log1p(ops.exp(-ops.abs(logits)))


def binary_crossentropy_loss(y_true, logits, label_smoothing: float = 0.0):
    """Binary cross-entropy on logits with label smoothing.

    ``ce = -[y' log σ(z) + (1 - y') log(1 - σ(z))]`` with ``y' = y (1 - ε) + ε / 2``.

    Args:
        y_true: labels in {0, 1}, [B] or [B, 1].
        logits: [B, 1] logits of P(malignant).
        label_smoothing: ε in [0, 1].

    Returns:
        Per-example loss, [B] (mean over the last axis).
    """
    y_true = _binary_targets(y_true, logits)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return ops.mean(sigmoid_cross_entropy(y_true, logits), axis=-1)


def sigmoid_focal_loss(y_true, y_pred, alpha=0.25, gamma: float = 2.0, from_logits: bool = True):
    """Sigmoid focal cross-entropy (Lin et al. 2017, "Focal Loss for Dense Object Detection").

    ``FL = α_t (1 - p_t)^γ CE`` with ``p_t = y p + (1 - y)(1 - p)`` and
    ``α_t = y α + (1 - y)(1 - α)``, TensorFlow Addons' semantics: on probabilities, CE uses p
    clipped to [1e-7, 1 - 1e-7] plus 1e-7 inside the logs, while p_t uses the unclipped p; the
    modulating factor is not detached. ``alpha=None`` drops the α_t factor.

    Args:
        y_true: labels in {0, 1}, [B] or [B, 1].
        y_pred: [B, 1] logits (``from_logits=True``) or probabilities.
        alpha: balancing weight of the positive class in [0, 1], or None.
        gamma: focusing parameter ≥ 0.
        from_logits: whether ``y_pred`` holds logits.

    Returns:
        Per-example loss, [B] (sum over the last axis, as the reference).
    """
    y_true = _binary_targets(y_true, y_pred)
    if from_logits:
        prob = ops.sigmoid(y_pred)
        ce = sigmoid_cross_entropy(y_true, y_pred)
    else:
        prob = y_pred
        clipped = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        ce = -(
            y_true * ops.log(clipped + _EPSILON)
            + (1.0 - y_true) * ops.log(1.0 - clipped + _EPSILON)
        )
    p_t = y_true * prob + (1.0 - y_true) * (1.0 - prob)
    loss = ce
    if alpha is not None:
        loss = (y_true * alpha + (1.0 - y_true) * (1.0 - alpha)) * loss
    if gamma:
        loss = ops.power(1.0 - p_t, gamma) * loss
    return ops.sum(loss, axis=-1)


@register("ce", consumes="logits")
@keras.saving.register_keras_serializable(package="nodulelearn")
class BinaryCrossEntropy(base.NoduleLoss):
    """Binary cross-entropy on logits; see :func:`binary_crossentropy_loss`.

    Args:
        label_smoothing: float in [0, 1], default 0.
    """

    def __init__(self, label_smoothing=0.0, **kwargs):
        kwargs.setdefault("name", "ce")
        super().__init__(**kwargs)
        self.label_smoothing = base.unit_interval_float("label_smoothing", label_smoothing)

    def call(self, y_true, y_pred):
        return binary_crossentropy_loss(y_true, base.logits_2d(y_pred), self.label_smoothing)


@register("focal", consumes="logits")
@keras.saving.register_keras_serializable(package="nodulelearn")
class SigmoidFocalCrossEntropy(base.NoduleLoss):
    """Sigmoid focal cross-entropy; see :func:`sigmoid_focal_loss`.

    Args:
        alpha: float in [0, 1] or None, default 0.25.
        gamma: float ≥ 0, default 2.0.
        from_logits: default True (the registry's logits losses receive logits; TensorFlow
            Addons' default was False).
    """

    def __init__(self, alpha=0.25, gamma=2.0, from_logits=True, **kwargs):
        kwargs.setdefault("name", "focal")
        super().__init__(**kwargs)
        self.alpha = base.unit_interval_float("alpha", alpha, allow_none=True)
        self.gamma = base.non_negative_float("gamma", gamma)
        self.from_logits = base.boolean("from_logits", from_logits)

    def call(self, y_true, y_pred):
        y_pred = base.logits_2d(y_pred)
        return sigmoid_focal_loss(y_true, y_pred, self.alpha, self.gamma, self.from_logits)
