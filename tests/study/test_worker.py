"""The child processes that run a study's runs: replaced every few runs, errors and crashes passed
back, killed with their parent."""

import operator
import os
import subprocess
import sys
import textwrap
import time

import pytest

from nodulelearn.study.worker import RunCrashedError, RunWorker


def test_a_fresh_child_every_runs_per_process_calls():
    with RunWorker(runs_per_process=2) as worker:
        pids = [worker.run(os.getpid) for _ in range(5)]
    assert os.getpid() not in pids
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert len(set(pids)) == 3


def test_errors_come_back_with_their_type_and_a_crash_fails_only_its_call():
    with RunWorker(runs_per_process=4) as worker:
        assert worker.run(operator.add, 2, 3) == 5
        with pytest.raises(ZeroDivisionError):
            worker.run(operator.truediv, 1, 0)
        first = worker.run(os.getpid)
        with pytest.raises(RunCrashedError, match="ended without a result"):
            worker.run(os.abort)  # SIGABRT: the child dies as in a segmentation fault
        after = worker.run(os.getpid)
    assert after != first  # a fresh child for the call after the crash


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_runs_per_process_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=f"Expected a positive integer. Received: "
                                         f"runs_per_process={bad!r}"):
        RunWorker(bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_dies_with_its_parent(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, time
        from nodulelearn.study.worker import RunWorker
        worker = RunWorker(2)  # the same child for both calls
        open({str(pid_file)!r}, "w").write(str(worker.run(os.getpid)))
        worker.run(time.sleep, 600)
    """)])
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        child = int(pid_file.read_text())
        os.kill(child, 0)  # alive, sleeping in its call
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child)
    finally:
        parent.kill()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by init) counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
