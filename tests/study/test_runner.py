"""Running, resuming, sharding and aggregating a study, with stand-ins for training and the
sensitivity analysis (the real ones run in test_end_to_end.py)."""

import csv
import json
import logging

import pytest

from nodulelearn.sensitivity import ANALYSED_MODES
from nodulelearn.study import StudyError, aggregate_study, load_study, run_study
from nodulelearn.study.aggregate import OUTPUTS, read_study_file


def _run(study, out, stages, **kwargs):
    return run_study(
        study, out, train_fn=stages.train, sensitivity_fn=stages.sensitivity,
        encoding_fn=stages, **kwargs,
    )  # fmt: skip


@pytest.fixture
def study(tmp_path, tiny_study_files):
    return load_study(str(tiny_study_files(tmp_path / "spec")))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_runs_every_run_and_aggregates(study, tmp_path, fake_stages):
    out = tmp_path / "out"
    stages = fake_stages()
    outcomes = _run(study, out, stages)
    assert [o.status for o in outcomes] == ["ran"] * 4
    assert len(stages.train_calls) == 4  # 2 losses x 2 seeds
    assert len(stages.sensitivity_calls) == 8  # x 2 test sets (on = "all")
    agg = aggregate_study(study, out)
    assert not agg.missing and len(agg.records) == 4
    for name in OUTPUTS:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_mode & 0o044 == 0o044, "readable by group and others"
    results = _rows(out / "results.csv")
    assert len(results) == 4 * 2
    assert list(results[0])[:8] == [
        "run_id", "loss", "loss_name", "loss_params", "train_dist", "seed", "test_dist", "role"
    ]
    assert {"accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc", "n"} <= set(
        results[0]
    )
    assert {(r["test_dist"], r["role"]) for r in results} == {
        ("tiny_train", "id"), ("tiny_ood", "ood")
    }
    sens = _rows(out / "sensitivity.csv")
    assert len(sens) == 4 * 2 * len(ANALYSED_MODES)  # runs x test sets x modes and nuisance
    assert {r["mode"] for r in sens} == set(ANALYSED_MODES)
    assert {"mode", "reliance", "reliance_ci_low", "baseline_accuracy"} <= set(sens[0])
    assert read_study_file(out).to_dict() == study.to_dict()
    # encoding of every mode of every run, measured on the decorrelated training distribution
    encoding = _rows(out / "encoding.csv")
    assert len(encoding) == 4 * 8 and len(stages.encoding_calls) == 4
    assert {(r["test_dist"], r["role"]) for r in encoding} == {("tiny_train_independent",
                                                               "encoding")}  # fmt: skip
    assert {"mode", "normalized", "normalized_ci_low", "normalized_ci_high"} <= set(encoding[0])
    # recoverability: one refit per OOD test set, in the OOD rows of results.csv
    assert [refs for _, refs in stages.recoverability_calls] == [(
        str(tmp_path / "spec" / "tiny_ood.toml"),)] * 4  # fmt: skip
    for row in results:
        filled = row["recoverability_retrained_accuracy"] != ""
        assert filled == (row["role"] == "ood")
    assert {"recoverability_original_accuracy", "recoverability_retrained_accuracy_ci_low",
            "recoverability_retrained_accuracy_ci_high"} <= set(results[0])  # fmt: skip
    summary = (out / "summary.md").read_text()
    # learned vs used: reliance (ID) beside encoding, per loss and mode
    learned = summary.split("### Learned vs used")[1]
    margin = next(r for r in encoding if r["run_id"] == "ce__tiny__s0" and r["mode"] == "margin")
    other = next(r for r in encoding if r["run_id"] == "ce__tiny__s1" and r["mode"] == "margin")
    mean = (float(margin["normalized"]) + float(other["normalized"])) / 2
    row = next(line for line in learned.splitlines() if line.startswith("| ce | margin | "))
    reliance_cell, encoding_cell = row.split(" | ")[2:4]
    assert " ± " in reliance_cell and encoding_cell.startswith(f"{mean:.2f} ± ")
    # the nuisance pseudo-mode has a reliance (what no mode explains) and no encoding
    nuisance = next(line for line in learned.splitlines() if line.startswith("| ce | nuisance | "))
    assert " ± " in nuisance.split(" | ")[2] and " ± " not in nuisance.split(" | ")[3]
    assert out / "report.html" in agg.written and "Summary" in (out / "report.html").read_text()
    assert "Runs finished: 4 of 4" in summary and "## Trained on `tiny`" in summary
    assert "| tiny_ood (OOD) | supcon | 2 |" in summary


def test_relaunch_does_no_work(study, tmp_path, caplog, fake_stages):
    out = tmp_path / "out"
    _run(study, out, fake_stages())
    records = sorted((out / "runs").glob("*/record.json"))
    mtimes = [p.stat().st_mtime_ns for p in records]

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was redone")

    with caplog.at_level(logging.INFO):
        outcomes = run_study(study, out, train_fn=fail, sensitivity_fn=fail)
    assert [o.status for o in outcomes] == ["skipped"] * 4
    assert [p.stat().st_mtime_ns for p in records] == mtimes
    assert caplog.text.count("skipped (already finished)") == 4


