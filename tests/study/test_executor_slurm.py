"""The ``slurm`` executor on a real single-node Slurm (started by .ci/start_slurm): the tiny study
as one job array gives the records of a local launch of the same deterministic study (stand-in
stages, tests/study/engine_stages.py), also when its runs are requeued mid-run."""

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from nodulelearn.study import aggregate_study, load_study, run_study
from nodulelearn.study.identity import TO_RUN, run_states

HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.skipif(shutil.which("slurmctld") is None,
                       reason="slurmctld is absent: Slurm is not installed here "
                              "(.ci/start_slurm installs and starts it)"),  # fmt: skip
]


@pytest.fixture
def slurm(monkeypatch):
    pytest.importorskip("submitit", reason="submitit is not installed (the slurm extra)")
    answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    if answer.returncode != 0 or not answer.stdout.strip():
        pytest.fail("slurmctld is installed but Slurm does not answer (sinfo: "
                    f"{answer.stderr.strip() or answer.stdout.strip()!r}): run .ci/start_slurm")
    # The jobs inherit this environment (sbatch exports it): the stand-ins are importable there.
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(HERE), os.environ.get("PYTHONPATH")])))  # fmt: skip


def test_a_study_as_one_job_array_equals_a_local_launch(slurm, tmp_path, tiny_study_files):
    import engine_stages

    study = load_study(str(tiny_study_files(tmp_path / "spec")))  # 2 losses x 2 seeds
    run_study(study, tmp_path / "reference", **engine_stages.EngineStages().fns())
    out = tmp_path / "out"
    options = {"cpus_per_task": 1, "mem": "1G", "time_min": 10, "poll_s": 1.0}
    outcomes = run_study(study, out, executor="slurm", executor_options=options,
                         **engine_stages.EngineStages().fns())  # fmt: skip
    assert [o.status for o in outcomes] == ["ran"] * 4
    assert engine_stages.records_without_times(out) == engine_stages.records_without_times(
        tmp_path / "reference")
    started = engine_stages.starts(out)
    assert sorted(started) == sorted(o.run_id for o in outcomes)
    assert all(len(s) == 1 for s in started.values())
    assert {t for s in started.values() for _, _, t in s} == {"1"}  # threads = cpus_per_task
    elements = [p.name for p in (out / ".slurm").iterdir() if re.fullmatch(r"\d+_\d+", p.name)]
    assert len(elements) == 4 and len({e.split("_")[0] for e in elements}) == 1  # one array
    assert not aggregate_study(study, out).missing
    again = run_study(study, out, executor="slurm", executor_options=options,
                      **engine_stages.EngineStages().fns())  # fmt: skip
    assert [o.status for o in again] == ["skipped"] * 4  # nothing submitted


def _slurm(*args) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout


def _element(pid: int) -> str:
    """The array element (``<array id>_<index>``) that process ``pid`` runs in."""
    env = dict(item.split("=", 1) for item in
               Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)  # fmt: skip
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


#: How the interrupter requeues the first and the second run that starts: from Slurm's side (as a
#: preemption in REQUEUE mode or a node failure does: SIGTERM, which submitit's jobs ignore, then
#: SIGKILL after KillWait), and by the SIGUSR2 Slurm sends before a time limit (submitit
#: checkpoints and requeues the element itself).
WAYS = (("scontrol", "requeue"), ("scancel", "--signal=USR2"))


