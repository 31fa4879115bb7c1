"""Sweeps: parsing, grid expansion, the specs of each point, planning, fingerprints, resume,
sharding and the sweep outputs, with stand-ins for training and the sensitivity analysis."""

import csv
import json
import math

import numpy as np
import pytest

from nodulelearn.datasets import load_spec
from nodulelearn.study import (
    StudyError,
    aggregate_study,
    load_study,
    plan_runs,
    run_study,
    shard_runs,
    validate_study,
)
from nodulelearn.study.aggregate import read_study_file
from nodulelearn.study.plan import train_config_fields
from nodulelearn.study.runner import run_fingerprint, run_states
from nodulelearn.study.sweep import expand_study, grid, point_id
from nodulelearn.study.sweep_outputs import bias_from_accuracy, shortcut_bias

SWEEP_1D = """
[train.tiny.sweep]
"modes.size.alignment" = [0.0, 0.5, 1.0]
"""
SWEEP_2D = """
[train.tiny.sweep]
"modes.size.visibility" = [0.5, 1.0]
"modes.size.alignment" = [0.0, 1.0]
"""


def _study_file(tmp_path, tiny_study_files, sweep, *, seeds=(0, 1), extra_ood=True):
    path = tiny_study_files(tmp_path / "spec", seeds=seeds, conflict=extra_ood)
    path.write_text(path.read_text() + sweep)
    return path


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _run(study, out, stages, **kwargs):
    return run_study(study, out, train_fn=stages.train, sensitivity_fn=stages.sensitivity, **kwargs)


def test_grid_and_point_ids():
    sweep = (("a.alignment", (0.0, 1.0)), ("b", (2, 3, 4)))
    points = grid(sweep)
    assert len(points) == 6
    assert points[0] == (("a.alignment", 0.0), ("b", 2)) and points[1][1] == ("b", 3)
    assert point_id("x", points[-1]) == "x@a.alignment=1,b=4"
    assert point_id("x", (("m", 0.25),)) == "x@m=0.25"
    assert grid(()) == []


def test_sweep_table_round_trips_and_plans_every_point(tmp_path, tiny_study_files):
    study = load_study(str(_study_file(tmp_path, tiny_study_files, SWEEP_1D)))
    (entry,) = study.train
    assert entry.sweep == (("modes.size.alignment", (0.0, 0.5, 1.0)),)
    assert load_study(str(_study_file(tmp_path, tiny_study_files, SWEEP_1D))).to_dict() == (
        study.to_dict()
    )
    runs = plan_runs(study)
    assert len(runs) == 2 * 3 * 2  # losses x points x seeds
    assert "ce__tiny@modes.size.alignment=0.5__s1" in {r.id for r in runs}
    # Not expanded: the points have no spec files, so no training config (never the base's).
    with pytest.raises(StudyError, match="not expanded"):
        train_config_fields(study, runs[0])


@pytest.mark.parametrize(
    "sweep, expected",
    [
        ('[train.tiny.sweep]\n"modes.size.alignment" = []\n', "non-empty list"),
        ('[train.tiny.sweep]\n"modes.size.alignment" = 0.5\n', "non-empty list"),
        ('[train.tiny.sweep]\n"modes.size.alignment" = [0.5, 0.5]\n', "duplicate"),
        ('[train.tiny.sweep]\n"modes.size.alignment" = [nan]\n', "finite"),
        ('[train.tiny.sweep]\n"modes..x" = [1]\n', "dotted spec path"),
        ('[train.tiny.sweep]\na = [1]\nb = [1]\nc = [1]\n', "at most 2"),
        ('[train.tiny]\nsweep = 3\n', "must be a table"),
    ],
)
def test_bad_sweep_tables(tmp_path, tiny_study_files, sweep, expected):
    path = tiny_study_files(tmp_path / "spec")
    text = path.read_text()
    if sweep.startswith("[train.tiny]\n"):  # a key of the existing table
        text = text.replace('ood = ["tiny_ood.toml"]', 'ood = ["tiny_ood.toml"]\nsweep = 3')
    else:
        text += sweep
    path.write_text(text)
    with pytest.raises(StudyError, match=expected):
        load_study(str(path))


