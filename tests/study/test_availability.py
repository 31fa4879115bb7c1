"""Availability studies: the curve AUC, the single predictive mode, availability.csv and .png."""

import csv
import json

import pytest

from nodulelearn.study import (
    StudyError,
    aggregate_study,
    availability,
    load_study,
    run_study,
    validate_study,
)
from nodulelearn.study.availability import curve_auc, predictive_mode, val_curve

ONLY = """\
name = "{name}"
image_size = 32
pixel_spacing_mm = 1.5
[modes.{mode}]
alignment = 1.0
"""
STUDY = """\
name = "avail"
kind = "availability"
seeds = [0, 1]
[sensitivity]
n = 32
repeats = 1
on = "id"
[losses.ce]
[losses.supcon]
[train.margin]
dist = "margin_alone.toml"
ood = []
[train.noise]
dist = "noise_alone.toml"
ood = []
"""
# Planted validation curves: noise learned at once, margin late; both end at 0.9.
CURVES = {"noise": [0.9, 0.9, 0.9, 0.9], "margin": [0.5, 0.5, 0.7, 0.9]}


def _write(tmp_path, study=STUDY):
    for mode in ("margin", "noise"):
        (tmp_path / f"{mode}_alone.toml").write_text(ONLY.format(name=f"{mode}_alone", mode=mode))
    path = tmp_path / "avail.toml"
    path.write_text(study)
    return path


def test_curve_auc_is_the_mean_val_accuracy():
    assert curve_auc([0.5, 1.0]) == 0.75
    assert curve_auc([1.0]) == 1.0
    with pytest.raises(ValueError, match="at least one epoch"):
        curve_auc([])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        curve_auc([0.5, 1.2])


def test_val_curve_reads_the_last_phase_with_a_val_accuracy(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(
        "phase,epoch,loss,val_accuracy\npretrain,1,3.0,\npretrain,2,2.5,\n"
        "probe,1,0.7,0.6\nprobe,2,0.5,0.8\n"
    )
    assert val_curve(path) == [0.6, 0.8]
    assert val_curve(tmp_path / "missing.csv") == []
    (tmp_path / "no_val.csv").write_text("phase,epoch,loss\ntrain,1,0.3\n")
    assert val_curve(tmp_path / "no_val.csv") == []


def test_predictive_mode(tmp_path):
    _write(tmp_path)
    assert predictive_mode(str(tmp_path / "noise_alone.toml")) == "noise"
    with pytest.raises(StudyError, match="has 2: margin, size"):
        predictive_mode("margin_size")
    with pytest.raises(StudyError, match="has 0: none"):
        predictive_mode("unpredictive")


def test_a_study_of_two_predictive_modes_is_refused(tmp_path):
    path = _write(tmp_path, STUDY.replace('dist = "noise_alone.toml"', 'dist = "margin_size"'))
    with pytest.raises(StudyError, match=r"\[train.noise\].*has 2"):
        validate_study(load_study(str(path)))


def test_bad_kind(tmp_path):
    path = _write(tmp_path, STUDY.replace('kind = "availability"', 'kind = "avail"'))
    with pytest.raises(StudyError, match="`kind` must be one of compare, availability"):
        load_study(str(path))


def test_availability_outputs(tmp_path, fake_stages):
    study = validate_study(load_study(str(_write(tmp_path))))
    stages = fake_stages()

    def train(fields, train_dir, overwrite):
        metrics = stages.train(fields, train_dir, overwrite)
        mode = "noise" if "noise" in fields["train_dist"] else "margin"
        rows = ["phase,epoch,val_accuracy"] + [
            f"train,{k + 1},{v}" for k, v in enumerate(CURVES[mode])
        ]
        (train_dir / "history.csv").write_text("\n".join(rows) + "\n")
        return metrics

    out = tmp_path / "out"
    run_study(study, out, train_fn=train, sensitivity_fn=stages.sensitivity)
    agg = aggregate_study(study, out)
    assert out / "availability.csv" in agg.written and (out / "availability.png").is_file()
    with open(out / "availability.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:4] == ["loss", "mode", "train_dist", "accuracy"]
    assert {(r["loss"], r["mode"]) for r in rows} == {
        (loss, mode) for loss in ("ce", "supcon") for mode in ("margin", "noise")
    }
    for row in rows:
        assert float(row["curve_auc"]) == pytest.approx(sum(CURVES[row["mode"]]) / 4)
        assert row["seeds"] == "2" and row["epochs"] == "4"
        # accuracy: the mean over the two seeds of the runs' ID accuracy
        accs = []
        for seed in (0, 1):
            record = json.loads(
                (out / "runs" / f"{row['loss']}__{row['train_dist']}__s{seed}" / "record.json")
                .read_text()
            )
            accs.append(record["metrics"][f"{row['mode']}_alone"]["accuracy"])
        assert float(row["accuracy"]) == pytest.approx(sum(accs) / 2)
        assert float(row["accuracy_sd"]) >= 0.0


def test_other_studies_write_no_availability_table(tmp_path, fake_stages, tiny_study_files):
    study = validate_study(load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0,)))))
    stages = fake_stages()
    out = tmp_path / "out"
    run_study(study, out, train_fn=stages.train, sensitivity_fn=stages.sensitivity)
    aggregate_study(study, out)
    assert not (out / "availability.csv").exists()


