"""One registry mechanism, reused for losses, protocols, encoders and distributions.

A ``Registry`` maps names to objects plus free-form metadata. Registering a name twice raises;
looking up an unknown name raises a ``KeyError`` that lists every registered name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
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


class Registry:
    """Name -> object registry for one kind of thing (``kind`` appears in error messages)."""

    def __init__(self, kind: str):
        self.kind = kind
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
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}. Valid names: {', '.join(self.names()) or '(none)'}."
            ) from None

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return sorted(self._entries)

    def remove(self, name: str) -> None:
        """Unregisters ``name`` (for tests and interactive sessions)."""
        self.entry(name)
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
