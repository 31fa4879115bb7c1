"""One run of a study, executed wherever an executor puts it: the stages chained, the record last.

A ``RunTask`` (a study, one of its runs, the output directory) is all an executor ships to a
worker; ``execute_task`` runs it there and returns a ``TaskResult`` (plain values: it pickles
through any engine). A process holds the lock of the run it works on (``nodulelearn.locks``), so
two processes (two launches, or an engine's retry beside a straggler) never run one run at once;
the record is written last and a finished run is never redone, so a run executed twice is
recorded once.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodulelearn.atomic_files import write_json_atomic
from nodulelearn.locks import LOCK_FILE, LockedError, hold_lock
from nodulelearn.study import records
from nodulelearn.study.encoding_stage import EncodingAnalysis, encoding_stage
from nodulelearn.study.identity import (
    IDENTITY_FILE,
    is_finished,
    location_free,
    run_dir,
    run_fingerprint,
)
from nodulelearn.study.plan import Run
from nodulelearn.study.spec import StudySpec
from nodulelearn.study.stages import (
    PermutationAnalysis,
    default_train,
    sensitivity_stage,
    train_stage,
)
from nodulelearn.study.worker import peak_memory_bytes

# Errors of the disk rather than of a run: every later run would fail the same way.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@dataclasses.dataclass(frozen=True)
class RunTask:
    """What an executor ships to a worker: run ``run`` of ``study`` into ``out_dir``.

    Attributes:
        study: the expanded, validated study.
        run: one of its runs.
        out_dir: the study's output directory (a path every worker sees).
        overwrite: redo the run's stages even if finished.
        fns: stand-in stages (``execute_run``'s ``train_fn``, ``sensitivity_fn``,
            ``encoding_fn``); they must pickle to run in another process.
        threads: TensorFlow intra-op threads for the run (None: TensorFlow's default).
    """

    study: StudySpec
    run: Run
    out_dir: str
    overwrite: bool = False
    fns: dict[str, Any] = dataclasses.field(default_factory=dict)
    threads: int | None = None


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """What came of a ``RunTask``.

    Attributes:
        run_id: the run.
        status: ``"ran"``, ``"failed"``, ``"locked"`` (another process runs it) or
            ``"submitted"`` (left to a detached engine).
        error: the failure's message; ``details`` its traceback.
        stage_seconds: seconds per stage (``"ran"`` only).
        peak_memory: the worker process's peak resident memory after the run, in bytes.
        disk_error: ``(errno, message, filename)`` when the failure is the disk's (full,
            over quota, read-only): the study stops.
    """

    run_id: str
    status: str
    error: str = ""
    details: str = ""
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    peak_memory: int = 0
    disk_error: tuple[int, str, str | None] | None = None

    def os_error(self) -> OSError:
        """The disk error as an ``OSError`` (``disk_error`` set only)."""
        code, message, filename = self.disk_error
        return OSError(code, message, filename) if filename else OSError(code, message)


def execute_run(
    study: StudySpec,
    run: Run,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    train_fn: Callable | None = None,
    sensitivity_fn: Callable | None = None,
    encoding_fn: Any = None,
) -> dict[str, Any]:
    """Trains, evaluates and probes one run, then writes its record.

    Args:
        study: the validated study.
        run: one of ``plan_runs(study)``.
        out_dir: the study's output directory.
        overwrite: redo every stage even if its files exist.
        train_fn: ``(TrainConfig fields, train_dir, overwrite) -> metrics`` (default: builds a
            ``TrainConfig`` and calls ``nodulelearn.training.train``).
        sensitivity_fn: ``(train_dir, dist_ref, *, n, repeats, seed, batch_size) -> result``
            (default: ``nodulelearn.sensitivity.permutation_sensitivity`` on the run's model).
        encoding_fn: an object with ``encoding(train_dir, train_ref, *, seed, n, out_dir) ->
            result`` and ``recoverability(train_dir, refs, *, seed, n_test, n_fit, out_dir) ->
            [record per ref]`` (``n`` / ``n_fit`` None: the analysis' defaults) (default:
            ``nodulelearn.sensitivity``'s ``probe_encoding`` on the decorrelated training
            distribution and ``probe_recoverability`` on the OOD sets).

    Returns:
        The run's record (also written to ``<out>/runs/<run id>/record.json``); without
        ``overwrite``, the record already there if the run is finished.

    Raises:
        LockedError: another process is running this run (it holds the run directory's lock).
        StudyError: the run was made or started with other settings (without ``overwrite``).
    """
    directory = run_dir(out_dir, run)
    with hold_lock(directory, what="study run directory"):
        if overwrite:
            _clear_run_dir(directory)
        elif is_finished(out_dir, study, run):  # e.g. finished by another launch meanwhile
            return records.read_record(directory)
        return _execute_stages(study, run, directory, overwrite, train_fn or default_train,
                               sensitivity_fn or PermutationAnalysis(),
                               encoding_fn or EncodingAnalysis())  # fmt: skip


def _clear_run_dir(directory: Path) -> None:
    """Deletes everything in a run directory but its lock file (this process holds it)."""
    for path in directory.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _execute_stages(study, run, directory, overwrite, train_fn, sensitivity_fn, encoding_fn):
    from nodulelearn.datasets import load_spec

    fingerprint = run_fingerprint(study, run)
    # A record of these settings that is here although the run is to run again: its encoding is
    # re-measured (another read-out), its training and sensitivity files are reused as they are.
    previous = None if overwrite else records.read_record(directory)
    if previous is not None and location_free(previous.get("fingerprint")) != location_free(
        fingerprint
    ):
        previous = None
    # Written before the first stage, so a relaunch with other settings or distribution contents
    # is refused for an interrupted run too (training would resume it as it is).
    write_json_atomic(directory / IDENTITY_FILE, fingerprint)
    start = time.monotonic()
    raw_metrics = train_stage(study, run, directory, overwrite, train_fn)
    trained = time.monotonic()
    metrics = {
        t.label: records.match_metrics(raw_metrics, t, getattr(load_spec(t.ref), "name", None))
        for t in run.tests
    }
    sensitivity = sensitivity_stage(study, run, directory, sensitivity_fn)
    analysed = time.monotonic()
    encoding, recoverability = encoding_stage(study, run, directory, encoding_fn)
    seconds = {
        "train": trained - start,
        "sensitivity": analysed - trained,
        "encoding": time.monotonic() - analysed,
    }
    if previous is not None:  # what those stages took when they ran, not their reuse now
        for stage in ("train", "sensitivity"):
            before = previous.get("seconds", {}).get(stage)
            if isinstance(before, (int, float)):
                seconds[stage] = max(seconds[stage], float(before))
    record = records.build_record(
        run, fingerprint, metrics, sensitivity, seconds, encoding, recoverability
    )
    write_json_atomic(records.record_path(directory), record)
    return record


def release_session() -> None:
    """Frees what Keras keeps between models (its graph, layer names, cached functions).

    Without it every run of a study leaves its models in Keras' global state. Measured over 8
    smoke runs (2-core CPU, 2026-12-01): resident memory grew about 28 MB per run without it and
    about 17 MB per run with it, peak 1362 MB vs 1297 MB; the rest is held outside Keras.
    """
    if "keras" in sys.modules:  # nothing to free if no run has used Keras
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def limit_threads(threads: int | None) -> None:
    """TensorFlow's intra-op threads = ``threads``, inter-op 1, in this (worker) process.

    TensorFlow ignores ``OMP_NUM_THREADS`` (what Ray sets) but reads ``TF_NUM_INTRAOP_THREADS``
    and ``TF_NUM_INTEROP_THREADS`` when its runtime starts, i.e. at the worker's first run; set
    later (TensorFlow already started), the runtime's own setting is tried as well.
    """
    if not threads:
        return
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    if "tensorflow" in sys.modules:
        threading = sys.modules["tensorflow"].config.threading
        try:
            threading.set_intra_op_parallelism_threads(threads)
            threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # its runtime already started: it keeps its threads
            pass


def execute_task(task: RunTask) -> TaskResult:
    """Runs ``task`` in this process: its result, never an exception but ``KeyboardInterrupt``.

    A run's failure (e.g. a diverged run) becomes a ``"failed"`` result with its traceback; a
    failure of the disk (full, over quota, read-only; also TensorFlow's own file errors, such as
    the ``ResourceExhaustedError`` of a SavedModel export on a full disk) carries ``disk_error``.
    """
    limit_threads(task.threads)
    release_session()  # what the previous run of this process left in Keras' global state
    try:
        record = execute_run(task.study, task.run, task.out_dir, overwrite=task.overwrite,
                             **task.fns)  # fmt: skip
    except LockedError as err:
        return TaskResult(task.run.id, "locked", str(err))
    except Exception as err:  # noqa: BLE001 - reported to the runner, which decides
        disk = disk_error(err)
        return TaskResult(
            task.run.id, "failed", repr(err) if disk is None else disk[1],
            details="" if disk else traceback.format_exc(), peak_memory=peak_memory_bytes(),
            disk_error=disk,
        )  # fmt: skip
    return TaskResult(task.run.id, "ran", stage_seconds=dict(record["seconds"]),
                      peak_memory=peak_memory_bytes())  # fmt: skip


def execute_retried_task(task: RunTask, wait_s: float = 120.0) -> TaskResult:
    """``execute_task`` for an engine's retry: waits up to ``wait_s`` for the run's lock.

    When an engine retries a run because its node or worker died, the dead attempt's lock may be
    held a few seconds more (until the kernel reaps its process); a run another launch holds
    longer is reported ``"locked"`` as usual.
    """
    deadline = time.monotonic() + wait_s
    while True:
        result = execute_task(task)
        if result.status != "locked" or time.monotonic() > deadline:
            return result
        time.sleep(2.0)


_TF_PATH = re.compile(r"^(\S+?)(?:;|:)\s")  # TensorFlow's file errors start with the path


def disk_error(err: BaseException) -> tuple[int, str, str | None] | None:
    """``(errno, message, filename)`` if ``err`` (or what caused it) is a failure of the disk.

    TensorFlow's file writers do not raise ``OSError``: a full disk during the SavedModel export
    is a ``tf.errors.ResourceExhaustedError`` whose text carries the C library's message ("...;
    No space left on device"). It is recognised by that text, not by its class (an
    out-of-memory error is a ``ResourceExhaustedError`` too).
    """
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
            return err.errno, err.strerror or str(err), err.filename
        if type(err).__module__.startswith("tensorflow"):
            text = str(err)
            for code in ENVIRONMENT_ERRNOS:
                if os.strerror(code) in text:
                    path = _TF_PATH.match(text.strip())
                    return code, os.strerror(code), path.group(1) if path else None
        err = err.__cause__ or err.__context__
    return None
