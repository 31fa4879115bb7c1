"""The one ``k=v`` parameter grammar: ``--loss_params``, augmentation entries, any ``k=v`` text.

    params  := item (SEP item)*       SEP is "," in a flag, ";" inside a named entry
    item    := key "=" value
    entry   := name [":" params]      e.g. "translate:max_pixels=3;..." (SEP ";", since a
                                      pipeline of entries is itself a comma-separated list)

A value is read as JSON when it is a JSON number, boolean or null (``3`` -> int, ``0.5``, ``1E-3``
-> float, ``true`` -> True, ``null`` -> None), else kept as the (stripped) string. Which keys are
valid is the registry's business (``Registry.check_params``), not the grammar's.
"""

from __future__ import annotations

import json
from typing import Any


def parse_value(text: str) -> Any:
    """A JSON number / boolean / null, else the string itself (stripped)."""
    text = text.strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if value is None or isinstance(value, (bool, int, float)) else text


def parse_params(text: str | None, *, what: str = "--loss_params", sep: str = ",") -> dict[str, Any]:
    """Parses ``"k=v<sep>k2=v2"`` (empty or None -> ``{}``).

    Raises:
        ValueError: an item without ``=`` or with an empty key, or a key given twice, naming
            ``what`` and the expected form.
    """
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(sep))):
        key, has_sep, value = item.partition("=")
        key = key.strip()
        if not has_sep or not key:
            raise ValueError(f"Invalid {what} item {item!r}. Expected key=value[{sep}key=value...],"
                             f" e.g. temperature=0.1. Received: {text!r}")
        if key in params:
            raise ValueError(f"Invalid {what}: the key {key!r} is given twice. Received: {text!r}")
        params[key] = parse_value(value)
    return params


def parse_entry(entry: str, *, what: str = "entry") -> tuple[str, dict[str, Any]]:
    """Parses ``"name"`` or ``"name:k=v;k2=v2"`` into ``(name, params)``.

    Raises:
        ValueError: an empty name, or a malformed parameter (see ``parse_params``).
    """
    name, _, params = entry.partition(":")
    if not name.strip():
        raise ValueError(f"Invalid {what} {entry!r}. Expected name or name:key=value;...")
    return name.strip(), parse_params(params, what=f"{what} {entry!r} parameter", sep=";")


def format_params(params: dict[str, Any], *, sep: str = ",") -> str:
    """The inverse of ``parse_params`` for JSON-able scalar values."""
    return sep.join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items())
