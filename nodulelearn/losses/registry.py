"""The loss registry: name -> Keras loss class, the protocol it trains under, what it consumes.

Built on the project's shared :class:`nodulelearn.registry.Registry`. Plug-ins (entry-point group
``nodulelearn.losses``) are imported lazily, once, the first time the registry is read.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import keras

from nodulelearn.registry import Registry, UnknownNameError

PROTOCOLS = ("end_to_end", "pretrain_probe")
CONSUMES = ("logits", "embeddings", "views")
# Keyword arguments every keras.losses.Loss takes; accepted by get() next to the hyperparameters.
KERAS_LOSS_ARGS = ("reduction", "name", "dtype")

_LOSSES = Registry("loss")


@dataclasses.dataclass(frozen=True)
class LossInfo:
    """What the registry knows about one loss.

    Attributes:
        name: registry name.
        protocol: ``"end_to_end"`` or ``"pretrain_probe"``.
        consumes: ``"logits"`` ([B, 1]), ``"embeddings"`` ([B, D]) or ``"views"`` ([B, V, D]).
        hparams: hyperparameter name -> default value, in constructor order.
        cls: the ``keras.losses.Loss`` subclass.
    """

    name: str
    protocol: str
    consumes: str
    hparams: Mapping[str, Any]
    cls: type


def hparam_defaults(cls: type) -> dict[str, Any]:
    """Returns the hyperparameters of a loss class with their defaults (its keyword arguments
    other than Keras' own ``reduction``, ``name`` and ``dtype``)."""
    hparams = {}
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name in KERAS_LOSS_ARGS:
            continue
        if param.default is param.empty:
            raise TypeError(
                f"Loss hyperparameters need defaults; {cls.__name__}.__init__ argument "
                f"{param.name!r} has none."
            )
        hparams[param.name] = param.default
    return hparams


def register(name: str, *, protocol: str, consumes: str) -> Callable[[type], type]:
    """Class decorator registering a ``keras.losses.Loss`` subclass under ``name``.

    Args:
        name: registry name (must not be registered yet).
        protocol: ``"end_to_end"`` (classifier trained directly) or ``"pretrain_probe"``
            (encoder pre-trained with the loss, then a linear probe).
        consumes: ``"logits"``, ``"embeddings"`` or ``"views"``.

    Returns:
        The decorator; it returns the class unchanged.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"Invalid value for argument `protocol`. Expected one of {PROTOCOLS}. "
            f"Received: protocol={protocol!r}"
        )
    if consumes not in CONSUMES:
        raise ValueError(
            f"Invalid value for argument `consumes`. Expected one of {CONSUMES}. "
            f"Received: consumes={consumes!r}"
        )

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, keras.losses.Loss)):
            raise TypeError(
                f"losses.register({name!r}) expects a keras.losses.Loss subclass. Received: {cls!r}"
            )
        _LOSSES.add(name, cls, protocol=protocol, consumes=consumes, hparams=hparam_defaults(cls))
        return cls

    return decorator


def _entry(name: str):
    from nodulelearn.losses.plugins import load_entry_point_plugins

    load_entry_point_plugins()
    if not isinstance(name, str):
        raise UnknownNameError(
            f"A loss name must be a string. Received: {name!r}. Valid names: "
            f"{', '.join(_LOSSES.names())}."
        )
    return _LOSSES.entry(name)


def names() -> list[str]:
    """Returns the sorted names of every registered loss, plug-ins included."""
    from nodulelearn.losses.plugins import load_entry_point_plugins

    load_entry_point_plugins()
    return _LOSSES.names()


def info(name: str) -> LossInfo:
    """Returns the :class:`LossInfo` of a registered loss (unknown name -> ``UnknownNameError``)."""
    entry = _entry(name)
    return LossInfo(
        name=entry.name,
        protocol=entry.metadata["protocol"],
        consumes=entry.metadata["consumes"],
        hparams=dict(entry.metadata["hparams"]),
        cls=entry.obj,
    )


def get(name: str, **hparams: Any) -> keras.losses.Loss:
    """Builds a configured loss.

    Args:
        name: registry name (see :func:`names`).
        **hparams: hyperparameters (see ``info(name).hparams``); Keras' ``reduction``, ``name``
            and ``dtype`` are accepted too.

    Returns:
        A ``keras.losses.Loss`` instance.

    Raises:
        UnknownNameError: unknown loss name (the message lists the registered names).
        ValueError: unknown hyperparameter (the message lists the valid ones) or invalid value.
    """
    loss_info = info(name)
    unknown = sorted(set(hparams) - set(loss_info.hparams) - set(KERAS_LOSS_ARGS))
    if unknown:
        valid = ", ".join(loss_info.hparams) or "(none)"
        raise ValueError(
            f"Unknown hyperparameter(s) {', '.join(map(repr, unknown))} for loss {name!r}. "
            f"Valid hyperparameters: {valid} (plus Keras' {', '.join(KERAS_LOSS_ARGS)})."
        )
    return loss_info.cls(**hparams)


def unregister(name: str) -> None:
    """Removes a loss from the registry (for tests and interactive sessions)."""
    _LOSSES.remove(name)