@pytest.mark.parametrize(
    "sweep, expected",
    [
        ('"modes.size.alignment" = [0.0, 1.5]', r"\[-1, 1\]"),
        ('"modes.size.visibility" = [1.5]', r"\[0, 1\]"),
        ('"modes.sise.alignment" = [0.0]', "modes.size.alignment, modes.size.visibility"),
        ('"modes.size.colour" = [0.0]', "Expected a sweepable spec path"),
    ],
)
def test_bad_points_fail_at_validation(tmp_path, tiny_study_files, sweep, expected):
    path = _study_file(tmp_path, tiny_study_files, f"\n[train.tiny.sweep]\n{sweep}\n")
    with pytest.raises(StudyError, match=expected):
        validate_study(load_study(str(path)))


def test_a_bad_core_mode_is_named(tmp_path, tiny_study_files):
    path = _study_file(tmp_path, tiny_study_files, SWEEP_1D)
    path.write_text(path.read_text().replace("[train.tiny]\n", '[train.tiny]\ncore = "margn"\n'))
    with pytest.raises(StudyError, match="Valid modes: margin"):
        validate_study(load_study(str(path)))


def test_points_write_their_specs_and_ood_sets_keep_their_alignments(tmp_path, tiny_study_files):
    sweep = (
        '\n[train.tiny.sweep]\n"modes.size.alignment" = [0.5]\n"modes.size.visibility" = [0.25]\n'
        '"malignant_fraction" = [0.4]\n'
    )
    path = _study_file(tmp_path, tiny_study_files, sweep)
    with pytest.raises(StudyError, match="at most 2"):
        load_study(str(path))
    path.write_text(path.read_text().replace('"malignant_fraction" = [0.4]\n', ""))
    study = validate_study(load_study(str(path)))
    out = tmp_path / "out"
    expanded = expand_study(study, out)
    (point,) = expanded.train
    assert point.id == "tiny@modes.size.alignment=0.5,modes.size.visibility=0.25"
    assert point.materialised and point.base == "tiny"
    train, ood, conflict = (load_spec(ref) for ref in (point.dist, *point.ood))
    assert train.modes["size"].alignment == 0.5  # the swept alignment: training set only
    assert ood.modes["size"].alignment == 0.0 and conflict.modes["size"].alignment == -1.0
    for spec in (train, ood, conflict):  # an availability control follows into every test set
        assert spec.modes["size"].visibility == 0.25
        assert spec.modes["margin"].alignment == 1.0 and spec.image_size == 32
    # Expanding again leaves the files alone; the study as written is what study.json holds.
    mtimes = [p.stat().st_mtime_ns for p in sorted((out / "specs").rglob("*.toml"))]
    assert len(mtimes) == 3
    assert expand_study(study, out).train == expanded.train
    assert [p.stat().st_mtime_ns for p in sorted((out / "specs").rglob("*.toml"))] == mtimes
    assert expanded.to_dict() == study.to_dict()
    assert expand_study(expanded, out) is expanded


def test_the_class_balance_stays_the_ood_sets_own(tmp_path, tiny_study_files):
    sweep = '\n[train.tiny.sweep]\n"malignant_fraction" = [0.25]\n'
    study = validate_study(load_study(str(_study_file(tmp_path, tiny_study_files, sweep))))
    (point,) = expand_study(study, tmp_path / "out").train
    assert [load_spec(r).malignant_fraction for r in (point.dist, *point.ood)] == [0.25, 0.5, 0.5]


def test_fingerprints_hold_the_swept_values(tmp_path, tiny_study_files):
    study = validate_study(load_study(str(_study_file(tmp_path, tiny_study_files, SWEEP_1D))))
    expanded = expand_study(study, tmp_path / "out")
    runs = [r for r in plan_runs(expanded) if r.loss.id == "ce" and r.seed == 0]
    prints = [run_fingerprint(expanded, r) for r in runs]
    assert len({json.dumps(p, sort_keys=True) for p in prints}) == 3
    for run, fingerprint in zip(runs, prints, strict=True):
        assert load_spec(fingerprint["train"]["train_dist"]).modes["size"].alignment == dict(
            run.train.point
        )["modes.size.alignment"]


