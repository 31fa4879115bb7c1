"""What predicts the mode a model uses: the untrained network's decodability advantage of one
mode of a redundant pair over the other, against the reliance share and the shortcut bias
(initial_advantage.csv and its summary section), on planted truths and one smoke sweep."""

import csv
import math

import numpy as np
import pytest

from nodulelearn.study import (
    aggregate_study,
    load_study,
    run_study,
    study_from_dict,
    validate_study,
)
from nodulelearn.study.aggregate import ALL_OUTPUTS
from nodulelearn.study.initial_advantage import (
    COLUMNS,
    correlation_sentence,
    initial_advantage_markdown,
    initial_advantage_rows,
    pair_of,
    rank_correlation,
    write_initial_advantage,
)
from nodulelearn.study.plan import plan_runs
from nodulelearn.study.records import build_record
from nodulelearn.study.sweep import expand_study

VISIBILITIES = (0.2, 0.4, 0.6, 0.8, 1.0)
SWEEP = f"""
[train.tiny.sweep]
"modes.size.visibility" = {list(VISIBILITIES)}
"modes.size.alignment" = [0.0, 1.0]
"""


def _planted(advantage, bias_of, *, seeds=3, seed=0):
    """Rows of one loss: one point per advantage, ``seeds`` runs each, bias = bias_of(adv, rng)."""
    rng = np.random.default_rng(seed)
    return [{"point": f"p{i}", "baseline_advantage": a, "shortcut_bias": bias_of(a, rng)}
            for i, a in enumerate(advantage) for _ in range(seeds)]


def test_a_planted_monotone_relation_gives_an_interval_above_0():
    advantage = np.random.default_rng(1).uniform(-0.2, 0.2, 9)
    rows = _planted(advantage, lambda a, rng: math.tanh(6 * a) + rng.normal(0, 0.15))
    found = rank_correlation(rows)
    assert (found.points, found.runs) == (9, 27) and found.varies
    assert 0 < found.lo <= found.rho <= found.hi and found.predicts
    sentence = correlation_sentence("ce", "size", "margin", found)
    assert "predicts the mode used, the larger it is, the more the model follows size" in sentence
    # reversed: the more decodable mode at initialisation is the one the model does *not* follow
    reverse = rank_correlation([{**r, "shortcut_bias": -r["shortcut_bias"]} for r in rows])
    assert reverse.hi < 0 and "inversely" in correlation_sentence("ce", "size", "margin", reverse)


def test_independent_advantage_and_bias_cover_0_in_most_seeded_trials():
    covered = 0
    for trial in range(20):
        rng = np.random.default_rng([7, trial])
        advantage = rng.uniform(-0.2, 0.2, 9)
        rows = _planted(advantage, lambda a, r: r.uniform(-1, 1), seed=trial)
        found = rank_correlation(rows, resamples=500, seed=trial)
        covered += found.lo <= 0 <= found.hi
        if found.lo <= 0 <= found.hi:
            assert "does not resolve" in correlation_sentence("ce", "size", "margin", found)
    assert covered >= 17  # nominal 95%: 19 of 20; measured 19 of 20 at these seeds


def test_an_advantage_that_does_not_vary_over_the_points_does_not_resolve():
    rows = _planted([0.1] * 4, lambda a, rng: rng.uniform(-1, 1))
    found = rank_correlation(rows)
    assert not found.varies and not found.predicts
    assert "does not vary over the 4 point(s)" in correlation_sentence("ce", "size", "margin",
                                                                       found)


def _sweep_study(tmp_path, tiny_study_files):
    path = tiny_study_files(tmp_path / "spec", seeds=(0, 1), conflict=True)
    path.write_text(path.read_text() + SWEEP)
    return validate_study(load_study(str(path)))


def _stand_in_records(study, out):
    """Records of every run of the expanded study: the untrained size encoding grows with the
    size's visibility (margin's stays); ce's shortcut bias follows that advantage, supcon's is a
    U over the points (no rank order); runs where the margin alone predicts log a curve."""
    ce, supcon = (e.id for e in study.losses)
    bias_u = dict(zip(VISIBILITIES, (0.5, -0.5, -0.6, -0.5, 0.5), strict=True))
    found = []
    for run in plan_runs(study):
        point = dict(run.train.point)
        vis, seed = point["modes.size.visibility"], run.seed
        id_label, conflict = run.tests[0].label, run.tests[-1].label
        bias = (-0.9 + vis + 0.01 * seed) if run.loss.id == ce else bias_u[vis] + 0.01 * seed
        accuracy = (1 - bias) / 2  # the core (margin) has alignment +1 on the conflict set
        metrics = {t.label: {"accuracy": accuracy if t.label == conflict else 0.9, "n": 64}
                   for t in run.tests}
        reliance = {"margin": 0.3, "size": 0.1 * (1 + seed), "noise": 0.05}
        sensitivity = {id_label: {"modes": [{"mode": m, "reliance": r}
                                            for m, r in reliance.items()]}}
        encoding = {"distribution": "tiny_independent", "baseline_inits": 5, "modes": [
            {"mode": "margin", "normalized": 0.9, "baseline_normalized": 0.6,
             "baseline_normalized_sd": 0.03},
            {"mode": "size", "normalized": 0.9, "baseline_normalized": 0.5 + 0.3 * vis,
             "baseline_normalized_sd": 0.04}]}
        found.append(build_record(run, {}, metrics, sensitivity, {}, encoding=encoding))
        if point["modes.size.alignment"] == 0.0:
            train = out / "runs" / run.id / "train"
            train.mkdir(parents=True)
            (train / "history.csv").write_text("epoch,phase,val_accuracy\n0,train,0.6\n"
                                               "1,train,0.8\n")
    return found


