"""The loss registry: name -> Keras loss class, and what the loss consumes.

A loss declares only what it consumes: ``"logits"`` ``[B, 1]``, ``"embeddings"`` ``[B, D]`` or
``"views"`` ``[B, V, D]`` (and, for views, how many it needs when it needs an exact number).
Which training protocol can train it is the protocols' business
(``nodulelearn.training.protocol_for``).

Built on the project's shared :class:`nodulelearn.registry.Registry`. The built-in names are
catalogued, so ``names()`` imports neither Keras nor TensorFlow; a loss' module is imported the
first time it is looked up. Plug-ins (entry-point group ``nodulelearn.losses``) are imported
lazily, once, the first time the registry is read.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from nodulelearn.registry import Registry, keyword_defaults

CONSUMES = ("logits", "embeddings", "views")
# Keyword arguments every keras.losses.Loss takes; accepted by get() next to the hyperparameters.
KERAS_LOSS_ARGS = ("reduction", "name", "dtype")

#: The built-in losses and the module that registers each (checked against them by the tests).
BUILT_INS = {
    "ce": "nodulelearn.losses.classification",
    "focal": "nodulelearn.losses.classification",
    "supcon": "nodulelearn.losses.contrastive",
    "simclr": "nodulelearn.losses.contrastive",
    "contrastive": "nodulelearn.losses.metric",
    "lifted": "nodulelearn.losses.metric",
    "npairs": "nodulelearn.losses.metric",
    "triplet_semihard": "nodulelearn.losses.triplet",
    "triplet_hard": "nodulelearn.losses.triplet",
    "multi_similarity": "nodulelearn.losses.multi_similarity",
}

_LOSSES = Registry("loss", skip_params=KERAS_LOSS_ARGS, also_accepted=KERAS_LOSS_ARGS,
                   catalogue=BUILT_INS)


@dataclasses.dataclass(frozen=True)
class LossInfo:
    """What the registry knows about one loss.

    Attributes:
        name: registry name.
        consumes: ``"logits"`` ([B, 1]), ``"embeddings"`` ([B, D]) or ``"views"`` ([B, V, D]).
        views: for ``consumes="views"``, the exact number of views the loss needs (``None``: any
            number >= 2); ``None`` otherwise.
        hparams: hyperparameter name -> default value, in constructor order.
        cls: the ``keras.losses.Loss`` subclass.
        protocol_hint: the protocol the loss was registered with (``register(protocol=...)``,
            kept for plug-ins written before losses stopped naming protocols), else ``None``.
    """

    name: str
    consumes: str
    views: int | None
    hparams: Mapping[str, Any]
    cls: type
    protocol_hint: str | None = None


def hparam_defaults(cls: type) -> dict[str, Any]:
    """Returns the hyperparameters of a loss class with their defaults (its keyword arguments
    other than Keras' own ``reduction``, ``name`` and ``dtype``).

    Raises:
        TypeError: a constructor argument without a default.
    """
    for param in inspect.signature(cls).parameters.values():
        if (param.default is param.empty and param.name not in KERAS_LOSS_ARGS
                and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)):
            raise TypeError(
                f"Loss hyperparameters need defaults; {cls.__name__}.__init__ argument "
                f"{param.name!r} has none."
            )
    hparams = keyword_defaults(cls, skip=KERAS_LOSS_ARGS)
    return hparams


def _invalid(arg: str, expected: str, value: Any) -> ValueError:
    return ValueError(
        f"Invalid value for argument `{arg}`. Expected {expected}. Received: {arg}={value!r}")


def register(name: str, *, consumes: str, views: int | None = None,
             protocol: str | None = None) -> Callable[[type], type]:
    """Class decorator registering a ``keras.losses.Loss`` subclass under ``name``.

    Args:
        name: registry name (must not be registered yet).
        consumes: ``"logits"``, ``"embeddings"`` or ``"views"``.
        views: with ``consumes="views"``, the exact number of views the loss needs (e.g. 2 for
            anchors and positives); ``None``: any number of views.
        protocol: optional, for plug-ins written when losses named their protocol: the protocol
            registry checks it matches what ``consumes`` implies.

    Returns:
        The decorator; it returns the class unchanged.
    """
    if consumes not in CONSUMES:
        raise _invalid("consumes", f"one of {CONSUMES}", consumes)
    if views is not None and (consumes != "views" or isinstance(views, bool)
                              or not isinstance(views, int) or views < 2):
        raise _invalid("views", "None, or an integer >= 2 for a loss that consumes 'views'", views)
    if protocol is not None and (not isinstance(protocol, str) or not protocol):
        raise _invalid("protocol", "None or a protocol name", protocol)

    def decorator(cls: type) -> type:
        import keras

        if not (isinstance(cls, type) and issubclass(cls, keras.losses.Loss)):
            raise TypeError(
                f"losses.register({name!r}) expects a keras.losses.Loss subclass. Received: {cls!r}"
            )
        hparam_defaults(cls)  # a hyperparameter without a default fails at registration
        _LOSSES.add(name, cls, consumes=consumes, views=views, protocol_hint=protocol)
        return cls

    return decorator


def _entry(name: str):
    from nodulelearn.losses.plugins import load_entry_point_plugins

    load_entry_point_plugins()
    return _LOSSES.entry(name)


def names() -> list[str]:
    """Returns the sorted names of every registered loss, plug-ins included (built-ins are listed
    without importing Keras)."""
    from nodulelearn.losses.plugins import load_entry_point_plugins

    load_entry_point_plugins()
    return _LOSSES.names()


def info(name: str) -> LossInfo:
    """Returns the :class:`LossInfo` of a registered loss (unknown name -> ``UnknownNameError``)."""
    entry = _entry(name)
    return LossInfo(
        name=entry.name,
        consumes=entry.metadata["consumes"],
        views=entry.metadata["views"],
        hparams=hparam_defaults(entry.obj),
        cls=entry.obj,
        protocol_hint=entry.metadata["protocol_hint"],
    )


def check_params(name: str, hparams: Mapping[str, Any]) -> None:
    """Raises ``UnknownParameterError`` for a hyperparameter loss ``name`` does not take."""
    _entry(name)
    _LOSSES.check_params(name, hparams)


def get(name: str, /, **hparams: Any):
    """Builds a configured loss.

    Args:
        name: registry name (see :func:`names`).
        **hparams: hyperparameters (see ``info(name).hparams``); Keras' ``reduction``, ``name``
            and ``dtype`` are accepted too.

    Returns:
        A ``keras.losses.Loss`` instance.

    Raises:
        UnknownNameError: unknown loss name (the message lists the registered names).
        UnknownParameterError: unknown hyperparameter (the message lists the valid ones).
        ValueError: invalid value.
    """
    _entry(name)
    return _LOSSES.build(name, **hparams)


def unregister(name: str) -> None:
    """Removes a loss from the registry (for tests and interactive sessions)."""
    _LOSSES.remove(name)
