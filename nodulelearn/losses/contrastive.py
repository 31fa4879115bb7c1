"""Multi-view contrastive losses: supervised contrastive (``supcon``) and NT-Xent (``simclr``)."""

from __future__ import annotations

import keras
from keras import ops

from nodulelearn.losses import base
from nodulelearn.losses.distances import masked_logsumexp
from nodulelearn.losses.registry import register

CONTRAST_MODES = ("all", "one")


def supcon_loss(
    labels,
    features,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
    contrast_mode: str = "all",
):
    """Supervised contrastive loss (Khosla et al. 2020, "Supervised Contrastive Learning").

    The contrast set holds all B·V view vectors; the anchors are all of them (``"all"``) or
    view 0 of each sample (``"one"``). With ``s_ac = a·c / T`` and P(a) the other vectors of
    a's class::

        ℓ_a = -(T / T_b) · 1/|P(a)| · Σ_{p ∈ P(a)} [s_ap - log Σ_{c ≠ a} exp(s_ac)]

    Unlike the reference implementation, the log-sum-exp excludes the self logit *before*
    exponentiating, so very large or sharp logits stay finite (the reference gives NaN when
    every non-self term underflows). An anchor without positive contributes 0, as in the
    reference (it still counts in the mean).

    Args:
        labels: int [B], or None for NT-Xent (the positives of a view are the other views of
            the same sample).
        features: [B, V, D] view embeddings, used as given (normalise them beforehand).
        temperature: T > 0.
        base_temperature: T_b > 0; the loss is scaled by T / T_b.
        contrast_mode: ``"all"`` or ``"one"``.

    Returns:
        Per-sample loss, [B]: the mean of ℓ over the sample's anchors (its V views for
        ``"all"``, view 0 for ``"one"``). Its mean over B is the reference loss.
    """
    features = ops.convert_to_tensor(features)
    batch, n_views = ops.shape(features)[0], ops.shape(features)[1]
    # View-major contrast set: row v·B + i holds features[i, v].
    contrast = ops.reshape(ops.transpose(features, (1, 0, 2)), (-1, ops.shape(features)[2]))
    if labels is None:
        labels = ops.arange(batch, dtype="int32")
    labels = ops.tile(ops.reshape(ops.cast(labels, "int32"), (-1,)), (n_views,))
    n_anchors = batch * n_views if contrast_mode == "all" else batch
    anchors = contrast[:n_anchors]

    logits = ops.matmul(anchors, ops.transpose(contrast)) / ops.cast(temperature, contrast.dtype)
    not_self = ops.logical_not(ops.eye(n_anchors, ops.shape(contrast)[0], dtype="bool"))
    positive = ops.logical_and(ops.equal(labels[:n_anchors, None], labels[None, :]), not_self)

    # log Σ_{c≠a} exp(s_ac). Only a contrast set of one vector leaves the sum empty; its
    # anchor has no positive, so the (finite) value of the empty sum is never used.
    log_denominator = masked_logsumexp(logits, not_self)[0][:, None]

    positive_f = ops.cast(positive, logits.dtype)
    n_positive = ops.sum(positive_f, axis=1)
    log_prob_sum = ops.sum(positive_f * (logits - log_denominator), axis=1)
    mean_log_prob = log_prob_sum / ops.maximum(n_positive, 1.0)
    per_anchor = -(temperature / base_temperature) * mean_log_prob
    if contrast_mode == "all":
        return ops.mean(ops.reshape(per_anchor, (n_views, batch)), axis=0)
    return per_anchor


class _MultiViewContrastive(base.NoduleLoss):
    def __init__(self, temperature, base_temperature, contrast_mode, **kwargs):
        super().__init__(**kwargs)
        self.temperature = base.positive_float("temperature", temperature)
        if base_temperature is not None:
            base_temperature = base.positive_float("base_temperature", base_temperature)
        self.base_temperature = base_temperature
        self.contrast_mode = base.one_of("contrast_mode", contrast_mode, CONTRAST_MODES)

    def _loss(self, labels, y_pred):
        base.check_rank(self.name, y_pred, 3, "[B, V, D]")
        base_temperature = self.base_temperature or self.temperature
        return supcon_loss(labels, y_pred, self.temperature, base_temperature, self.contrast_mode)


@register("supcon", consumes="views")
@keras.saving.register_keras_serializable(package="nodulelearn")
class SupervisedContrastive(_MultiViewContrastive):
    """Supervised contrastive loss on [B, V, D] views; see :func:`supcon_loss`.

    Args:
        temperature: float > 0, default 0.07.
        base_temperature: float > 0, default 0.07 (None: equal to ``temperature``).
        contrast_mode: ``"all"`` (default) or ``"one"``.
    """

    def __init__(self, temperature=0.07, base_temperature=0.07, contrast_mode="all", **kwargs):
        kwargs.setdefault("name", "supcon")
        super().__init__(temperature, base_temperature, contrast_mode, **kwargs)

    def call(self, y_true, y_pred):
        return self._loss(base.labels_1d(y_true), y_pred)


@register("simclr", consumes="views")
@keras.saving.register_keras_serializable(package="nodulelearn")
class NTXent(_MultiViewContrastive):
    """NT-Xent (Chen et al. 2020, SimCLR): SupCon where each sample is its own class.

    ``y_true`` is ignored. See :func:`supcon_loss` with ``labels=None``.

    Args:
        temperature: float > 0, default 0.1.
        base_temperature: float > 0 or None (default: equal to ``temperature``, the plain
            NT-Xent loss).
        contrast_mode: ``"all"`` (default) or ``"one"``.
    """

    def __init__(self, temperature=0.1, base_temperature=None, contrast_mode="all", **kwargs):
        kwargs.setdefault("name", "simclr")
        super().__init__(temperature, base_temperature, contrast_mode, **kwargs)

    def call(self, y_true, y_pred):
        return self._loss(None, y_pred)