def test_resume_redoes_only_what_is_missing(study, tmp_path, fake_stages):
    out = tmp_path / "out"
    _run(study, out, fake_stages())
    run_dir = out / "runs" / "ce__tiny__s1"
    (run_dir / "record.json").unlink()  # interrupted during the sensitivity analysis
    (run_dir / "sensitivity" / "tiny_ood.json").unlink()
    again = fake_stages()
    outcomes = _run(study, out, again)
    assert [o.run_id for o in outcomes if o.status == "ran"] == ["ce__tiny__s1"]
    assert again.train_calls == []  # its training had finished: reused, not redone
    assert again.encoding_calls == [] and again.recoverability_calls == []  # kept too
    assert again.reused == [str(run_dir / "train")]
    assert [ref.endswith("tiny_ood.toml") for _, ref in again.sensitivity_calls] == [True]
    assert (run_dir / "record.json").is_file()


def test_a_sensitivity_result_of_other_settings_is_recomputed(study, tmp_path, fake_stages):
    out = tmp_path / "out"
    _run(study, out, fake_stages())
    run_dir = out / "runs" / "ce__tiny__s1"
    (run_dir / "record.json").unlink()  # interrupted, then relaunched with other settings
    stale = run_dir / "sensitivity" / "tiny_ood.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "n": 1}))
    again = fake_stages()
    _run(study, out, again)
    assert [ref.endswith("tiny_ood.toml") for _, ref in again.sensitivity_calls] == [True]
    assert json.loads(stale.read_text())["n"] == study.sensitivity.n


def test_shards_merge_to_the_unsharded_study(study, tmp_path, fake_stages):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _run(study, whole, fake_stages())
    aggregate_study(study, whole)
    first = fake_stages()
    _run(study, parts, first, shard=(0, 2))
    assert len(first.train_calls) == 2
    partial = aggregate_study(study, parts)  # what has finished so far, and what is missing
    assert len(partial.missing) == 2 and "2 run(s) missing" in partial.summary
    _run(study, parts, fake_stages(), shard=(1, 2))
    merged = aggregate_study(study, parts)
    assert not merged.missing
    for name in ("results.csv", "sensitivity.csv", "summary.md"):
        assert (parts / name).read_text() == (whole / name).read_text(), name


def test_changed_settings_are_not_mixed(study, tmp_path, fake_stages, tiny_study_files):
    out = tmp_path / "out"
    _run(study, out, fake_stages())
    aggregate_study(study, out)
    results = (out / "results.csv").read_text()
    changed = load_study(str(tiny_study_files(tmp_path / "spec2", budget="epochs = 9")))
    with pytest.raises(StudyError, match="4 run.*other settings.*the train settings.*--overwrite"):
        _run(changed, out, fake_stages())
    assert read_study_file(out).to_dict() == study.to_dict()  # the refusal changed nothing
    with pytest.raises(StudyError, match="4 run.*other settings.*nothing was written"):
        aggregate_study(changed, out)
    assert (out / "results.csv").read_text() == results  # not replaced by an empty table
    stages = fake_stages()
    _run(changed, out, stages, overwrite=True)
    assert len(stages.train_calls) == 4
    assert not aggregate_study(changed, out).stale


def test_a_failing_run_does_not_stop_the_others(study, tmp_path, fake_stages, caplog):
    out = tmp_path / "out"
    stages = fake_stages()

    def train(fields, train_dir, overwrite):
        if "supcon__tiny__s0" in str(train_dir):
            raise FloatingPointError("loss diverged")
        return stages.train(fields, train_dir, overwrite)

    with caplog.at_level(logging.INFO):
        outcomes = run_study(
            study, out, train_fn=train, sensitivity_fn=stages.sensitivity, encoding_fn=stages
        )
    status = {o.run_id: o.status for o in outcomes}
    assert status == {
        "ce__tiny__s0": "ran", "ce__tiny__s1": "ran",
        "supcon__tiny__s0": "failed", "supcon__tiny__s1": "ran",
    }  # fmt: skip
    assert "loss diverged" in next(o.error for o in outcomes if o.status == "failed")
    assert "1 run(s) failed" in caplog.text
    assert aggregate_study(study, out).missing == ["supcon__tiny__s0"]
    retried = _run(study, out, fake_stages())  # relaunching retries it
    assert [o.run_id for o in retried if o.status == "ran"] == ["supcon__tiny__s0"]


def test_an_executor_gets_only_the_unfinished_runs_and_its_results_are_the_outcomes(
        study, tmp_path, fake_stages):  # fmt: skip
    from nodulelearn.study.execution import TaskResult, execute_task
    from nodulelearn.study.executors import Executor

    class Recording(Executor):
        name = "recording"

        def __init__(self):
            self.handed, self.closed = [], False

        def map(self, tasks):
            self.handed += [t.run.id for t in tasks]
            for task in reversed(tasks):  # out of order, as engines finish them
                yield (execute_task(task) if task.run.id != "supcon__tiny__s1"
                       else TaskResult(task.run.id, "failed", "the engine lost it"))

        def close(self):
            self.closed = True

    out = tmp_path / "out"
    _run(study, out, fake_stages(), shard=(0, 2))  # finishes ce__tiny__s0 and supcon__tiny__s0
    executor = Recording()
    outcomes = _run(study, out, fake_stages(), executor=executor)
    assert executor.handed == ["ce__tiny__s1", "supcon__tiny__s1"] and executor.closed
    assert [(o.run_id, o.status) for o in outcomes] == [
        ("ce__tiny__s0", "skipped"), ("ce__tiny__s1", "ran"), ("supcon__tiny__s0", "skipped"),
        ("supcon__tiny__s1", "failed"),
    ]  # fmt: skip
    assert outcomes[3].error == "the engine lost it"
    assert aggregate_study(study, out).missing == ["supcon__tiny__s1"]
