"""Heads put on top of an encoder: projection MLP (L2-normalised) and linear classifier."""

from __future__ import annotations

import keras
from keras import layers


def projection_head(
    embedding_dim: int, *, hidden_dim: int = 128, output_dim: int = 64, name: str = "projection"
) -> keras.Model:
    """MLP projection head for metric / contrastive losses, as in SimCLR and SupCon.

    ``Dense(hidden_dim) -> ReLU -> Dense(output_dim) -> UnitNormalization``: the output lies on
    the unit sphere, which the contrastive losses' cosine similarities expect.

    Args:
        embedding_dim: D of the encoder's ``[B, D]`` output.
        hidden_dim: width of the hidden layer.
        output_dim: dimension of the projected embedding.
        name: name of the returned model.

    Returns:
        ``keras.Model`` mapping ``[B, embedding_dim]`` to unit vectors ``[B, output_dim]``.
    """
    inputs = keras.Input((embedding_dim,), name="embedding")
    x = layers.Dense(hidden_dim, activation="relu", name=f"{name}_hidden")(inputs)
    x = layers.Dense(output_dim, name=f"{name}_out")(x)
    x = layers.UnitNormalization(name=f"{name}_l2")(x)
    return keras.Model(inputs, x, name=name)


def linear_head(embedding_dim: int, *, name: str = "linear_head") -> keras.Model:
    """Linear classifier: ``[B, D]`` embeddings -> ``[B, 1]`` logits of P(malignant)."""
    inputs = keras.Input((embedding_dim,), name="embedding")
    return keras.Model(inputs, layers.Dense(1, name=f"{name}_logit")(inputs), name=name)


def classifier(encoder: keras.Model, head: keras.Model, *, name: str = "classifier") -> keras.Model:
    """The exported classifier: image ``[B, H, W, 1]`` -> P(malignant) ``[B, 1]``.

    Shares the layers (and so the weights) of ``encoder`` and ``head``; only built-in layers.
    """
    inputs = keras.Input(encoder.input_shape[1:], name="image")
    logits = head(encoder(inputs))
    probability = layers.Activation("sigmoid", name="p_malignant")(logits)
    return keras.Model(inputs, probability, name=name)
