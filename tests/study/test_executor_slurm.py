"""The ``slurm`` executor on a real single-node Slurm (started by .ci/start_slurm): the tiny study
as one job array gives the records of a local launch of the same deterministic study (stand-in
stages, tests/study/engine_stages.py)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nodulelearn.study import aggregate_study, load_study, run_study

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
