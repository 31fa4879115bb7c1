"""Training protocols (registered, like losses): how an encoder and a loss become a classifier.

``end_to_end``: encoder + linear head trained with a classification loss on logits.
``pretrain_probe``: encoder + projection head trained with a metric / contrastive loss on
augmented views of class-balanced batches, then the frozen encoder's embeddings feed a linear
probe trained with cross-entropy (the linear evaluation of the SupCon paper).

A protocol is ``fn(ctx: RunContext) -> (encoder, classifier)``: ``encoder`` maps images
``[B, H, W, 1]`` to ``[B, D]``, ``classifier`` maps images to P(malignant) ``[B, 1]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from keras import ops

from nodulelearn import losses, models
from nodulelearn.registry import Registry
from nodulelearn.training.fitting import RunContext, fit_phase, trainable

PROTOCOLS = Registry("protocol")

#: Views per sample in the pretraining phase.
PRETRAIN_VIEWS = 2


def _logit_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0),
            keras.metrics.AUC(name="auc", from_logits=True)]


def _encoder(ctx: RunContext) -> keras.Model:
    config = ctx.config
    return models.build_encoder(config.model, config.image_size, **dict(config.model_params))


@PROTOCOLS.register("end_to_end", phases=("train",))
def end_to_end(ctx: RunContext) -> tuple[keras.Model, keras.Model]:
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


@PROTOCOLS.register("pretrain_probe", phases=("pretrain", "probe"))
def pretrain_probe(ctx: RunContext) -> tuple[keras.Model, keras.Model]:
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
    if done.exists():  # Pretraining finished before an interruption: keep its result.
        encoder.load_weights(done)
    else:
        fit_phase(ctx, "pretrain", pretrain_model,
                  MultiViewLoss(ctx.loss, PRETRAIN_VIEWS, ctx.consumes),
                  ctx.train_images, ctx.train_labels, epochs=config.epochs,
                  views=PRETRAIN_VIEWS, augment=ctx.augment, class_balanced=True)
        done.parent.mkdir(parents=True, exist_ok=True)
        tmp = done.with_name(".encoder.tmp.weights.h5")
        encoder.save_weights(tmp)
        os.replace(tmp, done)

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
