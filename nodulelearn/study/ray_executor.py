"""The ``ray`` executor: a study's runs as Ray tasks, on a private local cluster or any Ray cluster.

``address="local"`` (the default) starts a private cluster on 127.0.0.1 for the launch (its own
temporary directory, a small object store, token authentication with a fresh token, no
dashboard) and stops it at the end; ``"auto"`` or ``"HOST:PORT"`` joins a running cluster (Ray on
Slurm, KubeRay, ``ray start``). Each run is one task with ``cpus_per_run`` CPUs (TensorFlow's
intra-op threads follow), retried when its worker or node dies; a worker process is replaced
every ``runs_per_process`` tasks (``max_calls``: memory stays flat). A worker logs like the
launch (``worker.set_up_logging``): TensorFlow's C++ and Python log lines stay out of the launch's
output (Ray forwards every worker's output to it) unless ``--verbosity`` asks for them. The study
folder must be on a filesystem every node sees: checked on every node before the first run.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from nodulelearn.study.execution import RunTask, TaskResult, execute_retried_task
from nodulelearn.study.executors import Executor, register
from nodulelearn.study.spec import StudyError
from nodulelearn.study.worker import RUNS_PER_PROCESS, logging_settings, set_up_logging

log = logging.getLogger(__name__)

#: What a private cluster sets: the loopback address (Ray otherwise binds its servers to the
#: host's address), token authentication with a fresh token (nothing written to ~/.ray), no
#: usage statistics.
_PRIVATE_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                "RAY_USAGE_STATS_ENABLED")  # fmt: skip


_TOKEN: list[str] = []


def _private_token() -> str:
    """The token of this process's private clusters: one per process, since Ray keeps the first
    token it reads for the life of the process."""
    if not _TOKEN:
        _TOKEN.append(secrets.token_hex(32))
    return _TOKEN[0]


def worker_task(log_level: int, quiet: bool):
    """The Ray task's function: runs a ``RunTask`` in a worker that logs like the launch
    (``worker.logging_settings()``' answer), set up before its first run imports TensorFlow."""

    def execute_run(task: RunTask) -> TaskResult:
        set_up_logging(log_level, quiet)
        return execute_retried_task(task)

    return execute_run


def _import_ray():
    try:
        import ray
    except ImportError:
        raise StudyError(
            "The ray executor needs Ray: pip install 'nodulelearn[ray]'."
        ) from None
    return ray


@register("ray")
class RayExecutor(Executor):
    """Runs tasks on a Ray cluster (see the module doc).

    Args:
        address: ``"local"`` (a private cluster for this launch), ``"auto"`` (the cluster this
            machine belongs to) or ``"HOST:PORT"`` (its head's GCS address).
        cpus_per_run: CPUs each run reserves (and TensorFlow's intra-op threads).
        runs_per_process: runs per Ray worker process before it is replaced.
        max_retries: how often a run whose worker or node died is retried.
        object_store_mb: the private cluster's object store (a run ships only a few kB).
    """

    name = "ray"

    def __init__(self, address: str = "local", cpus_per_run: int = 1,
                 runs_per_process: int = RUNS_PER_PROCESS, max_retries: int = 3,
                 object_store_mb: int = 100):
        if not isinstance(address, str) or not address:
            raise ValueError("Invalid value for `address`. Expected 'local', 'auto' or "
                             f"'HOST:PORT'. Received: address={address!r}")
        for key, value in (("cpus_per_run", cpus_per_run), ("runs_per_process", runs_per_process),
                           ("object_store_mb", object_store_mb)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid value for `{key}`. Expected a positive integer. "
                                 f"Received: {key}={value!r}")
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.runs_per_process = runs_per_process
        self.max_retries = max_retries
        self.object_store_mb = object_store_mb
        self._saved_env: dict[str, str | None] | None = None
        self._temp_dir: str | None = None
        self._connected = False

    def map(self, tasks: Sequence[RunTask]) -> Iterator[TaskResult]:
        if not tasks:
            return
        ray = self._connect()
        check_shared_folder(ray, tasks[0].out_dir)
        remote = ray.remote(num_cpus=self.cpus_per_run, max_retries=self.max_retries,
                            max_calls=self.runs_per_process)(
                                worker_task(*logging_settings()))  # fmt: skip
        todo, refs, pending = collections.deque(tasks), {}, []
        try:
            while todo or pending:
                # Only as many tasks as the cluster can run now: Ray starts a queued task as soon
                # as a CPU frees, before this loop sees the result (a full disk) that stops the
                # study. Counted each time, so that a cluster that grows is used.
                slots = max(1, int(ray.cluster_resources().get("CPU", 0) // self.cpus_per_run))
                while todo and len(pending) < slots:
                    task = todo.popleft()
                    ref = remote.remote(dataclasses.replace(
                        task, threads=task.threads or self.cpus_per_run))
                    refs[ref] = task
                    pending.append(ref)
                ready, pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayError as err:  # its worker or node died, retries spent
                    result = TaskResult(refs[ready[0]].run.id, "failed", "Ray could not finish "
                                        f"it ({type(err).__name__}: {_first_line(err)})")
                yield result
                if result.disk_error is not None:  # every later run would fail the same way
                    return
        finally:
            for ref in pending:  # stopped early: the runs not started are not started
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def _connect(self):
        if self.address == "local" and not self._connected:
            # Before Ray is imported: it reads its authentication mode once, at import.
            self._saved_env = {k: os.environ.get(k) for k in _PRIVATE_ENV}
            os.environ.update({
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN": _private_token(), "RAY_USAGE_STATS_ENABLED": "0",
            })  # fmt: skip
        ray = _import_ray()
        if self._connected:
            return ray
        if self.address == "local":
            # Short: Ray's socket paths live in it (a Unix socket path is at most 107 bytes).
            self._temp_dir = tempfile.mkdtemp(prefix="nodulelearn-ray-",
                                              dir="/tmp" if os.path.isdir("/tmp") else None)
            from nodulelearn.study.local_executor import available_cores

            try:
                ray.init(address="local", num_cpus=available_cores(), include_dashboard=False,
                         object_store_memory=self.object_store_mb * 2**20,
                         _temp_dir=self._temp_dir, logging_level=logging.WARNING)  # fmt: skip
            except Exception as err:  # noqa: BLE001 - Ray's many start-up errors, in one line
                raise StudyError(
                    f"Could not start a private Ray cluster: {_first_line(err)}. Ray reads its "
                    "settings when first imported: launch from a fresh process (one that has "
                    "not used Ray yet), or join a running cluster with --ray_address."
                ) from None
            log.info("Started a private Ray cluster on 127.0.0.1 (%s)", self._temp_dir)
        else:
            try:
                ray.init(address=self.address, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise StudyError(
                    f"Cannot join the Ray cluster at --ray_address={self.address}: "
                    f"{_first_line(err)}. Start it first (ray start --head), or use "
                    "--ray_address=local."
                ) from None
        self._connected = True
        return ray

    def close(self) -> None:
        if self._connected:
            import ray

            ray.shutdown()  # a private cluster stops with it
            self._connected = False
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        if self._saved_env is not None:
            for key, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            self._saved_env = None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)


def _sees(path: str, token: str) -> tuple[str, bool]:
    try:
        seen = Path(path).read_text() == token
    except OSError:
        seen = False
    return socket.gethostname(), seen


def check_shared_folder(ray, out_dir: str) -> None:
    """Raises ``StudyError`` if a node of the cluster cannot read a file the driver wrote in
    ``out_dir`` (the study folder must be shared: runs write there, the driver aggregates)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probe = Path(out_dir).resolve() / f".ray-visible-{token}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(token)
    try:
        sees = ray.remote(num_cpus=0)(_sees)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        answers = ray.get([
            sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(str(probe), token)
            for n in nodes
        ])  # fmt: skip
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted({host for host, seen in answers if not seen})
    if blind:
        raise StudyError(
            f"Ray node(s) {', '.join(blind)} cannot see the study folder {str(Path(out_dir))!r}: "
            "put --out on a filesystem every node mounts at the same path (NFS, a shared volume)."
        )
