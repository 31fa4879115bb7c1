"""The per-directory lock: a second process refuses with the holder's pid; a dead holder's lock
is free; the lock file is gone after release."""

import os
import subprocess
import sys
import textwrap

import pytest

from nodulelearn.locks import LOCK_FILE, LockedError, hold_lock


def _hold_in_child(directory, *, exit_how):
    """Starts a child process that takes the lock, says so, then waits or dies."""
    script = textwrap.dedent(f"""
        import os, sys
        from nodulelearn.locks import hold_lock
        with hold_lock({str(directory)!r}, what="run directory"):
            print("held", flush=True)
            sys.stdin.readline()
            if {exit_how!r} == "kill":
                os._exit(137)  # no cleanup at all, like SIGKILL
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_with_the_path_and_the_holders_pid(tmp_path):
    child = _hold_in_child(tmp_path / "run", exit_how="return")
    try:
        with pytest.raises(LockedError) as error, hold_lock(tmp_path / "run", what="run directory"):
            pass
        message = str(error.value)
        assert f"run directory {tmp_path / 'run'} is in use" in message
        assert f"pid {child.pid}" in message and "\n" not in message
    finally:
        child.communicate("\n", timeout=30)
    assert child.returncode == 0
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released and removed
    with hold_lock(tmp_path / "run"):  # free again
        pass


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    child = _hold_in_child(tmp_path / "run", exit_how="kill")
    child.communicate("\n", timeout=30)
    assert child.returncode == 137
    assert (tmp_path / "run" / LOCK_FILE).exists()  # left behind, but nobody holds it
    with hold_lock(tmp_path / "run") as path:
        assert path.read_text() == f"{os.getpid()}\n"


def test_the_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(ValueError, match="inside"), hold_lock(tmp_path):
        raise ValueError("inside")
    with hold_lock(tmp_path):
        pass


def test_a_directory_that_is_a_file_raises_oserror(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError), hold_lock(tmp_path / "file"):
        pass