def test_sweep_runs_resumes_and_writes_its_outputs(tmp_path, tiny_study_files, fake_stages):
    study = validate_study(load_study(str(_study_file(tmp_path, tiny_study_files, SWEEP_1D))))
    out = tmp_path / "out"
    stages = fake_stages()
    assert [o.status for o in _run(study, out, stages)] == ["ran"] * 12
    assert [o.status for o in _run(study, out, fake_stages())] == ["skipped"] * 12
    agg = aggregate_study(study, out)
    assert not agg.missing and len(agg.records) == 12
    assert read_study_file(out).to_dict() == study.to_dict()
    results = _rows(out / "results.csv")
    assert len(results) == 12 * 3
    assert {r["modes.size.alignment"] for r in results} == {"0.0", "0.5", "1.0"}
    assert {r["train_base"] for r in results} == {"tiny"}
    sens = _rows(out / "sensitivity.csv")
    assert "modes.size.alignment" in sens[0] and "reliance" in sens[0]
    rows = _rows(out / "sweep.csv")
    assert len(rows) == 12 * 3  # a row per run x test set
    assert list(rows[0])[:4] == ["run_id", "loss", "train_dist", "modes.size.alignment"]
    for row in rows:
        assert row["train_dist"] == "tiny"
        assert (row["core"], row["shortcut"]) == ("margin", "size")  # inferred from the sweep
        if row["test_dist"] == "tiny_conflict":
            assert float(row["shortcut_bias"]) == pytest.approx(1 - 2 * float(row["accuracy"]))
        else:
            assert row["shortcut_bias"] == ""
        assert 0.0 <= float(row["reliance_size"]) <= 1.0
        # the nuisance pseudo-mode has its columns too (what no mode explains)
        assert 0.0 < float(row["reliance_nuisance"]) <= float(row["reliance_nuisance_hi"])
    assert (out / "curves.png").stat().st_size > 0
    assert not (out / "bias.png").exists()  # a 1-D sweep has no grid


def test_run_states_of_a_sweep_say_what_a_launch_would_do(tmp_path, tiny_study_files, fake_stages):
    # What --dry_run prints: it needs the points expanded, as a launch expands them.
    study = validate_study(load_study(str(_study_file(tmp_path, tiny_study_files, SWEEP_1D))))
    out = tmp_path / "out"
    states = run_states(study, out)
    assert len(states) == 12 and {state for _, state, _ in states} == {"to run"}
    assert all("@modes.size.alignment=" in run.id for run, _, _ in states)
    _run(study, out, fake_stages(), shard=(0, 2))
    states = dict((run.id, state) for run, state, _ in run_states(study, out))
    assert sorted(states.values()) == ["finished"] * 6 + ["to run"] * 6


def test_sweep_shards_merge_and_edited_points_are_not_mixed(tmp_path, tiny_study_files,
                                                             fake_stages):
    path = _study_file(tmp_path, tiny_study_files, SWEEP_1D, seeds=(0,))
    study = validate_study(load_study(str(path)))
    runs = plan_runs(study)
    shards = [shard_runs(runs, i, 4) for i in range(4)]
    assert sorted(r.id for s in shards for r in s) == sorted(r.id for r in runs)
    out = tmp_path / "out"
    for i in range(4):
        _run(study, out, fake_stages(), shard=(i, 4))
    whole = tmp_path / "whole"
    _run(study, whole, fake_stages())
    aggregate_study(study, out)
    aggregate_study(study, whole)
    # The stand-in's metrics depend on the spec files' paths, which differ: compare the keys.
    keys = ("run_id", "loss", "train_dist", "modes.size.alignment", "seed", "test_dist", "role")

    def table(folder):
        return [tuple(r[k] for k in keys) for r in _rows(folder / "sweep.csv")]

    assert table(out) == table(whole) and len(table(out)) == 2 * 3 * 3
    # The base distribution edited: the same point ids now mean other data; refused, not mixed.
    train_file = tmp_path / "spec" / "tiny_train.toml"
    train_file.write_text(train_file.read_text().replace("pixel_spacing_mm = 1.5",
                                                         "pixel_spacing_mm = 1.25"))
    edited = validate_study(load_study(str(path)))
    with pytest.raises(StudyError, match="other settings"):
        _run(edited, out, fake_stages())