def _interrupt(study, out, seen: dict) -> None:
    """Requeues each run of the launch into ``out`` (two) once it has run 1 s, one in each of
    the ``WAYS``, and starts each requeued element once it is pending (Slurm holds a requeued job
    about 2 minutes first). ``seen``: ``elements`` (run -> element), ``ways`` (run -> way),
    ``pending_state`` (run -> its state while pending), ``error``."""
    import engine_stages

    try:
        deadline = time.monotonic() + 90
        first_seen, pending_since, waiting = {}, {}, {}
        elements, ways = seen.setdefault("elements", {}), seen.setdefault("ways", {})
        while len(elements) < len(WAYS) or waiting:
            assert time.monotonic() < deadline, f"requeued: {elements}, not yet running: {waiting}"
            now = time.monotonic()
            for run_id, starts in engine_stages.starts(out).items():
                first_seen.setdefault(run_id, now)
                # After 1 s: the launch (poll_s=0.2) has seen it running.
                if run_id not in elements and now - first_seen[run_id] >= 1.0:
                    elements[run_id] = waiting[run_id] = _element(starts[0][0])
                    ways[run_id] = WAYS[len(ways)]
                    _slurm(*ways[run_id], elements[run_id])
            for run_id, element in list(waiting.items()):
                if run_id not in pending_since:
                    if _slurm("squeue", "-h", "-o", "%t", "-j", element).strip() == "PD":
                        pending_since[run_id] = now
                        states = {run.id: state for run, state, _ in run_states(study, out)}
                        seen.setdefault("pending_state", {})[run_id] = states[run_id]
                elif now - pending_since[run_id] >= 1.0:  # the launch has seen it pending
                    _slurm("scontrol", "update", f"jobid={element}", "starttime=now")
                    del waiting[run_id]
            time.sleep(0.1)
    except BaseException as err:  # noqa: BLE001 - reported by the test
        seen["error"] = err


def test_runs_requeued_mid_run_restart_and_are_recorded_once(slurm, tmp_path, tiny_study_files,
                                                             caplog):  # fmt: skip
    import engine_stages

    study = load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0,))))  # 2 runs
    run_study(study, tmp_path / "reference", **engine_stages.EngineStages().fns())
    out = tmp_path / "out"
    kill_wait = re.search(r"^KillWait\s*=\s*(\d+)", _slurm("scontrol", "show", "config"), re.M)
    # Each start runs this long: the run requeued by Slurm is still running when it is killed.
    stages = engine_stages.EngineStages(pause_s=int(kill_wait.group(1)) + 5.0)
    seen = {}
    interrupter = threading.Thread(target=_interrupt, args=(study, out, seen), daemon=True)
    interrupter.start()
    caplog.set_level(logging.WARNING, logger="nodulelearn.study.slurm_executor")
    options = {"cpus_per_task": 1, "mem": "1G", "time_min": 10, "poll_s": 0.2}
    outcomes = run_study(study, out, executor="slurm", executor_options=options,
                         **stages.fns())  # fmt: skip
    interrupter.join(timeout=60)
    assert "error" not in seen, seen.get("error")
    assert [o.status for o in outcomes] == ["ran", "ran"]  # the launch waited across the requeues
    # While pending, the interrupted run's folder (identity.json, no record.json) is unfinished.
    assert seen["pending_state"] == {o.run_id: TO_RUN for o in outcomes}
    started = engine_stages.starts(out)
    assert {run_id: len({pid for pid, _, _ in s}) for run_id, s in started.items()} == {
        o.run_id: 2 for o in outcomes}  # each started twice, in two processes
    assert engine_stages.records_without_times(out) == engine_stages.records_without_times(
        tmp_path / "reference")  # recorded once each, as a local launch records them
    agg = aggregate_study(study, out)
    assert not agg.missing and sorted(r["run_id"] for r in agg.records) == sorted(started)
    assert sorted(seen["ways"].values()) == sorted(WAYS)
    by_signal = next(seen["elements"][r] for r, way in seen["ways"].items() if way == WAYS[1])
    log = (out / ".slurm" / by_signal / f"{by_signal}_0_log.out").read_text()
    assert "Calling checkpoint method" in log and f"Requeued job {by_signal}" in log
    requeued = [r.getMessage() for r in caplog.records if "was requeued" in r.getMessage()]
    assert sorted(m.split()[1] for m in requeued) == sorted(started)  # the launch said so


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net/tcp and tcp6 write them) of every socket listening
    on ``port`` on this machine."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.append(address)
    return found


def test_the_test_cluster_listens_on_loopback_only(slurm):
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                            timeout=60, check=True).stdout  # fmt: skip
    ports = [int(re.search(rf"^{name}\s*=\s*(\d+)", config, re.M).group(1))
             for name in ("SlurmctldPort", "SlurmdPort")]
    # 127.0.0.1, ::1 and ::ffff:127.0.0.1, as /proc/net/tcp(6) write them
    loopback = {"0100007F", "00000000000000000000000001000000",
                "0000000000000000FFFF00000100007F"}
    for port in ports:
        addresses = _listening(port)
        assert addresses, f"nothing listens on Slurm's port {port}"
        assert set(addresses) <= loopback, (port, addresses)  # not 0.0.0.0 / ::
