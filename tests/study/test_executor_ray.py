"""The ``ray`` executor on a real Ray cluster on 127.0.0.1: a head and a second node started here
by pid, the second node's raylet killed during a run; and on a private cluster of its own.

Every run must be recorded exactly once, with the records of a local launch of the same
deterministic study (stand-in stages, tests/study/engine_stages.py).
"""

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

# Not imported here: Ray reads its settings (ray_env) once, when first imported.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is not installed (pip install 'nodulelearn[ray]')")

from nodulelearn.study import aggregate_study, load_study, run_study  # noqa: E402
from nodulelearn.study.ray_executor import _private_token  # noqa: E402

HERE = Path(__file__).resolve().parent
# ``ray start`` turns --node-ip-address=127.0.0.1 into the host's address (its servers would
# listen there) unless Ray believes it runs one machine, which forbids a second node: keep the
# loopback address as given.
RAY_START = [sys.executable, "-c", "import ray._private.services as s; "
             "s.resolve_ip_for_localhost = lambda host: host; "
             "from ray.scripts.scripts import main; main()"]  # fmt: skip

#: TensorFlow's C++ log lines (``I0000 00:00:1796517539.486062   23209 port.cc:153] oneDNN ...``,
#: which TF_CPP_MIN_LOG_LEVEL=3 does not hide) and the banner announcing them.
TF_CHATTER = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+\.cc:\d+\]"
                        r"|before absl::InitializeLog\(\) is called")  # fmt: skip


def _workers_chatter(output: str) -> list[str]:
    """The lines of TensorFlow's logs that Ray forwarded from a worker (``(fn pid=N) ...``)."""
    return [line for line in output.splitlines() if " pid=" in line and TF_CHATTER.search(line)]


def _children(pid):
    """The pids of ``pid``'s descendants (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found


def _comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _start(args, log, env):
    env = {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    proc = subprocess.Popen([*RAY_START, "start", *args, "--block"], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip
    deadline = time.monotonic() + 180
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


@pytest.fixture(scope="module")
def ray_env():
    """What every Ray process of this module runs with (the driver: this process) — set before
    Ray is first imported: loopback only, token authentication, the stand-in stages importable,
    a dead node noticed within seconds."""
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        # This process only (not the nodes, see RAY_START): it keeps 127.0.0.1 as given.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _private_token(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
        "RAY_DEDUP_LOGS": "0",
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    sys.path.insert(0, str(HERE))
    yield
    sys.path.remove(str(HERE))
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def ray_cluster(ray_env):
    """A head and a second node on 127.0.0.1, one CPU each; every process killed by pid after."""
    temp = Path(tempfile.mkdtemp(prefix="nlray", dir="/tmp"))  # short: Ray's socket paths
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=80000000",
              "--disable-usage-stats"]  # fmt: skip
    procs, pids = [], set()
    try:
        procs.append(_start(["--head", f"--port={port}", f"--temp-dir={temp}",
                             "--include-dashboard=false", *common], temp / "head.log",
                            os.environ.copy()))  # fmt: skip
        procs.append(_start([f"--address=127.0.0.1:{port}", *common], temp / "node.log",
                            os.environ.copy()))  # fmt: skip
        raylets = [p for p in _children(procs[1].pid) if _comm(p) == "raylet"]
        assert len(raylets) == 1, _children(procs[1].pid)
        pids.update(_children(procs[0].pid) + _children(procs[1].pid))
        yield {"address": f"127.0.0.1:{port}", "raylet": raylets[0],
               "pids": pids}  # fmt: skip
    finally:
        for proc in procs:
            pids.update(_children(proc.pid))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.kill()
            proc.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def study(tmp_path, tiny_study_files):
    return load_study(str(tiny_study_files(tmp_path / "spec")))  # 2 losses x 2 seeds


def test_a_dead_node_s_run_is_retried_and_recorded_once(ray_cluster, study, tmp_path, capfd):
    import engine_stages

    run_study(study, tmp_path / "reference", **engine_stages.EngineStages().fns())
    out = tmp_path / "out"
    stages = engine_stages.EngineStages(pause_s=3.0)
    launched = {}

    def launch():
        try:
            launched["outcomes"] = run_study(study, out, executor="ray", executor_options={
                "address": ray_cluster["address"]}, **stages.fns())  # fmt: skip
        except BaseException as err:  # noqa: BLE001 - reported by the test below
            launched["error"] = err

    thread = threading.Thread(target=launch, daemon=True)
    thread.start()
    deadline = time.monotonic() + 150
    killed = None
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        for run_id, starts in engine_stages.starts(out).items():
            if any(ppid == ray_cluster["raylet"] for _, ppid, _ in starts):
                ray_cluster["pids"].update(_children(ray_cluster["raylet"]))
                os.kill(ray_cluster["raylet"], signal.SIGKILL)  # mid-run: the run sleeps 3 s
                killed = run_id
                break
        time.sleep(0.1)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the launch did not end"
    # TF_CPP_MIN_LOG_LEVEL=2 here (tests/conftest.py), as with --verbosity: TensorFlow's logs are
    # kept, and Ray forwards the workers' ones to the launch (the next test quiets them).
    assert _workers_chatter("".join(capfd.readouterr()))
    assert "error" not in launched, launched.get("error")
    assert killed is not None, "no run was scheduled on the second node"
    assert [o.status for o in launched["outcomes"]] == ["ran"] * 4
    retried = engine_stages.starts(out)[killed]
    parents = sorted(ppid == ray_cluster["raylet"] for _, ppid, _ in retried)
    assert parents == [False, True]  # started on the second node, then again on the head
    assert engine_stages.records_without_times(out) == engine_stages.records_without_times(
        tmp_path / "reference")
    agg = aggregate_study(study, out)
    assert not agg.missing and sorted(r["run_id"] for r in agg.records) == sorted(
        engine_stages.records_without_times(out))  # each run once


def test_a_private_cluster_runs_the_study_and_leaves_nothing(ray_env, tmp_path, tiny_study_files,
                                                             monkeypatch, capfd):  # fmt: skip
    import engine_stages

    study = load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0,))))
    run_study(study, tmp_path / "reference", **engine_stages.EngineStages().fns())
    before = set(Path("/tmp").glob("nodulelearn-ray-*"))
    # As a command line without --verbosity leaves it (cli_env.quiet_tensorflow): TensorFlow's
    # logs off, in the launch and in its workers.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    capfd.readouterr()
    outcomes = run_study(study, tmp_path / "out", executor="ray",
                         **engine_stages.EngineStages().fns())  # fmt: skip
    output = "".join(capfd.readouterr())
    # The stand-ins import TensorFlow in the workers; Ray forwards their output to the launch
    # (the test above sees it there from a launch that keeps TensorFlow's logs on).
    assert not _workers_chatter(output), output[-3000:]
    assert [o.status for o in outcomes] == ["ran", "ran"]
    assert engine_stages.records_without_times(tmp_path / "out") == (
        engine_stages.records_without_times(tmp_path / "reference"))
    assert set(Path("/tmp").glob("nodulelearn-ray-*")) == before  # its temporary folder removed
    assert {t for s in engine_stages.starts(tmp_path / "out").values() for _, _, t in s} == {"1"}
