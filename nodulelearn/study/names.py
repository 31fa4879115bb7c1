"""Names of a study that become file or folder names: one check for all of them.

A study's name (its default ``--out`` is ``runs/study-<name>``), its loss and training entry ids,
its sweep point ids, the labels of its test sets and the run ids made of them all name folders or
files. Each must be one harmless path component: no separator, no leading dot (``..``, hidden
files), no NUL or other control character, and short enough that every file name made from it
(``sensitivity/<label>.json``, the ``.<name>.XXXXXXXX.<ext>`` temporaries of atomic writes, the
``study-`` prefix) stays within the 255-byte limit of common file systems.
"""

from __future__ import annotations

import unicodedata

#: Bytes of one path component on ext4, XFS, APFS, NTFS (a component longer fails with ENAMETOOLONG).
NAME_MAX_BYTES = 255
#: The longest name or id accepted: NAME_MAX_BYTES less room for what is added around it (an
#: atomic write's temporary ``.<name>.XXXXXXXX.<ext>`` adds 10 bytes and its extensions twice).
MAX_NAME_BYTES = 200
_SEPARATORS = ("/", "\\")


def safe_path_component(text: str, what: str) -> str:
    """``text`` if it can name a file or folder as is; otherwise a ``ValueError`` saying why.

    Args:
        text: the name or id.
        what: what it is, for the message (e.g. ``"the study's name"``, ``"run id"``).

    Raises:
        ValueError: empty, a path separator, a leading dot, a control character (NUL, newline,
            ...) or longer than ``MAX_NAME_BYTES`` bytes in UTF-8.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"{what} must be a non-empty string. Received: {text!r}")
    problem = None
    if any(sep in text for sep in _SEPARATORS):
        problem = "a path separator ('/' or '\\')"
    elif text.startswith("."):
        problem = "a leading dot (it would name a hidden file, or '..' the folder above)"
    elif any(unicodedata.category(c) == "Cc" for c in text):
        problem = "a control character (NUL, newline, tab, ...)"
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problem = (
            f"{len(text.encode('utf-8', 'surrogatepass'))} bytes; at most {MAX_NAME_BYTES} fit "
            f"in a file name (the limit is {NAME_MAX_BYTES}, with room for the temporary names "
            "of atomic writes)"
        )
    if problem:
        shown = text if len(text) <= 60 else f"{text[:40]}...{text[-12:]}"
        raise ValueError(
            f"{what} {shown!r} names files and folders, so it must be one plain file name; it "
            f"has {problem}."
        )
    return text
