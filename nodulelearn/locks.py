"""One process per directory: an advisory ``fcntl.flock`` on a lock file inside it.

>>> with hold_lock("runs/ce-smoke", what="run directory"):  # doctest: +SKIP
...     ...  # only this process writes runs/ce-smoke

The kernel releases a ``flock`` when its holder exits, however it exits (a kill included), so a
lock left by a dead process is never held and needs no cleanup. A second process refuses at once
with a ``LockedError`` naming the directory and the holder's pid (written into the lock file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

#: The lock file's name inside the locked directory (callers that list a directory skip it).
LOCK_FILE = ".nodulelearn.lock"


class LockedError(RuntimeError):
    """Another live process holds the lock of the directory."""


def lock_file(directory: str | os.PathLike) -> Path:
    """The lock file of ``directory``."""
    return Path(directory) / LOCK_FILE


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


@contextlib.contextmanager
def hold_lock(directory: str | os.PathLike, *, what: str = "directory") -> Iterator[Path]:
    """Holds the lock of ``directory`` (created if missing) for the ``with`` block.

    Args:
        directory: the directory to claim.
        what: what the directory is, for the message (``"run directory"``, ``"study output"``).

    Yields:
        The lock file's path.

    Raises:
        LockedError: another process holds it (the message names the directory and its pid).
        OSError: the directory cannot be created or written (not a directory, read-only, full).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = lock_file(directory)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise LockedError(
                f"The {what} {directory} is in use by another process ({_holder(path)}, lock "
                f"file {path}). Wait for it to finish, or use another directory.") from None
        # The previous holder may have removed the file between our open and our lock: then we
        # locked an orphan inode, and must lock the file that now has the name.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        # Unlinking while holding is safe: a waiter that opened the old inode re-checks above.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