def test_rows_csv_and_summary_on_a_stand_in_sweep(tmp_path, tiny_study_files):
    out = tmp_path / "out"
    study = expand_study(_sweep_study(tmp_path, tiny_study_files), out)
    ce, supcon = (e.id for e in study.losses)
    records = _stand_in_records(study, out)
    rows = initial_advantage_rows(study, records, out)
    # the points where the size does not predict are no redundant pair: 5 points x 2 losses x 2
    assert len(rows) == 20 and all(r["point"].endswith("modes.size.alignment=1") for r in rows)
    for row in rows:
        vis = float(row["point"].split(",")[0].split("=")[1])
        assert (row["mode_a"], row["mode_b"]) == ("size", "margin")  # shortcut, core
        assert row["baseline_advantage"] == pytest.approx(-0.1 + 0.3 * vis)
        assert row["baseline_advantage_sd"] == pytest.approx(0.05)
        assert row["reliance_share_a"] == pytest.approx(
            0.1 * (1 + row["seed"]) / (0.3 + 0.1 * (1 + row["seed"])))
        assert row["availability"] == "" and row["availability_b"] == pytest.approx(0.7)
        assert row["bias_test"] == "tiny_conflict" and -1 <= row["shortcut_bias"] <= 1
    (path,) = write_initial_advantage(rows, out)
    assert path.name in ALL_OUTPUTS
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header == list(COLUMNS)
    text = initial_advantage_markdown(study, rows)
    ce_line = next(line for line in text.splitlines() if line.startswith(f"- `{ce}`"))
    assert "predicts the mode used, the larger it is, the more the model follows size" in ce_line
    supcon_line = next(line for line in text.splitlines() if line.startswith(f"- `{supcon}`"))
    assert "does not resolve which mode is used: the interval includes 0" in supcon_line


def test_both_reliances_near_0_leave_the_share_empty(tmp_path, tiny_study_files):
    out = tmp_path / "out"
    study = expand_study(_sweep_study(tmp_path, tiny_study_files), out)
    records = _stand_in_records(study, out)
    for record in records:
        for result in record["sensitivity"].values():
            for mode in result["modes"]:
                mode["reliance"] = 0.0 if mode["mode"] in ("margin", "size") else 0.5
    rows = initial_advantage_rows(study, records, out)
    assert rows and all(r["reliance_share_a"] == "" for r in rows)


def test_a_study_without_sweeps_gets_a_table_per_pair_and_loss(tmp_path):
    study = study_from_dict({
        "seeds": [0, 1], "losses": {"ce": {}},
        "train": {"margin_size": {"ood": ["margin_size_decorrelated"]},
                  "clinical": {"ood": ["clinical_other_site"]}}})
    assert pair_of(study.train[0])[:2] == ("size", "margin") and pair_of(study.train[1]) is None
    records = []
    for run in plan_runs(study):
        id_label = run.tests[0].label
        sensitivity = {id_label: {"modes": [{"mode": "margin", "reliance": 0.6},
                                            {"mode": "size", "reliance": 0.2}]}}
        encoding = {"modes": [{"mode": "margin", "baseline_normalized": 0.95,
                               "baseline_normalized_sd": 0.01},
                              {"mode": "size", "baseline_normalized": 0.88,
                               "baseline_normalized_sd": 0.01}]}
        metrics = {t.label: {"accuracy": 0.9} for t in run.tests}
        records.append(build_record(run, {}, metrics, sensitivity, {}, encoding=encoding))
    rows = initial_advantage_rows(study, records, tmp_path)
    assert [r["train"] for r in rows] == ["margin_size"] * 2
    assert all(r["shortcut_bias"] == "" and r["point"] == "" for r in rows)  # no named pair
    text = initial_advantage_markdown(study, rows)
    assert "| margin_size | size − margin | ce | 2 | -0.07 ± 0.00 | 0.25 ± 0.00 |" in text
    assert "one point per pair cannot give a correlation" in text


BUDGET = "smoke = true\ndeterministic = true\nbatch_size = 32\nn_test = 64\n"


def test_a_smoke_sweep_writes_initial_advantage_csv(tmp_path, tiny_study_files):
    """Real training, sensitivity and untrained reference: test_sweep_end_to_end's smoke sweep at
    its one point where both modes predict (1 loss x 1 point x 1 seed: half its time)."""
    path = tiny_study_files(tmp_path / "spec", seeds=(0,), budget=BUDGET, conflict=True)
    text = path.read_text().replace("[losses.supcon]\ntemperature = 0.2\n", "")
    path.write_text(text + '\n[train.tiny.sweep]\n"modes.size.alignment" = [1.0]\n')
    study = validate_study(load_study(str(path)))
    out = tmp_path / "out"
    assert [o.status for o in run_study(study, out)] == ["ran"]
    agg = aggregate_study(study, out)
    assert out / "initial_advantage.csv" in agg.written
    with open(out / "initial_advantage.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["mode_a"], row["mode_b"], row["point"]) == ("size", "margin",
                                                            "modes.size.alignment=1")
    assert math.isfinite(float(row["baseline_advantage"]))
    assert float(row["baseline_advantage_sd"]) >= 0
    assert row["availability"] == row["availability_b"] == ""  # no mode was trained alone
    assert -1 <= float(row["shortcut_bias"]) <= 1
    assert "## What predicts the mode used" in (out / "summary.md").read_text()
