"""The real study: training, evaluation and sensitivity analysis, on a tiny smoke-sized study.

The study (2 losses x 1 distribution x 1 seed, 32-pixel images, one epoch) runs once per module;
the tests then check its outputs, relaunch it through bin/run_study, and rerun it in two shards.
Its runs run in this process (``runs_per_process=None``): no worker processes to start, which
under pytest-xdist would compete for the cores (launches in workers: test_executors.py).
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodulelearn.sensitivity import ANALYSED_MODES
from nodulelearn.sensitivity.readout import READOUT
from nodulelearn.study import (
    StudyError,
    aggregate_study,
    load_study,
    preset_names,
    run_states,
    run_study,
    validate_study,
)
from nodulelearn.study.aggregate import OUTPUTS
from nodulelearn.study.encoding_stage import ENCODING_FILE, REFERENCE_DIR

ROOT = Path(__file__).resolve().parents[2]
BUDGET = "smoke = true\ndeterministic = true\nbatch_size = 32\nn_test = 64\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_study_files):
    """A tiny study, validated, run and aggregated: (study, study path, out dir, aggregate)."""
    base = tmp_path_factory.mktemp("e2e")
    path = tiny_study_files(base / "spec", seeds=(0,), budget=BUDGET)
    study = validate_study(load_study(str(path)))
    out = base / "out"
    outcomes = run_study(study, out, runs_per_process=None)
    assert [o.status for o in outcomes] == ["ran", "ran"]
    return study, path, out, aggregate_study(study, out)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_and_columns(finished):
    study, _, out, agg = finished
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    results = _rows(out / "results.csv")
    assert [(r["loss"], r["test_dist"], r["role"]) for r in results] == [
        ("ce", "tiny_train", "id"), ("ce", "tiny_ood", "ood"),
        ("supcon", "tiny_train", "id"), ("supcon", "tiny_ood", "ood"),
    ]  # fmt: skip
    for row in results:
        assert 0.0 <= float(row["accuracy"]) <= 1.0 and 0.0 <= float(row["auc"]) <= 1.0
        assert int(row["n"]) == 64
    sens = _rows(out / "sensitivity.csv")
    assert len(sens) == 2 * 2 * len(ANALYSED_MODES)  # runs x test sets x modes (and nuisance)
    reliance = {}
    for row in sens:
        if row["reliance"]:
            key = (row["run_id"], row["test_dist"])
            reliance[key] = reliance.get(key, 0.0) + float(row["reliance"])
    assert reliance and all(v == pytest.approx(1.0) for v in reliance.values())
    assert out.joinpath("heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert "| tiny_ood (OOD) | supcon | 1 |" in agg.summary
    # encoding of every analysed mode on the decorrelated training distribution, and
    # recoverability on the OOD set, measured on the real encoders
    encoding = _rows(out / "encoding.csv")
    assert {r["test_dist"] for r in encoding} == {"tiny_train_independent"}
    assert {r["run_id"] for r in encoding} == {"ce__tiny__s0", "supcon__tiny__s0"}
    scored = [float(r["normalized"]) for r in encoding if r["normalized"]]
    assert scored and all(0.0 <= v <= 1.0 for v in scored)
    for row in results:
        cell = row["recoverability_retrained_accuracy"]
        assert (cell != "") == (row["role"] == "ood")
        if cell:
            assert 0.0 <= float(cell) <= 1.0
    assert "### Learned vs used" in agg.summary and "### Differences between losses" in agg.summary


def test_relaunch_does_no_work(finished):
    _, path, out, _ = finished
    files = sorted(p for p in (out / "runs").rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "run_study"), f"--study={path}", f"--out={out}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("skipped (already finished)") == 2
    assert "0 to run" in proc.stderr
    assert "## Trained on `tiny`" in proc.stdout  # the summary is printed
    assert sorted(p for p in (out / "runs").rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_an_encoding_of_another_read_out_is_measured_again_and_nothing_else(finished, tmp_path):
    study, _, out, _ = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    old, kept = sorted((copy / "runs").iterdir())  # two runs: one measured otherwise
    for path in (old / ENCODING_FILE, old / "record.json"):
        data = json.loads(path.read_text())
        (data["encoding"] if "encoding" in data else data)["readout"] = "logistic-regression-cv"
        path.write_text(json.dumps(data))
    states = {run.id: (state, changes) for run, state, changes in run_states(study, copy)}
    assert states[kept.name] == ("finished", [])
    assert states[old.name][0] == "to run" and "another read-out" in states[old.name][1][0]
    files = sorted(p for p in (copy / "runs").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    outcomes = run_study(study, copy, runs_per_process=None)
    assert {o.run_id: o.status for o in outcomes} == {old.name: "ran", kept.name: "skipped"}
    changed = {p.relative_to(old).as_posix() for p in files if p.read_bytes() != before[p]}
    assert {ENCODING_FILE, "record.json"} <= changed
    # The model, its metrics, the sensitivity and recoverability files are kept (training's
    # config.json records the environment of its last call: see run_dir.py).
    assert sorted(p for p in changed if p.split("/")[0] not in (
        ENCODING_FILE, "record.json", "encoding")) in ([], ["train/config.json"])
    record = json.loads((old / "record.json").read_text())
    assert record["encoding"]["readout"] == READOUT
    # The stages' times are what they took when they ran (--plan_seeds reads them), not ~0 s.
    first = json.loads(before[old / "record.json"])["seconds"]
    assert {k: record["seconds"][k] for k in ("train", "sensitivity")} == {
        k: first[k] for k in ("train", "sensitivity")}
    assert _rows(copy / "encoding.csv") == _rows(out / "encoding.csv")  # the same measurement


def test_two_shards_merge_to_the_unsharded_study(finished, tmp_path):
    study, _, out, _ = finished
    parts = tmp_path / "parts"
    # The untrained reference (a cache shared by a study's runs) is not what sharding changes.
    shutil.copytree(out / REFERENCE_DIR, parts / REFERENCE_DIR)
    first = run_study(study, parts, shard=(0, 2), runs_per_process=None)
    second = run_study(study, parts, shard=(1, 2), runs_per_process=None)
    assert len(first) == len(second) == 1 and first[0].run_id != second[0].run_id
    merged = aggregate_study(study, parts)
    assert not merged.missing
    assert (parts / "results.csv").read_text() == (out / "results.csv").read_text()
    assert (parts / "sensitivity.csv").read_text() == (out / "sensitivity.csv").read_text()


@pytest.mark.parametrize(
    "change, expected",
    [
        (("[losses.supcon]", '[losses.supcon]\nloss = "supcom"'), "unknown loss 'supcom'.*supcon"),
        (("temperature = 0.2", "temprature = 0.2"), "hyperparameter.*temprature.*temperature"),
        (('ood = ["tiny_ood.toml"]', 'ood = ["clinical_typo"]'), "clinical_typo.*margin_size"),
        (("[budget]", "[budget]\nepoch = 3"), "unknown \\[budget\\] key.*epoch.*epochs"),
        (("[budget]", "[budget]\nepochs = -1"), "invalid training config.*epochs"),
    ],
)
def test_bad_study_files_name_the_problem(tmp_path, tiny_study_files, change, expected):
    path = tiny_study_files(tmp_path, seeds=(0,), budget=BUDGET)
    path.write_text(path.read_text().replace(*change, 1))
    with pytest.raises(StudyError, match=expected):
        validate_study(load_study(str(path)))


def test_bad_study_on_the_command_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "run_study"), "--study=qiuck", f"--out={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Unknown study 'qiuck'" in proc.stderr
    assert f"Valid presets: {', '.join(preset_names())}." in proc.stderr
    # A mistake in the study is one line at the end, not buried under the flags' help.
    assert proc.stderr.strip().splitlines()[-1].startswith("run_study: error: Unknown study")
    assert "--aggregate_only" not in proc.stderr, proc.stderr
