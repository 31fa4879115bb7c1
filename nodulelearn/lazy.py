"""Module attributes imported on first use (PEP 562), so that importing a package is cheap.

    EXPORTS = {"NPairs": "nodulelearn.losses.metric", ...}
    __getattr__, __dir__ = lazy_attributes(globals(), EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(namespace: dict[str, Any], exports: Mapping[str, str]
                    ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` for names defined in other modules.

    Args:
        namespace: the module's ``globals()``; a name, once imported, is stored there.
        exports: attribute name -> the module that defines it.
    """
    module = namespace["__name__"]

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's own name)
        if name not in exports:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
