"""Training protocols (registered, like losses): how an encoder and a loss become a classifier.

``end_to_end``: encoder + linear head trained with a classification loss on logits.
``pretrain_probe``: encoder + projection head trained with a metric / contrastive loss on
augmented views of class-balanced batches, then the frozen encoder's embeddings feed a linear
probe trained with cross-entropy (the linear evaluation of the SupCon paper).

This module is the one owner of protocol logic: which losses a protocol trains (by what they
consume), its views, class balancing, phases and default budget. A :class:`Protocol` is called
as ``protocol(ctx: RunContext) -> (encoder, classifier)``: ``encoder`` maps images
``[B, H, W, 1]`` to ``[B, D]``, ``classifier`` maps images to P(malignant) ``[B, 1]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from nodulelearn import losses, models
from nodulelearn.registry import Registry
from nodulelearn.training.callbacks import readable_weights, save_weights_atomic
from nodulelearn.training.fitting import RunContext, fit_phase, trainable

PROTOCOLS = Registry("protocol")

#: The budget every protocol starts from, chosen so that each run finishes within 5 minutes on a
#: 2-core CPU (measured in docs/performance.md).
_BUDGET = dict(n_train=8192, n_val=512, n_test=2000, batch_size=128, learning_rate=2e-3)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A training protocol and everything that depends on it.

    Attributes:
        name: registry name.
        run: ``fn(ctx) -> (encoder, classifier)``, the training itself.
        consumes: what the losses it trains consume (see ``nodulelearn.losses.CONSUMES``).
        views: views per sample the loss sees (1: the images themselves).
        class_balanced: training batches alternate the classes (and the training set is drawn
            balanced), as metric and contrastive losses need positives and negatives.
        epochs: phase -> the config field holding its number of epochs, in training order.
        defaults: the config values this protocol fills in when the user sets none.
        smoke_defaults: its own ``--smoke`` values (beside the config's common ones).
    """

    name: str
    run: Callable[[RunContext], tuple[keras.Model, keras.Model]]
    consumes: tuple[str, ...]
    views: int
    class_balanced: bool
    epochs: Mapping[str, str]
    defaults: Mapping[str, Any]
    smoke_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def phases(self) -> tuple[str, ...]:
        return tuple(self.epochs)

    def uses(self, field: str) -> bool:
        """Whether a config field (e.g. ``probe_epochs``) means anything to this protocol."""
        return field in self.epochs.values()

    def accepts(self, info: losses.LossInfo) -> bool:
        return info.consumes in self.consumes

    def check_loss(self, info: losses.LossInfo) -> None:
        """Raises a ValueError if the loss cannot be trained by this protocol (what it consumes,
        the number of views it needs, or the protocol it was registered with)."""
        if not self.accepts(info):
            raise ValueError(f"The protocol {self.name!r} trains losses that consume "
                             f"{' or '.join(self.consumes)}; the loss {info.name!r} consumes "
                             f"{info.consumes}.")
        if info.views is not None and info.views != self.views:
            raise ValueError(f"The loss {info.name!r} needs exactly {info.views} views per "
                             f"sample, but the protocol {self.name!r} makes {self.views}.")
        if info.protocol_hint is not None and info.protocol_hint != self.name:
            raise ValueError(f"The loss {info.name!r} was registered with protocol="
                             f"{info.protocol_hint!r}, but it consumes {info.consumes}, which the "
                             f"protocol {self.name!r} trains. Drop protocol= from its register().")

    def __call__(self, ctx: RunContext) -> tuple[keras.Model, keras.Model]:
        return self.run(ctx)


def register_protocol(protocol: Protocol) -> Protocol:
    """Adds a protocol to ``PROTOCOLS``; no two protocols may train the same kind of loss."""
    for name in PROTOCOLS.names():
        shared = set(PROTOCOLS.get(name).consumes) & set(protocol.consumes)
        if shared:
            raise ValueError(f"The protocols {name!r} and {protocol.name!r} would both train "
                             f"losses that consume {', '.join(sorted(shared))}.")
    PROTOCOLS.add(protocol.name, protocol)
    return protocol


def protocol_for(loss: str) -> Protocol:
    """The protocol that trains the registered loss ``loss``, checked against what it needs.

    Raises:
        UnknownNameError: unknown loss.
        ValueError: no protocol trains what the loss consumes, or its views or registered
            protocol do not match.
    """
    info = losses.info(loss)
    for name in PROTOCOLS.names():
        protocol = PROTOCOLS.get(name)
        if protocol.accepts(info):
            protocol.check_loss(info)
            return protocol
    offered = ", ".join(f"{n} ({' or '.join(PROTOCOLS.get(n).consumes)})" for n in PROTOCOLS)
    raise ValueError(f"No protocol trains the loss {loss!r}, which consumes {info.consumes}. "
                     f"Protocols: {offered}.")


def losses_of(protocol: str) -> list[str]:
    """The registered losses that ``protocol`` trains."""
    accepted = PROTOCOLS.get(protocol)
    return [n for n in losses.names() if accepted.accepts(losses.info(n))]


