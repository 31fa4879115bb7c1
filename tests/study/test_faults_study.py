"""Faults and bad input around a study: edited distribution files, damaged records, an output
directory that is a file, read-only or full. Training and the analysis are stand-ins
(conftest.FakeStages); the command-line tests run bin/run_study in a subprocess."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nodulelearn.locks import LockedError, hold_lock
from nodulelearn.study import (
    StudyError,
    aggregate_study,
    load_study,
    run_states,
    run_study,
    validate_study,
)

ROOT = Path(__file__).resolve().parents[2]


def _run(study, out, stages, **kwargs):
    return run_study(
        study, out, train_fn=stages.train, sensitivity_fn=stages.sensitivity,
        encoding_fn=stages, **kwargs,
    )  # fmt: skip


@pytest.fixture
def spec_dir(tmp_path, tiny_study_files):
    tiny_study_files(tmp_path / "spec")
    return tmp_path / "spec"


def _study(spec_dir):
    return load_study(str(spec_dir / "study.toml"))


def _edit_alignment(spec_dir):
    path = spec_dir / "tiny_ood.toml"
    text = path.read_text()
    path.write_text(text.replace("[modes.size]\nalignment = 0.0", "[modes.size]\nalignment = -1.0"))
    assert path.read_text() != text


def _bin(*args, code=None, timeout=300):
    """Runs bin/run_study (optionally after ``code``, run in the same interpreter first)."""
    script = str(ROOT / "bin" / "run_study")
    prelude = code or ""
    command = [sys.executable, "-c", f"{prelude}\nimport runpy, sys\nsys.argv = {[script, *args]!r}\n"
               f"runpy.run_path({script!r}, run_name='__main__')"]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip


def test_an_edited_distribution_makes_its_runs_stale(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    _run(_study(spec_dir), out, fake_stages())
    aggregate_study(_study(spec_dir), out)
    results = (out / "results.csv").read_text()
    # A comment or a description changes nothing that is sampled: still finished.
    with open(spec_dir / "tiny_ood.toml", "a") as f:
        f.write('# a comment\n')
    assert {s for _, s, _ in run_states(_study(spec_dir), out)} == {"finished"}

    _edit_alignment(spec_dir)
    study = _study(spec_dir)
    states = run_states(study, out)
    assert {s for _, s, _ in states} == {"stale"}
    assert all(any("tiny_ood.toml" in c for c in changes) for _, _, changes in states)
    stages = fake_stages()
    with pytest.raises(StudyError, match="4 run.*content of .*tiny_ood.toml.*--overwrite"):
        _run(study, out, stages)
    assert stages.train_calls == [] and stages.sensitivity_calls == []
    with pytest.raises(StudyError, match="nothing was written"):
        aggregate_study(study, out)
    assert (out / "results.csv").read_text() == results
    _run(study, out, stages, overwrite=True)
    assert len(stages.train_calls) == 4
    assert {s for _, s, _ in run_states(study, out)} == {"finished"}


def test_an_interrupted_run_is_not_resumed_with_another_distribution(
    spec_dir, tmp_path, fake_stages
):
    out = tmp_path / "out"
    _run(_study(spec_dir), out, fake_stages())
    (out / "runs" / "ce__tiny__s0" / "record.json").unlink()  # killed before its record
    _edit_alignment(spec_dir)
    states = {run.id: state for run, state, _ in run_states(_study(spec_dir), out)}
    assert states["ce__tiny__s0"] == "stale"  # its identity.json says what it was started with
    with pytest.raises(StudyError, match="ce__tiny__s0"):
        _run(_study(spec_dir), out, fake_stages())


def test_a_damaged_record_names_its_file(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    study = _study(spec_dir)
    _run(study, out, fake_stages())
    record = out / "runs" / "supcon__tiny__s1" / "record.json"
    record.write_text(record.read_text()[:40])  # truncated
    for action in (lambda: _run(study, out, fake_stages()), lambda: aggregate_study(study, out)):
        with pytest.raises(StudyError, match=f"{record}.*cannot be read.*delete it"):
            action()
    record.unlink()
    _run(study, out, fake_stages())  # what the message says to do works
    assert {s for _, s, _ in run_states(study, out)} == {"finished"}


def test_a_damaged_sensitivity_result_is_recomputed(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    study = _study(spec_dir)
    _run(study, out, fake_stages())
    run = out / "runs" / "ce__tiny__s0"
    (run / "record.json").unlink()
    (run / "sensitivity" / "tiny_ood.json").write_text('{"modes": [')
    again = fake_stages()
    _run(study, out, again)
    assert [ref.endswith("tiny_ood.toml") for _, ref in again.sensitivity_calls] == [True]
    assert json.loads((run / "sensitivity" / "tiny_ood.json").read_text())["n"] == 32


def test_out_that_is_a_file_is_refused(spec_dir, tmp_path, fake_stages):
    path = tmp_path / "out"
    path.write_text("not a directory")
    with pytest.raises(StudyError, match="exists and is not a directory"):
        _run(_study(spec_dir), path, fake_stages())
    assert path.read_text() == "not a directory"


def test_a_full_disk_stops_the_study_and_keeps_what_finished(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    stages = fake_stages()
    calls = []

    def train(fields, train_dir, overwrite):
        calls.append(train_dir.parent.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(train_dir / "x.h5"))
        return stages.train(fields, train_dir, overwrite)

    with pytest.raises(OSError, match="No space left"):
        run_study(
            _study(spec_dir), out, train_fn=train, sensitivity_fn=stages.sensitivity,
            encoding_fn=stages,
        )  # fmt: skip
    assert len(calls) == 2  # the runs after it were not tried (they would fail the same way)
    states = [s for _, s, _ in run_states(_study(spec_dir), out)]
    assert states == ["finished", "to run", "to run", "to run"]
    _run(_study(spec_dir), out, fake_stages())  # space freed: relaunch finishes the rest
    assert {s for _, s, _ in run_states(_study(spec_dir), out)} == {"finished"}


def test_a_full_disk_in_the_savedmodel_export_stops_the_study_in_one_line(
        spec_dir, tmp_path, fake_stages, caplog):  # fmt: skip
    """TensorFlow's file writers raise ``ResourceExhaustedError``, not ``OSError``: the study
    stops like any full disk (a line naming the file), not as one failed run with a traceback;
    an out-of-memory ``ResourceExhaustedError`` stays one failed run."""
    tf = pytest.importorskip("tensorflow")
    from nodulelearn.run_dir import describe_os_error

    stages = fake_stages()
    calls = []

    def train(fields, train_dir, overwrite):
        calls.append(train_dir.parent.name)
        if len(calls) == 1:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        if len(calls) == 2:
            raise tf.errors.ResourceExhaustedError(None, None, (
                f"{train_dir}/saved_model/variables/variables_temp/part-00000-of-00001.data-"
                "00000-of-00001; No space left on device"))  # fmt: skip
        return stages.train(fields, train_dir, overwrite)

    with pytest.raises(OSError) as raised:
        run_study(_study(spec_dir), tmp_path / "out", train_fn=train,
                  sensitivity_fn=stages.sensitivity, encoding_fn=stages)  # fmt: skip
    assert len(calls) == 2  # the OOM failed its run alone; the full disk stopped the study
    assert raised.value.errno == errno.ENOSPC
    line = describe_os_error(raised.value)
    assert line.startswith(f"{tmp_path / 'out' / 'runs' / calls[1] / 'train' / 'saved_model'}")
    assert "the disk is full" in line and "\n" not in line
    about_it = [r.getMessage() for r in caplog.records if calls[1] in r.getMessage()]
    assert len(about_it) == 1 and "Traceback" not in about_it[0]  # one line, no traceback


def _no_traceback(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if "run_study: error:" in line]


def test_bin_out_is_a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("x")
    lines = _no_traceback(_bin(f"--out={path}", "--study=quick"))
    assert len(lines) == 1 and str(path) in lines[0] and "not a directory" in lines[0]


def test_bin_read_only_out(spec_dir, tmp_path):
    # Running as root ignores file modes, so the read-only file system is simulated: every
    # atomic write fails as it would on one.
    code = textwrap.dedent("""
        import errno, contextlib
        from nodulelearn import atomic_files
        @contextlib.contextmanager
        def refuse(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
            yield
        atomic_files.atomic_path = refuse
    """)
    out = tmp_path / "out"
    lines = _no_traceback(_bin(f"--study={spec_dir / 'study.toml'}", f"--out={out}", code=code))
    assert len(lines) == 1
    assert f"{out / 'study.json'}: the filesystem is read-only; choose a writable directory" \
        in lines[0]


def test_bin_relaunch_refused_for_an_edited_distribution(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    _run(_study(spec_dir), out, fake_stages())
    _edit_alignment(spec_dir)
    proc = _bin(f"--study={spec_dir / 'study.toml'}", f"--out={out}")
    lines = _no_traceback(proc)
    assert len(lines) == 1 and "tiny_ood.toml" in lines[0] and "--overwrite" in lines[0]
    dry = _bin(f"--study={spec_dir / 'study.toml'}", f"--out={out}", "--dry_run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    listed = dict(line.split("\t") for line in dry.stdout.splitlines() if "\t" in line)
    assert len(listed) == 4
    assert all(v.startswith("stale (changed: the content of") for v in listed.values())
    assert all("refused unless --overwrite" in v for v in listed.values())


def test_a_second_process_on_the_same_shard_is_refused(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    stages = fake_stages()
    with hold_lock(out / ".locks" / "shard-0-of-1"):  # as a running `run_study` holds it
        with pytest.raises(LockedError, match=f"shard 0/1 .*{out}.*pid {os.getpid()}"):
            _run(_study(spec_dir), out, stages)
    assert stages.train_calls == [] and not (out / "runs").exists()
    assert [o.status for o in _run(_study(spec_dir), out, stages, shard=(0, 2))] == ["ran"] * 2


def test_overlapping_shards_never_run_one_run_twice(spec_dir, tmp_path, fake_stages):
    out = tmp_path / "out"
    stages = fake_stages()
    busy = out / "runs" / "ce__tiny__s1"
    with hold_lock(busy):  # another sharding's process is running this run
        outcomes = {o.run_id: o for o in _run(_study(spec_dir), out, stages)}
    assert outcomes["ce__tiny__s1"].status == "failed"
    assert "in use by another process" in outcomes["ce__tiny__s1"].error
    assert [o.status for o in outcomes.values()].count("ran") == 3
    assert str(busy / "train") not in stages.train_calls
    again = {o.run_id: o.status for o in _run(_study(spec_dir), out, stages)}
    assert again["ce__tiny__s1"] == "ran"  # freed: the relaunch runs it


def test_bin_second_process_refused(spec_dir, tmp_path):
    out = tmp_path / "out"
    with hold_lock(out / ".locks" / "shard-0-of-1"):
        proc = _bin(f"--study={spec_dir / 'study.toml'}", f"--out={out}")
    lines = _no_traceback(proc)
    assert len(lines) == 1 and f"pid {os.getpid()}" in lines[0] and str(out) in lines[0]


@pytest.mark.parametrize(
    "budget, expected",
    [
        ("image_size = 100000", "Invalid value for `image_size`. Expected an integer in \\[8, "),
        ("n_train = 1000000000", "n_train of run 'ce__tiny__s0'.*GiB of memory.*Lower n"),
        ("n_test = 1000000000", "largest test set of run 'ce__tiny__s0'.*Lower n"),
    ],
)
def test_sizes_beyond_memory_fail_validation(tmp_path, tiny_study_files, budget, expected):
    path = tiny_study_files(tmp_path, seeds=(0,), budget=f"smoke = true\n{budget}")
    with pytest.raises(StudyError, match=expected):
        validate_study(load_study(str(path)))
    ok = tiny_study_files(tmp_path / "ok", seeds=(0,), budget="smoke = true\nimage_size = 48")
    validate_study(load_study(str(ok)))  # sizes within bounds pass
