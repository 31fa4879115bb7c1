"""bin/run_study --plan_seeds and --seeds=N: planning a study's seeds from its finished runs, and
extending it in place. Training and the analyses are stand-ins (conftest.FakeStages), also in the
bin/run_study subprocess, where a prelude routes run_study through them."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nodulelearn.study import load_study, run_study, validate_study

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMPARE = """
[[compare]]
a = "supcon"
b = "ce"
metric = "accuracy"
train = "tiny"
test = "tiny_ood"
delta = 0.1
"""
# In the subprocess: every run_study call uses stand-in stages and counts the runs it trains.
STAND_INS = textwrap.dedent(f"""
    import sys
    sys.path.insert(0, {str(HERE)!r})
    from conftest import FakeStages
    import nodulelearn.study as study_lib
    stages, real = FakeStages(), study_lib.run_study
    def stand_in(*args, **kwargs):
        kwargs.pop("executor", None)  # the default local executor runs stand-ins in-process
        try:
            return real(*args, train_fn=stages.train, sensitivity_fn=stages.sensitivity,
                        encoding_fn=stages, **kwargs)
        finally:
            print("TRAINED", sorted(p.split("/")[-2] for p in stages.train_calls))
    study_lib.run_study = stand_in
""")


def _bin(*args, stand_ins=True):
    script = str(ROOT / "bin" / "run_study")
    prelude = STAND_INS if stand_ins else ""
    command = [sys.executable, "-c", f"{prelude}\nimport runpy, sys\nsys.argv = {[script, *args]!r}\n"
               f"runpy.run_path({script!r}, run_name='__main__')"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip


def _error_line(proc):
    """The one line of a refused command (no traceback)."""
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # TensorFlow's C++ logging (e.g. no CUDA device) is not the command's own output.
    lines = [line for line in proc.stderr.splitlines() if "run_study: error: " in line]
    assert len(lines) == 1 and lines[0].startswith("run_study: error: "), proc.stderr[-3000:]
    return lines[0]


def _records(out):
    return {p.parent.name: p.read_bytes() for p in sorted((out / "runs").glob("*/record.json"))}


@pytest.fixture
def finished(tmp_path, tiny_study_files, fake_stages):
    """A finished quick-style study of 4 seeds with one primary comparison: (study file, out)."""
    path = tiny_study_files(tmp_path / "spec", seeds=(0, 1, 2, 3))
    path.write_text(path.read_text() + COMPARE)
    stages = fake_stages()
    out = tmp_path / "finished"
    run_study(validate_study(load_study(str(path))), out, train_fn=stages.train,
              sensitivity_fn=stages.sensitivity, encoding_fn=stages)  # fmt: skip
    assert len(stages.train_calls) == 8
    return path, out


def test_plan_seeds_prints_the_plan_and_runs_nothing(finished):
    from nodulelearn.study.aggregate import read_study_file
    from nodulelearn.study.seed_plan import plan_seeds, plan_text

    _, out = finished
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = _bin(f"--out={out}", "--plan_seeds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TRAINED" not in proc.stdout  # run_study was never called
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    plan = plan_seeds(read_study_file(out), out)
    assert plan_text(plan) in proc.stdout  # the library's plan, as it words it
    row = next(line for line in proc.stdout.splitlines() if line.startswith("supcon − ce"))
    cells = row.split("\t")
    assert "tiny_ood" in cells[0] and cells[1] == "0.1" and cells[2] == "4"
    assert float(cells[3]) == pytest.approx(plan.plans[0].sd, abs=1e-4) and plan.plans[0].sd > 0
    assert int(cells[4]) >= 2 and int(cells[5]) >= 2
    assert "Holm-adjusted level 0.05" in proc.stdout
    assert "seeds suffice" in proc.stdout or "runs), about " in proc.stdout  # measured times


def test_seeds_runs_only_the_new_seeds_and_keeps_the_finished_runs(finished):
    _, out = finished
    kept = _records(out)
    assert len(kept) == 8
    proc = _bin(f"--out={out}", "--seeds=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = next(line for line in proc.stdout.splitlines() if line.startswith("TRAINED"))
    assert trained == "TRAINED " + str(sorted(f"{loss}__tiny__s{s}" for loss in ("ce", "supcon")
                                              for s in (4, 5)))  # fmt: skip
    after = _records(out)
    assert {k: after[k] for k in kept} == kept  # byte-identical
    assert len(after) == 12
    assert json.loads((out / "study.json").read_text())["seeds"] == [0, 1, 2, 3, 4, 5]
    assert "Primary comparisons" in (out / "summary.md").read_text()


def test_plan_of_a_study_without_comparisons_or_finished_seeds_is_one_line(
        tmp_path, tiny_study_files, fake_stages):
    plain = tiny_study_files(tmp_path / "plain", seeds=(0, 1))
    stages = fake_stages()
    run_study(validate_study(load_study(str(plain))), tmp_path / "plain_out",
              train_fn=stages.train, sensitivity_fn=stages.sensitivity, encoding_fn=stages)
    line = _error_line(_bin(f"--out={tmp_path / 'plain_out'}", "--plan_seeds", stand_ins=False))
    assert "declares no primary comparison" in line
    # Declared, but only one seed finished: no paired sd to plan from.
    one = tiny_study_files(tmp_path / "one", seeds=(0,))
    one.write_text(one.read_text() + COMPARE)
    run_study(validate_study(load_study(str(one))), tmp_path / "one_out", train_fn=stages.train,
              sensitivity_fn=stages.sensitivity, encoding_fn=stages)  # fmt: skip
    line = _error_line(_bin(f"--out={tmp_path / 'one_out'}", "--plan_seeds", stand_ins=False))
    assert "two finished paired seeds" in line


@pytest.mark.parametrize("args, expected", [
    (["--plan_seeds"], "--plan_seeds needs --out"),
    (["--plan_seeds", "--seeds=5", "--out={out}"], "--plan_seeds does not go with --seeds"),
    (["--plan_seeds", "--out={out}/nowhere"], "holds no study.json"),
    (["--seeds=2", "--out={out}"], r"Expected an integer >= 4 .*Received: seeds=2"),
    # Refused before the list of seeds is built (it used to hang building 10^11 seeds).
    (["--seeds=100000000000", "--out={out}", "--dry_run"],
     r"Expected an integer >= 4 .* and <= \d+ \(seeds run from 0 to \d+\)\. "
     r"Received: seeds=100000000000"),
])  # fmt: skip
def test_bad_plan_and_seeds_flags_are_one_line(finished, args, expected):
    _, out = finished
    before = _records(out)
    line = _error_line(_bin(*[a.format(out=out) for a in args], stand_ins=False))
    assert __import__("re").search(expected, line), line
    assert _records(out) == before


def test_fewer_seeds_than_a_study_file_is_a_pilot_that_never_drops_a_finished_seed(finished,
                                                                                 tmp_path):
    path, out = finished  # the study file has seeds 0-3; out ran all four
    pilot = tmp_path / "pilot"
    proc = _bin(f"--study={path}", f"--out={pilot}", "--seeds=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((pilot / "study.json").read_text())["seeds"] == [0, 1]
    assert sorted(_records(pilot)) == [f"{loss}__tiny__s{s}" for loss in ("ce", "supcon")
                                       for s in (0, 1)]  # fmt: skip
    # Relaunched with the same flags: the pilot's own seeds, nothing to train.
    again = _bin(f"--study={path}", f"--out={pilot}", "--seeds=2")
    assert again.returncode == 0 and "TRAINED []" in again.stdout, again.stderr[-3000:]
    # One seed in the pilot's folder, or two in the four-seed folder, would drop finished seeds.
    for folder, count, kept in ((pilot, 1, "[0, 1]"), (out, 2, "[0, 1, 2, 3]")):
        before = _records(folder)
        line = _error_line(_bin(f"--study={path}", f"--out={folder}", f"--seeds={count}",
                                stand_ins=False))  # fmt: skip
        assert f"Expected an integer >= {len(before) // 2} (the study's seeds {kept} are kept: " \
               "its output folder holds them)" in line, line
        assert _records(folder) == before


def test_a_pilot_never_drops_seeds_the_study_file_lacks_and_needs_a_readable_record(
        finished, tmp_path):
    from nodulelearn.study.seed_plan import with_seeds

    path, out = finished
    study = validate_study(load_study(str(path)))  # seeds 0-3
    with pytest.raises(ValueError, match=r"holds seeds \[4, 5\] that the study 'tiny' does not"):
        with_seeds(study, 4, recorded=(0, 1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"holds seeds \[7\]"):
        with_seeds(study, 2, recorded=(7,))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "study.json").write_text('{"name": "tiny", "seeds": [0')
    line = _error_line(_bin(f"--study={path}", f"--out={damaged}", "--seeds=2", "--dry_run",
                            stand_ins=False))  # fmt: skip
    assert "needs the seeds" in line and "cannot be read" in line, line
    # Not shrinking, the folder's record is not needed: the same flags with --seeds=5 list runs.
    proc = _bin(f"--study={path}", f"--out={damaged}", "--seeds=5", "--dry_run",
                stand_ins=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
