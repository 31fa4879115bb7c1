"""Encoders (registry), projection and linear heads, and the exported classifier."""

from __future__ import annotations

import inspect

import keras

from nodulelearn.models.encoders import ENCODERS, compact_cnn, small_resnet
from nodulelearn.models.heads import classifier, linear_head, projection_head

__all__ = [
    "ENCODERS", "build_encoder", "classifier", "compact_cnn", "encoder_params", "linear_head",
    "names", "projection_head", "small_resnet",
]


def names() -> list[str]:
    """Registered encoder names, sorted."""
    return ENCODERS.names()


def encoder_params(name: str) -> dict[str, object]:
    """The configurable hyperparameters of encoder ``name`` and their defaults."""
    signature = inspect.signature(ENCODERS.get(name))
    return {
        p.name: p.default for p in signature.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name != "name"
    }


def build_encoder(name: str, image_size: int, **params: object) -> keras.Model:
    """Builds encoder ``name`` for square ``image_size`` images.

    Args:
        name: a registered encoder (``names()``).
        image_size: side of the ``[B, H, W, 1]`` input images.
        **params: hyperparameters of that encoder (``encoder_params(name)``).

    Returns:
        ``keras.Model``: ``[B, image_size, image_size, 1]`` -> ``[B, D]``.

    Raises:
        UnknownNameError: unknown ``name``, listing the registered encoders.
        ValueError: a hyperparameter the encoder does not have, listing the valid ones.
    """
    valid = encoder_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"Unknown hyperparameter(s) {', '.join(unknown)} for model {name!r}. "
            f"Valid hyperparameters: {', '.join(f'{k} (default {v!r})' for k, v in valid.items())}."
        )
    return ENCODERS.get(name)(image_size, **params)