def test_2d_sweep_writes_the_bias_heatmap(tmp_path, tiny_study_files, fake_stages):
    path = _study_file(tmp_path, tiny_study_files, SWEEP_2D, seeds=(0,))
    study = validate_study(load_study(str(path)))
    out = tmp_path / "out"
    _run(study, out, fake_stages())
    agg = aggregate_study(study, out)
    assert len(agg.records) == 2 * 4
    rows = _rows(out / "sweep.csv")
    assert {(r["modes.size.visibility"], r["modes.size.alignment"]) for r in rows} == {
        ("0.5", "0.0"), ("0.5", "1.0"), ("1.0", "0.0"), ("1.0", "1.0")
    }
    conflict = [r for r in rows if r["test_dist"] == "tiny_conflict"]
    assert len(conflict) == 8 and all(-1 <= float(r["shortcut_bias"]) <= 1 for r in conflict)
    assert (out / "bias.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    summary = (out / "summary.md").read_text()
    section = summary[summary.index("## Shortcut bias over the sweep of `tiny`"):]
    losses = [e.id for e in study.losses]
    assert f"| modes.size.visibility | modes.size.alignment | {' | '.join(losses)} |" in section
    for vis, align in (("0.5", "0"), ("0.5", "1"), ("1", "0"), ("1", "1")):
        assert f"\n| {vis} | {align} | " in section
    assert f"| {losses[0]} − {losses[1]} | " in section  # the losses compared over the sweep


def test_losses_compared_over_the_whole_sweep_on_planted_biases(tmp_path, tiny_study_files):
    from nodulelearn.study.sweep_outputs import bias_comparisons

    path = _study_file(tmp_path, tiny_study_files, SWEEP_2D, seeds=(0, 1, 2))
    study = expand_study(validate_study(load_study(str(path))), tmp_path / "out")
    a, b = (e.id for e in study.losses)
    rows = []
    for entry in (e for e in study.train if e.point):
        point = dict(entry.point)
        for seed in (0, 1, 2):
            shift = 0.1 + 0.01 * seed  # loss a follows the shortcut a little more, every time
            for loss, bias in ((a, -0.9 + shift), (b, -0.9)):
                rows.append({"train_dist": "tiny", "loss": loss, "seed": seed, **point,
                             "shortcut_bias": bias})
    rows.append({**rows[0], "shortcut_bias": ""})  # a test set that is not a conflict set
    (d,) = bias_comparisons(study, rows)["tiny"]
    assert (d.a, d.b, d.k) == (a, b, 12)  # 4 points x 3 seeds
    assert d.diff == pytest.approx(0.11) and d.lo < 0.11 < d.hi
    assert d.p == pytest.approx(2 / 2**12) and d.p_holm == pytest.approx(d.p)


def test_shortcut_bias_on_planted_predictions():
    core = np.array([0, 1, 0, 1, 0, 1, 1, 0])
    shortcut = 1 - core
    assert shortcut_bias(shortcut, core, shortcut) == 1.0  # always the shortcut
    assert shortcut_bias(core, core, shortcut) == -1.0  # always the core
    half = np.where(np.arange(8) < 6, shortcut, core)  # 6 of 8 follow the shortcut
    assert shortcut_bias(half, core, shortcut) == pytest.approx(6 / 8 - 2 / 8)
    # Samples where core and shortcut agree are left out.
    agree_core = np.array([1, 1, 1, 1])
    pred = np.array([1, 0, 0, 1])
    assert shortcut_bias(pred, agree_core, np.array([1, 1, 0, 0])) == pytest.approx(
        0.5 - 0.5
    )
    assert shortcut_bias([1, 0], [0, 1], [1, 1]) == 1.0  # sample 1 agrees; sample 0: shortcut
    assert shortcut_bias([0, 0], [0, 1], [1, 1]) == -1.0  # sample 0 follows the core
    with pytest.raises(ValueError, match="none do"):
        shortcut_bias([0, 1], [0, 1], [0, 1])
    with pytest.raises(ValueError, match="one entry per sample"):
        shortcut_bias([0, 1, 1], [0, 1], [1, 0])


def test_bias_from_accuracy_matches_the_planted_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    pred = np.where(rng.random(200) < 0.3, labels, 1 - labels)
    acc = float(np.mean(pred == labels))
    # Core alignment +1: the label is the core's class, the shortcut's is the other one.
    assert bias_from_accuracy(acc, 1.0) == pytest.approx(shortcut_bias(pred, labels, 1 - labels))
    # Shortcut alignment +1: the label is the shortcut's class.
    assert bias_from_accuracy(acc, -1.0) == pytest.approx(shortcut_bias(pred, 1 - labels, labels))
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        bias_from_accuracy(0.5, 0.0)
    assert math.isclose(bias_from_accuracy(0.5, 1.0), 0.0)


def test_curve_error_bars_are_never_negative():
    """A bootstrap interval of the reliance may lie beside the mean; bars stay >= 0."""
    from nodulelearn.study.sweep_outputs import _line

    class Axis:
        def errorbar(self, xs, ys, yerr, **kwargs):
            self.xs, self.ys, self.yerr = xs, ys, yerr

    rows = [{"x": 0.0, "reliance_size": 0.5, "reliance_size_lo": 0.55, "reliance_size_hi": 0.6}]
    axis = Axis()
    _line(axis, [0.0], [0.0], rows, "x", "reliance_size", "", "-o", "size")
    assert axis.ys == [0.5] and axis.yerr[0] == [0.0]
    assert axis.yerr[1] == [pytest.approx(0.1)]


def test_a_sweep_moved_to_another_folder_keeps_its_finished_runs(tmp_path, tiny_study_files,
                                                                 fake_stages):
    # A run's identity is what its distributions sample, not where their files lie: a study
    # copied from a cluster (its point specs in <out>/specs with it) aggregates and resumes.
    import shutil

    path = _study_file(tmp_path / "here", tiny_study_files, SWEEP_2D, seeds=(0,))
    study = validate_study(load_study(str(path)))
    _run(study, tmp_path / "here" / "out", fake_stages())
    shutil.move(tmp_path / "here", tmp_path / "there")
    out = tmp_path / "there" / "out"
    moved = validate_study(load_study(str(tmp_path / "there" / "spec" / path.name)))
    assert {state for _, state, _ in run_states(moved, out)} == {"finished"}
    assert [o.status for o in _run(moved, out, fake_stages())] == ["skipped"] * 8
    agg = aggregate_study(moved, out)
    assert not agg.missing and len(agg.records) == 8
    conflict = [r for r in _rows(out / "sweep.csv") if r["test_dist"] == "tiny_conflict"]
    assert len(conflict) == 8 and all(r["shortcut_bias"] != "" for r in conflict)
    # The records still name the old paths; the identity compares contents only.
    record = json.loads(next((out / "runs").glob("*/record.json")).read_text())
    assert str(tmp_path / "here") in record["fingerprint"]["train"]["train_dist"]
    # Other content at the new place is still refused, not mixed.
    train_file = tmp_path / "there" / "spec" / "tiny_train.toml"
    train_file.write_text(train_file.read_text().replace("pixel_spacing_mm = 1.5",
                                                         "pixel_spacing_mm = 1.25"))
    edited = validate_study(load_study(str(tmp_path / "there" / "spec" / path.name)))
    assert {state for _, state, _ in run_states(edited, out)} == {"stale"}
    with pytest.raises(StudyError, match="other settings"):
        _run(edited, out, fake_stages())