def _logit_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
            keras.metrics.AUC(name="auc", from_logits=True)]


def _encoder(ctx: RunContext) -> keras.Model:
    config = ctx.config
    return models.build_encoder(config.model, config.image_size, **dict(config.model_params))


def _end_to_end(ctx: RunContext) -> tuple[keras.Model, keras.Model]:
    """Encoder + linear head trained end to end with ``ctx.loss`` on logits ``[B, 1]``."""
    with ctx.strategy.scope():
        encoder = _encoder(ctx)
        head = models.linear_head(encoder.output_shape[-1])
        logits_model = trainable([encoder, head], "end_to_end")
    fit_phase(ctx, "train", logits_model, ctx.loss, ctx.train_images, ctx.train_labels,
              epochs=ctx.config.epochs, augment=ctx.augment,
              validation=(ctx.val_images, ctx.val_labels), metrics=_logit_metrics())
    return encoder, models.classifier(encoder, head)


class MultiViewLoss(keras.losses.Loss):
    """Adapts a metric / contrastive loss to sample-major view batches.

    The training model sees ``[B * V, H, W, 1]`` (views stacked sample-major) and outputs
    ``[B * V, D]``; the labels are ``[B]``. ``consumes="embeddings"``: labels are repeated per
    view and the loss gets ``[B * V, D]``; ``consumes="views"``: the loss gets ``[B, V, D]``.
    Not serialisable on purpose: it only lives in the pretraining phase.
    """

    def __init__(self, inner: keras.losses.Loss, views: int, consumes: str):
        super().__init__(name=f"{inner.name}_views")
        if consumes not in ("embeddings", "views"):
            raise ValueError(f"MultiViewLoss adapts losses that consume 'embeddings' or 'views'. "
                             f"Received: consumes={consumes!r}")
        self.inner, self.views, self.consumes = inner, views, consumes

    def call(self, y_true, y_pred):
        y_true = ops.reshape(y_true, [-1])
        if self.consumes == "embeddings":
            return self.inner(ops.repeat(y_true, self.views), y_pred)
        return self.inner(y_true, ops.reshape(y_pred, [-1, self.views, ops.shape(y_pred)[-1]]))


def _pretrained_weights(ctx: RunContext) -> Path:
    return ctx.run.backup_dir("pretrain_done") / "encoder.weights.h5"


def _pretrain_probe(ctx: RunContext) -> tuple[keras.Model, keras.Model]:
    """Pretrains encoder + projection head with ``ctx.loss`` on views, then a linear probe.

    The probe is trained on the frozen encoder's embeddings of the unaugmented training images,
    computed once (identical to running the frozen encoder every step, and much faster).
    """
    config = ctx.config
    with ctx.strategy.scope():
        encoder = _encoder(ctx)
        projection = models.projection_head(encoder.output_shape[-1])
        pretrain_model = trainable([encoder, projection], "pretrain")
    done = _pretrained_weights(ctx)
    # Pretraining finished before an interruption: keep its result, if it reads through (a
    # damaged file is reported and set aside, and pretraining is redone).
    if readable_weights(done, what="finished pretraining's encoder weights"):
        encoder.load_weights(done)
    else:
        fit_phase(ctx, "pretrain", pretrain_model,
                  MultiViewLoss(ctx.loss, PRETRAIN_PROBE.views, ctx.consumes),
                  ctx.train_images, ctx.train_labels, epochs=config.epochs,
                  views=PRETRAIN_PROBE.views, augment=ctx.augment,
                  class_balanced=PRETRAIN_PROBE.class_balanced)
        save_weights_atomic(encoder, done)

    # Features from a plain (undistributed) copy: no collective ops, any strategy.
    frozen = keras.models.clone_model(encoder)
    frozen.set_weights(encoder.get_weights())
    train_features = _features(frozen, ctx.train_images, config.batch_size)
    val_features = _features(frozen, ctx.val_images, config.batch_size)
    with ctx.strategy.scope():
        probe = models.linear_head(encoder.output_shape[-1])
        probe_model = trainable([probe], "probe")
    fit_phase(ctx, "probe", probe_model, losses.get("ce"),
              train_features, ctx.train_labels, epochs=config.probe_epochs,
              validation=(val_features, ctx.val_labels), metrics=_logit_metrics())
    return encoder, models.classifier(encoder, probe)


def _features(encoder: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([
        np.asarray(encoder(images[i:i + batch_size], training=False))
        for i in range(0, len(images), batch_size)
    ]).astype(np.float32)


END_TO_END = register_protocol(Protocol(
    name="end_to_end", run=_end_to_end, consumes=("logits",), views=1, class_balanced=False,
    epochs={"train": "epochs"}, defaults=dict(_BUDGET, epochs=15, probe_epochs=0)))
PRETRAIN_PROBE = register_protocol(Protocol(
    name="pretrain_probe", run=_pretrain_probe, consumes=("embeddings", "views"), views=2,
    class_balanced=True, epochs={"pretrain": "epochs", "probe": "probe_epochs"},
    defaults=dict(_BUDGET, epochs=12, probe_epochs=30), smoke_defaults=dict(probe_epochs=1)))
