"""Runs the runs of a study (or of one shard of it) on an executor, then leaves them on disk.

The runner plans the runs, skips the finished ones, refuses stale ones, and hands the others to
an executor (``executors``: ``local``, ``ray``, ``slurm``) as ``RunTask``s; it logs a progress
line for each result as it comes back. Every stage leaves its result on disk before the next
starts, so a relaunch after any interruption, by any executor, redoes only what is missing:

    <out>/study.json                       the validated study (aggregation reads it)
    <out>/.locks/shard-<i>-of-<n>/         held by the process launching that shard
    <out>/runs/<run id>/                   one run (``identity``, ``execution``, ``stages``)

The launching process holds the lock of its shard, and whoever runs a run holds the lock of its
directory (``nodulelearn.locks``), so two launches never run one shard or one run at once; the
kernel frees the locks of a killed process.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nodulelearn.atomic_files import write_json_atomic
from nodulelearn.locks import hold_lock
from nodulelearn.study import executors
from nodulelearn.study.availability import low_availability_notes
from nodulelearn.study.encoding_stage import ENCODING_FILE, RECOVERABILITY_FILE  # noqa: F401
from nodulelearn.study.execution import (  # noqa: F401 - the study's API, re-exported
    RunTask,
    TaskResult,
    execute_run,
    release_session,
)
from nodulelearn.study.identity import (  # noqa: F401 - the study's API, re-exported
    FINISHED,
    IDENTITY_FILE,
    STALE,
    TO_RUN,
    fingerprint_changes,
    is_finished,
    location_free,
    refuse_stale,
    run_dir,
    run_fingerprint,
    run_state,
    run_states,
    spec_digest,
)
from nodulelearn.study.plan import plan_runs, shard_runs
from nodulelearn.study.spec import StudyError, StudySpec
from nodulelearn.study.stages import SENSITIVITY_SEED_OFFSET  # noqa: F401
from nodulelearn.study.sweep import expand_study
from nodulelearn.study.worker import RUNS_PER_PROCESS

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
LOCKS_DIR = ".locks"  # <out>/.locks/shard-<i>-of-<n>/: one process per shard of a study


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """What happened to one run.

    Attributes:
        run_id: the run.
        status: ``"ran"``, ``"skipped"`` (already finished), ``"failed"`` or ``"submitted"``
            (handed to a detached engine).
        seconds: time spent on its stages now.
        error: the failure's message (``"failed"`` only).
    """

    run_id: str
    status: str
    seconds: float
    error: str = ""


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; refuses one that exists and is not a directory."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise StudyError(
            f"Output directory {str(path)!r} exists and is not a directory. Give a directory "
            "(it is created if missing)."
        )
    return path


def write_study_file(out_dir: str | Path, study: StudySpec) -> Path:
    """Writes the validated study to ``<out>/study.json`` (what --aggregate_only reads)."""
    return write_json_atomic(Path(out_dir) / STUDY_FILE, study.to_dict())


def run_study(
    study: StudySpec,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    train_fn: Callable | None = None,
    sensitivity_fn: Callable | None = None,
    encoding_fn: Any = None,
    runs_per_process: int | None = RUNS_PER_PROCESS,
    executor: str | executors.Executor = "local",
    executor_options: Mapping[str, Any] | None = None,
) -> list[RunOutcome]:
    """Runs the unfinished runs of one shard of a validated study, logging a progress line each.

    Args:
        study: a study that went through ``validate_study``.
        out_dir: output directory (shared by every shard; on a filesystem every worker sees).
        shard: ``(i, n)``: run every n-th run of the id-sorted list, starting at the i-th.
        overwrite: redo finished runs too.
        train_fn, sensitivity_fn, encoding_fn: see ``execute_run`` (tests replace them). With
            the ``local`` executor and no ``workers`` option, runs with one of them given run in
            this process; on any other executor they must pickle.
        runs_per_process: ``local`` only: a worker process is replaced every that many runs
            (``nodulelearn.study.worker``: the memory of a long study stays flat); None: the runs
            run in this process.
        executor: an executor name (``executors.names()``) or an ``Executor``.
        executor_options: the named executor's options (e.g. ``{"workers": 2}``).

    Returns:
        One ``RunOutcome`` per run of the shard, in run order. A run that fails is logged and
        reported as ``"failed"``; the others still run (``KeyboardInterrupt`` stops the study,
        and so does a full or read-only disk: an ``OSError`` is raised).

    Raises:
        StudyError: ``out_dir`` is not a directory; or (without ``overwrite``) some runs were
            made or started with other settings or distribution contents (nothing is run).
        LockedError: another process is launching the same shard of the study in ``out_dir``.
            (Other shards may run at once; two launches that overlap meet at the lock of each
            run directory: the second reports that run as failed and goes on.)
        UnknownNameError, UnknownParameterError, ValueError: a bad executor or option.
    """
    check_out_dir(out_dir)
    fns = {k: v for k, v in {"train_fn": train_fn, "sensitivity_fn": sensitivity_fn,
                             "encoding_fn": encoding_fn}.items() if v is not None}  # fmt: skip
    if isinstance(executor, str):
        options = dict(executor_options or {})
        if executor == "local":
            in_process = bool(fns) and "workers" not in options
            options.setdefault("runs_per_process", None if in_process else runs_per_process)
        executor = executors.build(executor, **options)
    lock_dir = Path(out_dir) / LOCKS_DIR / f"shard-{shard[0]}-of-{shard[1]}"
    with hold_lock(lock_dir, what=f"shard {shard[0]}/{shard[1]} of the study in {out_dir}: lock"):
        with executor:
            return _run_shard(study, out_dir, shard, overwrite, fns, executor)


def _run_shard(study, out_dir, shard, overwrite, fns, executor) -> list[RunOutcome]:
    study = expand_study(study, out_dir)  # a sweep's points, each with its spec files
    for note in low_availability_notes(study):
        log.warning(note)
    runs = shard_runs(plan_runs(study), *shard)
    if overwrite:
        pending = {r.id for r in runs}
    else:
        states = run_states(study, out_dir, shard)
        refuse_stale(study, out_dir, states)
        pending = {run.id for run, state, _ in states if state != FINISHED}
    # Only now: a study refused for clashing with finished runs leaves study.json as it was.
    write_study_file(out_dir, study)
    log.info(
        "Study %r, shard %d/%d: %d run(s), %d already finished, %d to run on the %s executor; "
        "output in %s", study.name, shard[0], shard[1], len(runs), len(runs) - len(pending),
        len(pending), executor.name, out_dir,
    )  # fmt: skip
    position = {run.id: k for k, run in enumerate(runs, start=1)}
    outcomes: dict[str, RunOutcome] = {}
    for run in runs:
        if run.id not in pending:
            outcomes[run.id] = RunOutcome(run.id, "skipped", 0.0)
            log.info("[%d/%d] %s: skipped (already finished)", position[run.id], len(runs), run.id)
    tasks = [RunTask(study, run, str(out_dir), overwrite, fns) for run in runs
             if run.id in pending]  # fmt: skip
    progress = _Progress(len(runs), len(tasks))
    results = executor.map(tasks)
    try:
        for result in results:
            outcomes[result.run_id] = progress.report(position[result.run_id], result)
    finally:
        results.close()  # stops handing out runs when the loop ends early (a full disk, ^C)
    failed = [run.id for run in runs if outcomes[run.id].status == "failed"]
    if failed:
        log.error("%d run(s) failed (relaunch to retry them): %s", len(failed), ", ".join(failed))
    return [outcomes[run.id] for run in runs]


class _Progress:
    """One log line per finished run: its times, peak memory, and an estimate of what is left."""

    def __init__(self, n_runs: int, n_tasks: int):
        self.n_runs, self.left = n_runs, n_tasks
        self.started = time.monotonic()
        self.done = 0

    def report(self, k: int, result: TaskResult) -> RunOutcome:
        seconds = sum(result.stage_seconds.values())
        where = f"[{k}/{self.n_runs}] {result.run_id}"
        if result.status == "submitted":
            log.info("%s: submitted", where)
            return RunOutcome(result.run_id, "submitted", 0.0)
        if result.status == "locked":  # another launch runs it (an overlapping sharding)
            log.error("%s: not run: %s", where, result.error)
            return RunOutcome(result.run_id, "failed", 0.0, result.error)
        if result.disk_error is not None:
            error = result.os_error()
            log.error("%s: stopped, the study cannot write its output (%s); relaunch when "
                      "fixed: finished stages are kept", where, error)  # fmt: skip
            raise error
        self.left -= 1
        self.done += 1
        elapsed = time.monotonic() - self.started
        estimate = self.left * elapsed / self.done  # throughput, whatever runs in parallel
        if result.status != "ran":
            log.error("%s: FAILED; the study goes on without it: %s%s", where, result.error,
                      f"\n{result.details.rstrip()}" if result.details else "")  # fmt: skip
            return RunOutcome(result.run_id, "failed", seconds, result.error)
        stage = result.stage_seconds
        log.info(
            "%s: done in %s (train %s, sensitivity %s, encoding %s); peak memory %s; elapsed %s, "
            "about %s remaining (%d run(s) left)", where, _format_duration(seconds),
            _format_duration(stage["train"]), _format_duration(stage["sensitivity"]),
            _format_duration(stage["encoding"]), _format_memory(result.peak_memory),
            _format_duration(elapsed), _format_duration(estimate), self.left,
        )  # fmt: skip
        return RunOutcome(result.run_id, "ran", seconds)


def _format_memory(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
