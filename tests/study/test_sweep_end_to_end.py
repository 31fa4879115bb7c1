"""A smoke-sized sweep with real training and sensitivity analysis: 1 loss x 2 points x 1 seed."""

import csv

from nodulelearn.datasets import load_spec
from nodulelearn.study import aggregate_study, load_study, run_study, validate_study

BUDGET = "smoke = true\ndeterministic = true\nbatch_size = 32\nn_test = 64\n"

def test_a_smoke_sweep_runs_end_to_end(tmp_path, tiny_study_files):
    path = tiny_study_files(tmp_path / "spec", seeds=(0,), budget=BUDGET, conflict=True)
    text = path.read_text().replace("[losses.supcon]\ntemperature = 0.2\n", "")
    path.write_text(text + '\n[train.tiny.sweep]\n"modes.size.alignment" = [0.0, 1.0]\n')
    study = validate_study(load_study(str(path)))
    out = tmp_path / "out"
    assert [o.status for o in run_study(study, out)] == ["ran", "ran"]
    agg = aggregate_study(study, out)
    assert not agg.missing and len(agg.records) == 2
    with open(out / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3
    assert {r["modes.size.alignment"] for r in rows} == {"0.0", "1.0"}
    for row in rows:
        assert 0.0 <= float(row["accuracy"]) <= 1.0
        if row["test_dist"] == "tiny_conflict":
            assert float(row["shortcut_bias"]) == 1 - 2 * float(row["accuracy"])
    # Each run trained on its own point: the config it recorded names the point's spec.
    for record in agg.records:
        train_ref = record["fingerprint"]["train"]["train_dist"]
        alignment = load_spec(train_ref).modes["size"].alignment
        assert record["train_dist"].endswith(f"={alignment:g}")
    assert (out / "curves.png").stat().st_size > 0
    with open(out / "results.csv", newline="") as f:
        assert "modes.size.alignment" in next(csv.DictReader(f))
