"""One registry mechanism, reused for losses, protocols, encoders and augmentations.

A ``Registry`` maps names to objects plus free-form metadata. Registering a name twice raises;
looking up an unknown name raises an ``UnknownNameError`` that lists every registered name.
``params(name)`` introspects an entry's hyperparameters (its keyword arguments with defaults) and
``build(name, *args, **params)`` calls it after ``check_params``: one wording for an unknown name
and one for an unknown hyperparameter, whatever the kind of thing.

A registry may carry a *catalogue* of built-in names, ``{name: module}``: ``names()`` lists them
without importing anything (so that ``--help`` need not import TensorFlow), and the module is
imported, which registers the name, the first time the entry is looked up.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered object, its name and the metadata it was registered with."""

    name: str
    obj: Any
    metadata: Mapping[str, Any]


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; ``str()`` lists the valid names."""

    def __str__(self) -> str:  # KeyError's str() would quote the whole message.
        return str(self.args[0])


class UnknownParameterError(ValueError):
    """A hyperparameter the registered object does not take; the message lists the valid ones."""


def unknown_name_message(kind: str, name: Any, valid: Iterable[str]) -> str:
    """The one wording of an unknown registry name."""
    return f"Unknown {kind} {name!r}. Valid names: {', '.join(valid) or '(none)'}."


def unknown_parameters_message(kind: str, name: str, unknown: Iterable[str],
                               valid: Mapping[str, Any], also: Iterable[str] = ()) -> str:
    """The one wording of an unknown hyperparameter (``valid``: name -> default)."""
    listed = ", ".join(f"{k} (default {v!r})" for k, v in valid.items()) or "(none)"
    also = tuple(also)
    extra = f"; also accepted: {', '.join(also)}" if also else ""
    return (f"Unknown hyperparameter(s) {', '.join(map(repr, sorted(unknown)))} for {kind} "
            f"{name!r}. Valid hyperparameters: {listed}{extra}.")


def keyword_defaults(obj: Callable, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The keyword arguments of ``obj`` (a function or a class) that have defaults, in order.

    Arguments without a default (``images``, ``image_size``: the inputs, not hyperparameters),
    ``*args`` / ``**kwargs`` and the names in ``skip`` are left out.
    """
    skip = set(skip)
    params = {}
    for param in inspect.signature(obj).parameters.values():
        if (param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL, param.POSITIONAL_ONLY)
                or param.default is param.empty or param.name in skip):
            continue
        params[param.name] = param.default
    return params


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Registry:
    """Name -> object registry for one kind of thing (``kind`` appears in error messages).

    Args:
        kind: what is registered, e.g. ``"loss"`` (used in messages).
        skip_params: keyword arguments of every entry that are not hyperparameters (e.g. a
            layer's ``name``); ``build`` still accepts ``also_accepted`` ones.
        also_accepted: keyword arguments ``build`` accepts beside the hyperparameters.
        catalogue: built-in ``{name: module}`` imported on first use (see the module doc).
        numbers_only: reject text where an entry's default is a number (for entries that do not
            check their own arguments, e.g. traced TF functions).
    """

    def __init__(self, kind: str, *, skip_params: Iterable[str] = (),
                 also_accepted: Iterable[str] = (), catalogue: Mapping[str, str] | None = None,
                 numbers_only: bool = False):
        self.kind = kind
        self.skip_params = tuple(skip_params)
        self.also_accepted = tuple(also_accepted)
        self.catalogue = dict(catalogue or {})
        self.numbers_only = numbers_only
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **metadata: Any) -> Callable[[Any], Any]:
        """Decorator registering ``obj`` under ``name``; returns ``obj`` unchanged."""

        def decorator(obj: Any) -> Any:
            self.add(name, obj, **metadata)
            return obj

        return decorator

    def add(self, name: str, obj: Any, **metadata: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string. Received: {name!r}")
        if name in self._entries:
            raise ValueError(
                f"The {self.kind} {name!r} is already registered (by {self._entries[name].obj!r}); "
                "choose another name."
            )
        self._entries[name] = Entry(name=name, obj=obj, metadata=dict(metadata))

    def entry(self, name: str) -> Entry:
        if isinstance(name, str) and name not in self._entries and name in self.catalogue:
            importlib.import_module(self.catalogue[name])  # registers it
            if name not in self._entries:
                raise RuntimeError(f"The {self.kind} catalogue says {self.catalogue[name]} "
                                   f"registers {name!r}, but importing it did not.")
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def names(self) -> list[str]:
        """Every registered or catalogued name, sorted (imports nothing)."""
        return sorted(set(self._entries) | set(self.catalogue))

    def load_all(self) -> None:
        """Imports every catalogued module (e.g. to check the catalogue against them)."""
        for name in self.catalogue:
            self.entry(name)

    def params(self, name: str) -> dict[str, Any]:
        """Hyperparameter -> default of entry ``name`` (its keyword arguments with defaults)."""
        return keyword_defaults(self.get(name), skip=self.skip_params)

    def check_params(self, name: str, params: Mapping[str, Any]) -> None:
        """Raises ``UnknownParameterError`` for a hyperparameter ``name`` does not take (and, with
        ``numbers_only``, a ``ValueError`` for text where the default is a number: ``k=abc``).

        Raises:
            UnknownNameError: unknown ``name``.
        """
        valid = self.params(name)
        unknown = set(params) - set(valid) - set(self.also_accepted)
        if unknown:
            raise UnknownParameterError(unknown_parameters_message(
                self.kind, name, unknown, valid, self.also_accepted))
        for key, value in params.items() if self.numbers_only else ():
            if key in valid and _is_number(valid[key]) and isinstance(value, str):
                raise ValueError(
                    f"Invalid value for hyperparameter `{key}` of {self.kind} {name!r}. Expected "
                    f"a number (default {valid[key]!r}). Received: {key}={value!r}")

    def build(self, name: str, /, *args: Any, **params: Any) -> Any:
        """``check_params(name, params)``, then calls the entry with ``*args, **params``."""
        self.check_params(name, params)
        return self.get(name)(*args, **params)

    def remove(self, name: str) -> None:
        """Unregisters ``name`` (for tests and interactive sessions)."""
        self.entry(name)
        del self._entries[name]
        self.catalogue.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.catalogue

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
