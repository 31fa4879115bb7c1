"""Executors: what runs a study's runs. A registry (``local``, ``ray``, ``slurm``) of classes.

An executor only executes: the runner plans the runs, hands it the unfinished ones as
``RunTask``s, logs a progress line for each ``TaskResult`` as it comes back, and aggregates from
disk. What a run is, whether it is finished (``identity``) and how it leaves its files
(``execution``: the run's lock, ``record.json`` written last) are the same whoever runs it, so
executors mix freely on one ``--out``: a relaunch by any of them skips what another finished.

    with executors.build("local", workers=2) as executor:
        for result in executor.map(tasks):
            ...

Plug-ins register with ``@executors.register("name")`` on a subclass of ``Executor``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

from nodulelearn.registry import Registry
from nodulelearn.study.execution import RunTask, TaskResult

#: Built-in executors, imported (with their engine) on first use.
REGISTRY = Registry(
    "executor",
    catalogue={
        "local": "nodulelearn.study.local_executor",
        "ray": "nodulelearn.study.ray_executor",
        "slurm": "nodulelearn.study.slurm_executor",
    },
)
register = REGISTRY.register
names = REGISTRY.names


class Executor(abc.ABC):
    """Runs ``RunTask``s; use as a context manager (``close`` ends what it started)."""

    #: The name it is registered under (in log lines).
    name: str = "custom"
    #: Whether ``map``'s tasks run in other processes (their stand-in stages must pickle).
    remote: bool = True

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @abc.abstractmethod
    def map(self, tasks: Sequence[RunTask]) -> Iterator[TaskResult]:
        """Runs every task; yields one ``TaskResult`` per task, as each finishes.

        A run that fails, or whose worker dies for good, yields a ``"failed"`` result; the others
        still run. Closing the iterator early (the runner does on a full disk) stops handing out
        tasks.
        """

    def close(self) -> None:  # noqa: B027 - optional: most executors have something to end
        """Ends the executor's workers, clusters or connections."""


def build(name: str, /, **options: Any) -> Executor:
    """The executor ``name`` with ``options`` (its keyword arguments).

    Raises:
        UnknownNameError: unknown ``name`` (the message lists the valid ones).
        UnknownParameterError: an option the executor does not take (the message lists them).
    """
    return REGISTRY.build(name, **options)


def options(name: str) -> dict[str, Any]:
    """Option -> default of the executor ``name``."""
    return REGISTRY.params(name)