def test_a_mode_measured_below_0_9_alone_is_named_in_the_log_and_summary(
    tmp_path, fake_stages, tiny_study_files, monkeypatch, caplog
):
    study = validate_study(load_study(str(tiny_study_files(tmp_path / "spec", seeds=(0,)))))
    budget = {"n_train": None, "epochs": None, "batch_size": None, "model": None}

    def measured(accuracy, **changes):
        fields = {"dist": "tiny_train", "mode": "margin", "loss": "ce", "budget": budget,
                  "accuracy": accuracy, "command": "bin/train ... (test)", **changes}
        return availability.Measurement(**fields)

    (note,) = availability.low_availability_notes(study, [measured(0.61), measured(0.97)])
    assert "margin alone reaches only 0.610" in note and "`tiny`" in note
    assert availability.low_availability_notes(study, [measured(0.61, budget={"n_train": 8})]) == []
    assert availability.low_availability_notes(study, [measured(0.61, dist="other")]) == []
    assert availability.low_availability_notes(study, [measured(0.61, mode="noise")]) == []
    monkeypatch.setattr(availability, "MEASURED", (measured(0.55),))
    stages = fake_stages()
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        run_study(study, out, train_fn=stages.train, sensitivity_fn=stages.sensitivity)
    assert "margin alone reaches only 0.550" in caplog.text
    aggregate_study(study, out)
    summary = (out / "summary.md").read_text()
    assert "## Availability warning" in summary and "margin alone reaches only 0.550" in summary


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_every_mode_of_the_presets_redundant_pairs_is_measured_learnable_at_their_budget(preset):
    # The calibration contract: each of the two modes of a redundant pair reaches >= 0.95 ID
    # accuracy alone with ce at the study's own budget, and that measurement is on record.
    from nodulelearn.datasets import load_spec

    study = validate_study(load_study(preset))
    budget = {k: study.budget.get(k) for k in availability.BUDGET_KEYS}
    pairs = 0
    for entry in study.train:
        spec = load_spec(entry.dist)
        predictive = [m for m, s in spec.modes.items() if s.fixed is None and s.alignment == 1.0]
        if len(predictive) != 2:
            continue
        pairs += 1
        for mode in predictive:
            found = [m.accuracy for m in availability.MEASURED
                     if m.dist == spec.name and m.mode == mode and m.loss == "ce"
                     and {k: m.budget.get(k) for k in availability.BUDGET_KEYS} == budget]
            assert found and min(found) >= 0.95, (entry.id, mode, found)
    assert pairs == 2
    assert availability.low_availability_notes(study) == []
