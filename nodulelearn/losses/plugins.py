"""Losses from outside the package: entry points and ``--loss_module``.

A third-party distribution declares, in its metadata, an entry point in the group
``nodulelearn.losses`` whose value is a module (or an object in it) that registers losses with
``@nodulelearn.losses.register``. The group is read once, lazily, the first time the registry is
read. A binary's ``--loss_module=dotted.path`` imports such a module directly.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import types

ENTRY_POINT_GROUP = "nodulelearn.losses"

log = logging.getLogger(__name__)

_loaded = False


def load_entry_point_plugins(*, force: bool = False) -> list[str]:
    """Loads every entry point of the group ``nodulelearn.losses`` (once per process).

    Args:
        force: load again even if already loaded (modules already imported are not re-run).

    Returns:
        The names of the entry points loaded by this call.

    Raises:
        ImportError: an entry point fails to load; the message names it and its value.
    """
    global _loaded
    if _loaded and not force:
        return []
    _loaded = True  # Set first: a plug-in that reads the registry while importing must not recurse.
    loaded = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:
            _loaded = False
            raise ImportError(
                f"Could not load the loss plug-in {entry_point.name!r} = {entry_point.value!r} "
                f"(entry-point group {ENTRY_POINT_GROUP!r}): {error}"
            ) from error
        log.info("Loaded loss plug-in %s = %s", entry_point.name, entry_point.value)
        loaded.append(entry_point.name)
    return loaded


def import_loss_module(dotted_path: str) -> types.ModuleType:
    """Imports a user module that registers losses (the binaries' ``--loss_module`` flag).

    Args:
        dotted_path: importable module path, e.g. ``"my_project.my_losses"``.

    Returns:
        The imported module.

    Raises:
        ImportError: the module cannot be imported (the message says which and why).
    """
    if not isinstance(dotted_path, str) or not dotted_path or dotted_path.endswith(".py"):
        raise ImportError(
            "Expected a dotted module path such as 'my_project.my_losses' (not a file name). "
            f"Received: loss_module={dotted_path!r}"
        )
    try:
        return importlib.import_module(dotted_path)
    except ImportError as error:
        raise ImportError(
            f"Could not import the loss module {dotted_path!r}: {error}. It must be importable "
            "from sys.path (install it, or add its folder to PYTHONPATH)."
        ) from error
