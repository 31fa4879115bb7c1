"""Encoders (registry), projection and linear heads, and the exported classifier.

``names``, ``encoder_params`` and the registry import no Keras; ``build_encoder`` imports the
encoder's module, and the builders below are imported on first use (``EXPORTS``).
"""

from __future__ import annotations

from nodulelearn.lazy import lazy_attributes
from nodulelearn.models.registry import ENCODERS

#: The model builders and the module defining each (imported on first use).
EXPORTS: dict[str, str] = {
    "compact_cnn": "nodulelearn.models.encoders",
    "small_resnet": "nodulelearn.models.encoders",
    "classifier": "nodulelearn.models.heads",
    "linear_head": "nodulelearn.models.heads",
    "projection_head": "nodulelearn.models.heads",
}

__all__ = ["ENCODERS", "build_encoder", "encoder_params", "names", *EXPORTS]


def names() -> list[str]:
    """Registered encoder names, sorted (imports no Keras)."""
    return ENCODERS.names()


def encoder_params(name: str) -> dict[str, object]:
    """The configurable hyperparameters of encoder ``name`` and their defaults."""
    return ENCODERS.params(name)


def build_encoder(name: str, image_size: int, **params: object):
    """Builds encoder ``name`` for square ``image_size`` images.

    Args:
        name: a registered encoder (``names()``).
        image_size: side of the ``[B, H, W, 1]`` input images.
        **params: hyperparameters of that encoder (``encoder_params(name)``).

    Returns:
        ``keras.Model``: ``[B, image_size, image_size, 1]`` -> ``[B, D]``.

    Raises:
        UnknownNameError: unknown ``name``, listing the registered encoders.
        UnknownParameterError: a hyperparameter the encoder does not have, listing the valid ones.
    """
    return ENCODERS.build(name, image_size, **params)


__getattr__, __dir__ = lazy_attributes(globals(), EXPORTS)
