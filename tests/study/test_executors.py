"""The executor registry and the ``local`` executor's worker processes, with stand-in stages that
pickle (tests/study/engine_stages.py); test_executor_ray.py and test_executor_slurm.py run the
same study on real engines."""

import errno
import os
from pathlib import Path

import pytest

from nodulelearn.registry import UnknownNameError, UnknownParameterError
from nodulelearn.study import executors, load_study, run_study

HERE = Path(__file__).resolve().parent


@pytest.fixture
def engine_stages(monkeypatch):
    """The stand-in module, importable here and in every process started from here."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(HERE), os.environ.get("PYTHONPATH")])))  # fmt: skip
    import engine_stages

    return engine_stages


@pytest.fixture
def study(tmp_path, tiny_study_files):
    return load_study(str(tiny_study_files(tmp_path / "spec")))  # 2 losses x 2 seeds


def test_registry_names_and_errors():
    assert executors.names() == ["local", "ray", "slurm"]
    with pytest.raises(UnknownNameError, match="Unknown executor 'dask'. Valid names: local, "
                                               "ray, slurm."):  # fmt: skip
        executors.build("dask")
    with pytest.raises(UnknownParameterError, match="'gpus'.*workers"):
        executors.build("local", gpus=2)
    with pytest.raises(ValueError, match="Expected a positive integer. Received: workers=0"):
        executors.build("local", workers=0)


def test_two_workers_equal_one_a_killed_worker_fails_only_its_run_and_a_relaunch_finishes_it(
        study, tmp_path, engine_stages):  # fmt: skip
    """One test for both (each worker process imports TensorFlow: seconds each)."""
    stages = engine_stages.EngineStages()
    one = run_study(study, tmp_path / "one", executor_options={"workers": 1, "cores": 2},
                    **stages.fns())  # fmt: skip
    assert [o.status for o in one] == ["ran"] * 4
    reference = engine_stages.records_without_times(tmp_path / "one")
    assert len(reference) == 4
    threads = {t for runs in engine_stages.starts(tmp_path / "one").values() for _, _, t in runs}
    assert threads == {"2"}  # one worker: both cores
    out = tmp_path / "two"
    crashing = engine_stages.EngineStages(crash_once="ce__tiny__s1")
    first = run_study(study, out, executor_options={"workers": 2, "cores": 2}, **crashing.fns())
    assert {o.run_id: o.status for o in first} == {
        "ce__tiny__s0": "ran", "ce__tiny__s1": "failed", "supcon__tiny__s0": "ran",
        "supcon__tiny__s1": "ran",
    }  # fmt: skip
    assert "ended without a result" in first[1].error
    started = engine_stages.starts(out)
    pids = {pid for runs in started.values() for pid, _, _ in runs}
    assert len(pids) >= 2 and os.getpid() not in pids  # two workers (one replaced if it ran more)
    assert {t for runs in started.values() for _, _, t in runs} == {"1"}  # 2 cores / 2 workers
    again = run_study(study, out, executor_options={"workers": 2}, **crashing.fns())
    assert [o.status for o in again] == ["skipped", "ran", "skipped", "skipped"]
    assert len(engine_stages.starts(out)["ce__tiny__s1"]) == 2
    assert engine_stages.records_without_times(out) == reference


@pytest.mark.parametrize("args, expected", [
    (["--executor=ray", "--workers=2"],
     "--workers only applies to --executor=local (got --executor=ray)."),
    (["--slurm_mem=4G"], "--slurm_mem only applies to --executor=slurm (got --executor=local)."),
    (["--executor=dask"], "flag --executor=dask: value should be one of <local|ray|slurm>"),
])  # fmt: skip
def test_bin_executor_flags_of_another_executor_are_one_line(args, expected):
    import subprocess
    import sys

    script = str(HERE.parents[1] / "bin" / "run_study")
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode != 0
    assert expected in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_starts_no_run_after_it(study, tmp_path, engine_stages, workers):
    """The first run's disk is full (its metrics.json is /dev/full): no run starts after its
    result, not even the one its worker used to take before the study saw it. (Another worker
    may have finished its run and taken the next before that result: allowed.)"""
    out = tmp_path / "out"
    full = out / "runs" / "ce__tiny__s0" / "train"
    full.mkdir(parents=True)
    (full / "metrics.json").symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        run_study(study, out, executor_options={"workers": workers, "cores": 2},
                  **engine_stages.EngineStages().fns())  # fmt: skip
    assert raised.value.errno == errno.ENOSPC
    started = engine_stages.starts(out)
    ((pid, _, _),) = started["ce__tiny__s0"]
    after = [run for run, starts in started.items() if run != "ce__tiny__s0"
             and any(p == pid for p, _, _ in starts)]  # fmt: skip
    assert after == [], started  # the full disk's worker took no other run
    if workers == 1:
        assert list(started) == ["ce__tiny__s0"]


class _FakeRay:
    """Just what ``RayExecutor.map`` calls, on a cluster of ``cpus`` CPUs; a submitted task's
    result is computed when it is waited for, and the first submitted run's disk is full."""

    class exceptions:  # noqa: N801 - mirrors ray.exceptions
        RayError = RuntimeError

    def __init__(self, cpus):
        self.cpus, self.submitted, self.results = cpus, [], {}

    def cluster_resources(self):
        return {"CPU": float(self.cpus)}

    def remote(self, **options):
        fake = self

        class Remote:
            @staticmethod
            def remote(task):
                from nodulelearn.study.execution import TaskResult

                full = None if fake.submitted else (errno.ENOSPC, "No space left on device", None)
                fake.submitted.append(task.run.id)
                ref = len(fake.submitted)
                fake.results[ref] = TaskResult(task.run.id, "failed" if full else "ran",
                                               disk_error=full)  # fmt: skip
                return ref

        return lambda fn: Remote

    def wait(self, pending, num_returns):
        return pending[:1], pending[1:]

    def get(self, ref):
        return self.results[ref]

    def cancel(self, ref):
        pass


@pytest.mark.parametrize("cpus", [1, 2])
def test_ray_after_a_full_disk_starts_no_more_runs(study, tmp_path, monkeypatch, cpus):
    """Ray starts every queued task as soon as a CPU frees: the executor queues no more tasks
    than the cluster runs at once, so none is started after a full-disk result."""
    from nodulelearn.study import ray_executor
    from nodulelearn.study.execution import RunTask
    from nodulelearn.study.plan import plan_runs

    fake = _FakeRay(cpus)
    monkeypatch.setattr(ray_executor.RayExecutor, "_connect", lambda self: fake)
    monkeypatch.setattr(ray_executor, "check_shared_folder", lambda ray, out: None)
    tasks = [RunTask(study, run, str(tmp_path)) for run in plan_runs(study)]
    assert len(tasks) == 4
    with pytest.raises(OSError) as raised:
        run_study(study, tmp_path, executor=ray_executor.RayExecutor())
    assert raised.value.errno == errno.ENOSPC
    assert fake.submitted == [t.run.id for t in tasks][:cpus]  # the first, and any beside it
