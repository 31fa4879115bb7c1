"""The ``slurm`` executor: a study's unfinished runs as one Slurm job array, through submitit.

One array per launch, one element per run (``--slurm_array_parallelism`` at once), each with
``cpus_per_task`` CPUs (TensorFlow's intra-op threads follow). The launch waits for the array,
watching ``squeue`` (no accounting database needed), or with ``detach`` returns once it is
submitted (``--aggregate_only`` merges later). Job scripts and logs: ``<out>/.slurm/<job id>/``.

Requeue. Slurm warns an element ``SIGUSR2`` 90 s before its time limit (and clusters that warn
before a preemption, the same way): submitit then requeues it (``SlurmRun.checkpoint``), at most
``max_requeues`` times for a time limit. A preemption in Slurm's ``REQUEUE`` mode, a node failure
or ``scontrol requeue`` requeue it from Slurm's side. Either way the element is pending again (Slurm
holds a requeued job about 2 minutes), the launch logs it and keeps waiting, and the run starts
again like a relaunch of an interrupted run: it takes its lock, finds no ``record.json`` (written
last), and resumes its stages from their files. It is recorded once.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from nodulelearn.study.execution import RunTask, TaskResult, execute_retried_task
from nodulelearn.study.executors import Executor, register
from nodulelearn.study.spec import StudyError
from nodulelearn.study.worker import logging_settings, set_up_logging

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SlurmRun:
    """What each array element calls: the run, in a process that logs like the launch
    (``worker.logging_settings()``' answer: TensorFlow's log lines stay out of the job's logs).

    On Slurm's ``SIGUSR2`` (its time limit or a preemption is near) submitit calls ``checkpoint``
    and requeues what it returns: the same run, which resumes from its stages' files (they are
    its checkpoint: nothing more to save)."""

    log_level: int = logging.INFO
    quiet: bool = True

    def __call__(self, task: RunTask) -> TaskResult:
        set_up_logging(self.log_level, self.quiet)
        return execute_retried_task(task)

    def checkpoint(self, task: RunTask):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, task)


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise StudyError(
            "The slurm executor needs submitit: pip install 'nodulelearn[slurm]'."
        ) from None
    return submitit


#: squeue's compact states of an element that has started (running, ending, suspended) ...
_STARTED = {"R", "CG", "S", "ST", "SO"}
#: ... and of one waiting to start (pending, requeued, held after a requeue).
_WAITING = {"PD", "RQ", "RH", "RF", "RS", "SE", "CF"}


def queued_jobs(array_id: str) -> dict[str, str] | None:
    """Element -> compact state (``PD``, ``R``, ...) of the elements of job array ``array_id``
    still in the queue (None: squeue failed)."""
    try:
        found = subprocess.run(["squeue", "-h", "-r", "-o", "%i %t", "-j", array_id],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0:  # a finished array is "Invalid job id" once slurmctld forgets it
        return {} if "Invalid job id" in found.stderr else None
    return dict((line.split() + [""])[:2] for line in found.stdout.splitlines() if line.strip())


@register("slurm")
class SlurmExecutor(Executor):
    """Runs tasks as a Slurm job array (see the module doc).

    Args:
        partition: the partition (None: the cluster's default).
        time_min: each element's time limit, in minutes.
        cpus_per_task: CPUs per run.
        mem: memory per run, Slurm's syntax (``"8G"``).
        array_parallelism: elements running at once.
        setup: shell lines run before each run (``module load ...``, ``source venv/bin/activate``).
        detach: return once the array is submitted.
        max_requeues: how often a run is requeued after reaching its time limit (then it fails);
            requeues for a preemption are not counted.
        poll_s: seconds between two looks at the queue.
    """

    name = "slurm"

    def __init__(self, partition: str | None = None, time_min: int = 240, cpus_per_task: int = 2,
                 mem: str = "8G", array_parallelism: int = 64, setup: Sequence[str] = (),
                 detach: bool = False, max_requeues: int = 3, poll_s: float = 10.0):
        for key, value in (("time_min", time_min), ("cpus_per_task", cpus_per_task),
                           ("array_parallelism", array_parallelism)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid value for `{key}`. Expected a positive integer. "
                                 f"Received: {key}={value!r}")
        if isinstance(setup, str):
            raise ValueError("Invalid value for `setup`. Expected a list of shell lines. "
                             f"Received: setup={setup!r}")
        self.partition, self.time_min, self.cpus_per_task = partition, time_min, cpus_per_task
        self.mem, self.array_parallelism, self.setup = mem, array_parallelism, list(setup)
        self.detach, self.max_requeues, self.poll_s = detach, max_requeues, poll_s

    def map(self, tasks: Sequence[RunTask]) -> Iterator[TaskResult]:
        if not tasks:
            return
        submitit = _import_submitit()
        executor = submitit.SlurmExecutor(folder=Path(tasks[0].out_dir) / ".slurm" / "%j",
                                          max_num_timeout=self.max_requeues)  # fmt: skip
        params = {"time": self.time_min, "cpus_per_task": self.cpus_per_task, "mem": self.mem,
                  "array_parallelism": self.array_parallelism, "setup": self.setup,
                  "job_name": "nodulelearn-study"}  # fmt: skip
        if self.partition:
            params["partition"] = self.partition
        executor.update_parameters(**params)
        tasks = [dataclasses.replace(t, threads=t.threads or self.cpus_per_task) for t in tasks]
        try:
            jobs = executor.map_array(SlurmRun(*logging_settings()), tasks)
        except (OSError, subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as err:
            raise StudyError(f"sbatch refused the study's job array: {_first_line(err)}") from None
        array_id = jobs[0].job_id.split("_")[0]
        log.info("Submitted Slurm job array %s: %d run(s); logs in %s", array_id, len(jobs),
                 Path(tasks[0].out_dir) / ".slurm")  # fmt: skip
        if self.detach:
            for task in tasks:
                yield TaskResult(task.run.id, "submitted")
            return
        yield from self._wait(array_id, dict(zip(jobs, tasks, strict=True)))

    def _wait(self, array_id, pending) -> Iterator[TaskResult]:
        absent: dict[str, int] = {}
        started: set[str] = set()  # elements last seen started
        try:
            while pending:
                queued = queued_jobs(array_id)
                for job, task in list(pending.items()):
                    if not job.paths.result_pickle.exists():
                        if queued is None:
                            continue
                        if job.job_id in queued:
                            _note_requeue(job.job_id, queued[job.job_id], task, started)
                            continue
                        # Left the queue without a result: look once more (a shared filesystem
                        # may show the result file late), then report it failed.
                        absent[job.job_id] = absent.get(job.job_id, 0) + 1
                        if absent[job.job_id] < 2:
                            continue
                    del pending[job]
                    yield _job_result(job, task)
                if pending:
                    time.sleep(self.poll_s)
        finally:
            for job in pending:  # stopped early (a full disk, ^C): the rest is cancelled
                job.cancel(check=False)


def _note_requeue(job_id: str, state: str, task: RunTask, started: set[str]) -> None:
    """Logs an element seen started before and waiting now: Slurm or submitit requeued it."""
    if state in _STARTED:
        started.add(job_id)
    elif state in _WAITING and job_id in started:
        started.discard(job_id)
        log.warning("Run %s (Slurm job %s) was requeued (time limit, preemption, node failure or "
                    "scontrol requeue): it resumes from its files when Slurm starts it again",
                    task.run.id, job_id)  # fmt: skip


def _job_result(job, task: RunTask) -> TaskResult:
    if not job.paths.result_pickle.exists():
        return TaskResult(task.run.id, "failed", f"Slurm job {job.job_id} ended without a "
                          f"result (killed, or out of time or memory); see {job.paths.stderr}")
    try:
        return job.result()
    except Exception as err:  # noqa: BLE001 - the job's own error, reported for this run
        return TaskResult(task.run.id, "failed", f"Slurm job {job.job_id}: {_first_line(err)}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else repr(err)
