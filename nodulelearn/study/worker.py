"""Study runs in a child process, replaced every few runs, so that a long study's memory stays flat.

TensorFlow keeps part of what each run builds (the functions of its ``tf.data`` pipelines and
models) for the life of the process, where ``keras.backend.clear_session`` cannot free it:
measured, a study's resident memory grew about 17 MB per run in one process (2-core CPU,
2026-12-01), +0.9 GB over the 54 runs of ``paper``. A ``RunWorker`` runs each run in a spawned
child process and starts a fresh one every ``runs_per_process`` runs, so the memory of a study is
bounded by what ``runs_per_process`` runs hold, however many runs it has. A run that crashes its
process (a segmentation fault) fails alone; the next run gets a fresh process. The ``local``
executor runs one ``RunWorker`` per worker (``local_executor``).

The child inherits the parent's environment (TensorFlow's log level, thread settings); its log
records go to stderr like the parent's. On Linux the child is killed when the parent dies, so a
killed study leaves no run behind that still holds a run directory's lock.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import resource
import sys
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

#: Runs per child process: its start (TensorFlow's import, the first run's compilation) costs a
#: few seconds, each run adds about 17 MB that only the end of the process frees.
RUNS_PER_PROCESS = 8


class RunCrashedError(RuntimeError):
    """The child process running a study run ended without a result (e.g. a segfault)."""


def peak_memory_bytes() -> int:
    """This process's peak resident memory so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak if sys.platform == "darwin" else peak * 1024


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)


def logging_settings() -> tuple[int, bool]:
    """What a study's worker processes copy from this (launching) process: its root log level,
    and whether TensorFlow's logs are off (``TF_CPP_MIN_LOG_LEVEL=3``, as
    ``cli_env.quiet_tensorflow`` sets it for a command line)."""
    return logging.getLogger().level, os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"


def set_up_logging(log_level: int, quiet: bool) -> None:
    """A worker process logs like the launch (``logging_settings()``' answer): TensorFlow as
    quiet (call it before TensorFlow is imported), absl's handler, the same level. Idempotent."""
    if quiet:
        from nodulelearn.cli_env import quiet_tensorflow

        quiet_tensorflow([])
    from nodulelearn.cli_env import use_absl_logging

    use_absl_logging()  # absl's handler, without its "Logging before flag parsing" warning
    logging.getLogger().setLevel(log_level)


def _start_child(log_level: int, quiet: bool) -> None:
    """The child's set-up: dies with its parent, logs like it, TensorFlow as quiet as in it."""
    _die_with_parent()
    set_up_logging(log_level, quiet)


class RunWorker:
    """Calls functions in a child process, a fresh one every ``runs_per_process`` calls.

    Use as a context manager. ``run(fn, *args, **kwargs)`` returns ``fn(*args, **kwargs)``
    computed in the child: ``fn`` is a module-level function and its arguments and result must
    pickle (the local executor passes ``execution.execute_task`` and a ``RunTask``). An exception of
    ``fn`` is raised again here; a child that dies without a result raises ``RunCrashedError``
    and is replaced for the next call.
    """

    def __init__(self, runs_per_process: int = RUNS_PER_PROCESS):
        if isinstance(runs_per_process, bool) or not isinstance(runs_per_process, int) \
                or runs_per_process < 1:
            raise ValueError("Invalid value for `runs_per_process`. Expected a positive integer. "
                             f"Received: runs_per_process={runs_per_process!r}")
        self._runs_per_process = runs_per_process
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._left = 0

    def __enter__(self) -> RunWorker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._pool is None or self._left == 0:
            self.close()
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child, initargs=logging_settings(),
            )  # fmt: skip
            self._left = self._runs_per_process
        self._left -= 1
        try:
            return self._pool.submit(fn, *args, **kwargs).result()
        except BrokenProcessPool as err:
            self.close()
            raise RunCrashedError(
                "the process running this run ended without a result (crashed or was killed); "
                "relaunch the study to retry it"
            ) from err

    def close(self) -> None:
        """Ends the child process (after its current run)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
