"""The ``local`` executor: a study's runs in spawned worker processes on this machine.

``workers`` processes run one run each at a time, every one with TensorFlow's intra-op threads =
cores / workers (inter-op 1), so the workers share the cores instead of fighting over them. Each
worker is a ``RunWorker``: replaced every ``runs_per_process`` runs (memory stays flat), and a
run that crashes its process fails alone. With ``runs_per_process=None`` the runs run one after
another in this process (what tests with stand-in stages use).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence

from nodulelearn.study.execution import RunTask, TaskResult, execute_task, release_session
from nodulelearn.study.executors import Executor, register
from nodulelearn.study.worker import RUNS_PER_PROCESS, RunCrashedError, RunWorker

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(cores: int | None = None) -> int:
    """The default ``--workers``: one single-threaded worker per core, at most 8.

    Measured on a tiny smoke study (docs/performance.md, ``bench/bench_executors.py``): one
    TensorFlow process does not keep 2 cores busy on the study's small CNNs, so a worker per
    core finishes sooner; beyond 8, each worker's memory (about 1.3 GB at peak) dominates.
    """
    return max(1, min(cores or available_cores(), 8))


@register("local")
class LocalExecutor(Executor):
    """Runs tasks in ``workers`` spawned processes (see the module doc).

    Args:
        workers: worker processes (None: ``default_workers()``).
        runs_per_process: runs per worker process before it is replaced; None: run the tasks in
            this process, one after another.
        cores: the cores to divide among the workers (None: ``available_cores()``).
    """

    name = "local"

    def __init__(self, workers: int | None = None,
                 runs_per_process: int | None = RUNS_PER_PROCESS, cores: int | None = None):
        for name, value in (("workers", workers), ("cores", cores)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ValueError(f"Invalid value for `{name}`. Expected a positive integer. "
                                 f"Received: {name}={value!r}")
        self.cores = cores or available_cores()
        self.workers = workers or default_workers(self.cores)
        self.runs_per_process = runs_per_process
        self.remote = runs_per_process is not None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._taking = threading.Lock()  # taking a task and stopping exclude each other

    def map(self, tasks: Sequence[RunTask]) -> Iterator[TaskResult]:
        if not self.remote:
            for task in tasks:
                yield execute_task(task)  # frees what the previous run left in Keras first
            release_session()
            return
        threads = max(1, self.cores // self.workers)
        todo: queue.Queue[RunTask] = queue.Queue()
        for task in tasks:
            todo.put(dataclasses.replace(task, threads=task.threads or threads))
        done: queue.Queue[TaskResult] = queue.Queue()
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._serve, args=(todo, done), daemon=True,
                             name=f"study-worker-{i}")
            for i in range(min(self.workers, len(tasks)))
        ]  # fmt: skip
        for thread in self._threads:
            thread.start()
        try:
            for _ in tasks:
                result = done.get()
                yield result
                if result.disk_error is not None:  # the workers stopped: no more results come
                    return
        finally:
            self._stop.set()  # ^C, or the consumer stopped early: no new runs are started

    def _serve(self, todo: queue.Queue, done: queue.Queue) -> None:
        with RunWorker(self.runs_per_process) as worker:
            while True:
                with self._taking:
                    if self._stop.is_set():
                        return
                    try:
                        task = todo.get_nowait()
                    except queue.Empty:
                        return
                try:
                    result = worker.run(execute_task, task)
                except RunCrashedError as err:
                    result = TaskResult(task.run.id, "failed", str(err))
                except Exception as err:  # noqa: BLE001 - e.g. a task that does not pickle
                    result = TaskResult(task.run.id, "failed", repr(err))
                if result.disk_error is not None:
                    # Every later run would fill the disk again: stop here, not only once the
                    # consumer has seen this result (by then each worker had taken another run).
                    with self._taking:
                        self._stop.set()
                done.put(result)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
