"""Primary comparisons and seed planning, on planted truth: known paired effects plus noise."""

import json
import math
import zlib

import numpy as np
import pytest

from nodulelearn.study import StudyError, aggregate_study, load_study, run_study, validate_study
from nodulelearn.study.differences import loss_differences
from nodulelearn.study.primary import EQUIVALENT, UNRESOLVED, primary_results
from nodulelearn.study.seed_plan import (
    achieved_half_width,
    half_width_seeds,
    plan_seeds,
    plan_text,
    power_seeds,
)
from nodulelearn.study.spec import study_from_dict
from nodulelearn.study.stats import holm

SEEDS = (0, 1, 2, 3, 4)
# a − b per seed on "o": p of the paired t-test about 0.013 (holds after Holm over 2 primary
# comparisons, 0.026; not over the 24 comparisons of the exploratory table).
A_MINUS_B = (0.03, 0.05, 0.01, 0.04, 0.02)


def _study(compare, **extra):
    return study_from_dict({
        "seeds": list(SEEDS), "losses": {x: {"loss": "ce"} for x in "abce"},
        "train": {"d": {"ood": ["o"]}}, "compare": compare, **extra,
    })  # fmt: skip


def _records(accuracy):
    """Stand-in run records: ``accuracy[loss][test]`` is a list of one value per seed."""
    records = []
    for loss, by_test in accuracy.items():
        for seed in SEEDS:
            records.append({
                "run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d", "seed": seed,
                "tests": [{"label": "d", "role": "id"}, {"label": "o", "role": "ood"}],
                "metrics": {t: {"accuracy": v[seed], "auc": v[seed], "n": 200}
                            for t, v in by_test.items()},
                "sensitivity": {}, "seconds": {"train": 10.0, "sensitivity": 2.0},
            })  # fmt: skip
    return records


def _planted():
    rng = np.random.default_rng(7)
    seed_level = rng.normal(0, 0.05, len(SEEDS))  # shared by the losses of one seed: pairing
    a = {t: list(0.8 + seed_level) for t in ("d", "o")}
    b = {t: [x - dd for x, dd in zip(a[t], A_MINUS_B, strict=True)] for t in ("d", "o")}
    c = {t: list(np.array(a[t]) + rng.normal(0, 0.002, len(SEEDS))) for t in ("d", "o")}
    e = {t: list(np.array(a[t]) + rng.normal(0, 0.08, len(SEEDS))) for t in ("d", "o")}
    return {"a": a, "b": b, "c": c, "e": e}


PRIMARY = [
    {"a": "a", "b": "b", "metric": "accuracy", "train": "d", "test": "ood", "delta": 0.05},
    {"a": "c", "b": "a", "metric": "accuracy", "train": "d", "test": "id", "delta": 0.02},
]


def test_holm_over_the_primary_family_only_and_tost_equivalence():
    study = _study(PRIMARY)
    results = primary_results(study, _records(_planted()))
    ab, ca = results
    assert ab.test == "o" and ca.test == "d" and ab.seeds == SEEDS
    assert ab.difference.diff == pytest.approx(0.03)
    assert [ab.difference.p_holm, ca.difference.p_holm] == holm(
        [ab.difference.p, ca.difference.p])  # the family: these two, nothing else
    assert 0.01 < ab.difference.p < 0.025 and ab.difference.p_holm < 0.05
    assert ab.verdict == "a > b"
    # The same difference among the 24 exploratory comparisons of its table does not hold.
    explored = {(t, d.metric, d.a, d.b): d for t, d in loss_differences(
        study, _rows(_records(_planted())), "d")}  # fmt: skip
    assert not explored[("o", "accuracy", "a", "b")].holds
    # A true null with a small sd: equivalent within delta, not merely "no difference".
    assert ca.verdict == EQUIVALENT and ca.p_tost_holm < 0.05 and abs(ca.difference.diff) < 0.005


def test_a_noisy_null_is_unresolved_and_a_reversed_effect_is_named():
    study = _study([
        {"a": "e", "b": "a", "metric": "auc", "train": "d", "test": "o", "delta": 0.01},
        {"a": "b", "b": "a", "metric": "accuracy", "train": "d", "test": "o", "delta": 0.05},
    ])
    noisy, reversed_ = primary_results(study, _records(_planted()))
    assert noisy.verdict == UNRESOLVED
    assert reversed_.verdict == "b < a"


def test_missing_runs_leave_a_comparison_unresolved_and_count_in_the_family():
    study = _study(PRIMARY)
    records = [r for r in _records(_planted()) if r["loss"] != "c" or r["seed"] == 0]
    ab, ca = primary_results(study, records)
    assert ca.difference is None and ca.verdict == UNRESOLVED and len(ca.seeds) == 1
    assert ab.difference.p_holm == pytest.approx(min(1.0, 2 * ab.difference.p))


def _rows(records):
    return [{"loss": r["loss"], "train_dist": "d", "seed": r["seed"], "test_dist": t,
             "role": "id" if t == "d" else "ood", **m}
            for r in records for t, m in r["metrics"].items()]


@pytest.mark.parametrize(
    "compare, match",
    [
        ([{**PRIMARY[0], "metric": "acuracy"}], "unknown metric 'acuracy'. Valid: accuracy, auc"),
        ([{**PRIMARY[0], "a": "supcon"}], "'supcon' is not a loss of the study. Valid: a, b, c"),
        ([{**PRIMARY[0], "train": "x"}], "train = 'x' is not a training distribution"),
        ([{**PRIMARY[0], "test": "q"}], "Valid: d, o, id, ood"),
        ([{**PRIMARY[0], "metric": "reliance:colour"}], "reliance:margin"),
        ([{**PRIMARY[0], "metric": "shortcut_bias"}], "shortcut_bias needs a conflict test set"),
    ],
)
def test_bad_names_are_one_line_listing_the_valid_ones(compare, match):
    with pytest.raises(StudyError, match="compare") as info:
        validate_comparisons(_study(compare))
    assert match in str(info.value) and "\n" not in str(info.value)


def validate_comparisons(study):
    from nodulelearn.study.primary import check_comparisons

    check_comparisons(study)


@pytest.mark.parametrize(
    "compare, match",
    [
        ({"a": "a"}, "must be an array of tables"),
        ([{**PRIMARY[0], "delta": 0}], "delta must be a positive, finite number"),
        ([{**PRIMARY[0], "delta": True}], "delta must be a positive"),
        ([{**PRIMARY[0], "delta": "0.1"}], "delta must be a positive"),
        ([{k: v for k, v in PRIMARY[0].items() if k != "delta"}], "missing key(s) delta"),
        ([{**PRIMARY[0], "colour": 1}], "unknown key(s) 'colour'"),
        ([{**PRIMARY[0], "b": "a"}], "a and b are both 'a'"),
        ([{**PRIMARY[0], "metric": 3}], "metric must be a non-empty string"),
    ],
)
def test_bad_shapes_fail_when_read(compare, match):
    with pytest.raises(StudyError, match="Study '<dict>'") as info:
        _study(compare)
    assert match in str(info.value)


def test_comparisons_round_trip_through_study_json():
    study = _study(PRIMARY)
    assert study_from_dict(json.loads(json.dumps(study.to_dict()))).compare == study.compare
    assert "compare" not in _study(None).to_dict()


# End to end: stand-in stages that return planted paired effects plus noise.

STUDY_COMPARE = """
[losses.ce_again]
loss = "ce"

[[compare]]
a = "supcon"
b = "ce"
metric = "accuracy"
train = "tiny"
test = "tiny_ood"
delta = 0.03

[[compare]]
a = "ce_again"
b = "ce"
metric = "accuracy"
train = "tiny"
test = "ood"
delta = 0.03

[[compare]]
a = "supcon"
b = "ce"
metric = "reliance:size"
train = "tiny"
test = "id"
delta = 0.01
"""


def _planted_train(fields, train_dir, overwrite):
    seed, loss_id = fields["seed"], train_dir.parent.name.split("__")[0]
    base = 0.75 + np.random.default_rng([seed, 11]).normal(0, 0.05)  # shared by a seed's runs
    effect = {"ce": 0.0, "ce_again": 0.0, "supcon": 0.08}[loss_id]
    noise = np.random.default_rng([seed, zlib.crc32(loss_id.encode())]).normal(0, 0.003)
    metrics = {}
    for ref in fields["test_dists"]:
        acc = base + effect + noise
        metrics[ref] = {"accuracy": acc, "sensitivity": acc, "specificity": acc,
                        "balanced_accuracy": acc, "auc": min(1.0, acc + 0.05), "n": 200}
    train_dir.mkdir(parents=True, exist_ok=True)
    (train_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


def test_summary_and_report_show_the_primary_comparisons_first(tmp_path, tiny_study_files,
                                                                fake_stages):
    path = tiny_study_files(tmp_path / "spec", seeds=tuple(range(4)))
    path.write_text(path.read_text() + STUDY_COMPARE)
    study = validate_study(load_study(str(path)))
    out = tmp_path / "out"
    stages = fake_stages()
    run_study(study, out, train_fn=_planted_train, sensitivity_fn=stages.sensitivity,
              encoding_fn=stages)
    summary = aggregate_study(study, out).summary
    first = summary.index("## Primary comparisons")
    assert first < summary.index("## How to read") < summary.index("(exploratory)")
    rows = [line for line in summary[first:].splitlines() if line.startswith("| supcon − ce")
            or line.startswith("| ce_again − ce")]
    assert rows[0].endswith("| **supcon > ce** |")
    assert rows[1].endswith(f"| **{EQUIVALENT}** |")
    assert "Holm-corrected over the declared family only (3 comparisons)" in summary
    assert "| holds |" not in summary  # no verdict outside the primary family
    report = (out / "report.html").read_text()
    assert report.index("Primary comparisons") < report.index("Differences between losses")
    plan = plan_seeds(study, out)
    assert [p.pilot_seeds for p in plan.plans] == [4, 4, 4]
    assert plan.runs_per_seed == 3 and plan.seeds == 4
    assert "Primary comparisons: 3" in plan_text(plan)


# The seed planner.

@pytest.mark.parametrize("sd, delta", [(0.02, 0.05), (0.05, 0.05), (0.03, 0.02)])
def test_the_planned_seeds_give_the_promised_half_width_in_simulated_studies(sd, delta):
    k = half_width_seeds(sd, delta)
    rng = np.random.default_rng(2026)
    widths = [achieved_half_width(rng.normal(0.01, sd, k)) for _ in range(200)]
    assert np.mean(np.array(widths) <= delta / 2) >= 0.90
    # The fewest such seeds: with one fewer, the exact chance falls below the 95% assurance.
    from scipy.stats import chi2, t

    def chance(n):
        return chi2.cdf((n - 1) * (delta / 2 * math.sqrt(n) / (t.ppf(0.975, n - 1) * sd)) ** 2,
                        n - 1)

    assert chance(k) >= 0.95 and (k == 2 or chance(k - 1) < 0.95)


@pytest.mark.parametrize("sd, delta, family", [(0.03, 0.03, 1), (0.05, 0.04, 6)])
def test_the_planned_seeds_reach_the_power_at_the_holm_level(sd, delta, family):
    from scipy.stats import ttest_1samp

    alpha = 0.05 / family
    k = power_seeds(sd, delta, alpha=alpha)
    rng = np.random.default_rng(5)
    detected = [ttest_1samp(rng.normal(delta, sd, k), 0).pvalue < alpha for _ in range(400)]
    assert np.mean(detected) >= 0.80 - 3 * math.sqrt(0.8 * 0.2 / 400)
    assert power_seeds(sd, delta, alpha=alpha / 10) > k  # a stricter level needs more seeds


def test_planner_arguments_are_checked():
    with pytest.raises(ValueError, match="Expected a number"):
        half_width_seeds(math.nan, 0.1)
    with pytest.raises(ValueError, match="delta"):
        power_seeds(0.1, 0.0, alpha=0.05)
    with pytest.raises(ValueError, match="choose a larger delta"):
        half_width_seeds(1.0, 1e-4, max_seeds=50)


def test_more_seeds_keep_the_identity_of_the_finished_runs(tmp_path, tiny_study_files):
    from nodulelearn.study.identity import run_fingerprint
    from nodulelearn.study.plan import plan_runs
    from nodulelearn.study.seed_plan import with_seeds

    study = validate_study(load_study(str(tiny_study_files(tmp_path, seeds=(0, 3)))))
    extended = with_seeds(study, 4)
    assert extended.seeds == (0, 3, 1, 2)
    old = {r.id: run_fingerprint(study, r) for r in plan_runs(study)}
    new = {r.id: run_fingerprint(extended, r) for r in plan_runs(extended)}
    assert {k: new[k] for k in old} == old and len(new) == 2 * len(old)
    assert study_from_dict(extended.to_dict()).seeds == (0, 3, 1, 2)
    with pytest.raises(ValueError, match=r"Expected an integer >= 2 .*Received: seeds=1"):
        with_seeds(study, 1)


def test_shortcut_bias_and_reliance_are_compared_per_seed():
    study = study_from_dict({
        "seeds": list(SEEDS), "losses": {"a": {"loss": "ce"}, "b": {"loss": "ce"}},
        "train": {"margin_size": {"ood": ["margin_size_reversed"], "core": "margin",
                                  "shortcut": "size"}},
        "compare": [
            {"a": "a", "b": "b", "metric": "shortcut_bias", "train": "margin_size",
             "test": "margin_size_reversed", "delta": 0.1},
            {"a": "a", "b": "b", "metric": "reliance:size", "train": "margin_size",
             "test": "id", "delta": 0.1},
        ],
    })  # fmt: skip
    validate_comparisons(study)
    records = []
    for loss, acc, size in (("a", 0.9, 0.1), ("b", 0.6, 0.5)):
        for seed in SEEDS:
            wobble = 0.01 * ((seed * 7) % 5 - 2) + (0.001 * seed if loss == "a" else 0)
            records.append({
                "loss": loss, "train_dist": "margin_size", "seed": seed,
                "metrics": {"margin_size_reversed": {"accuracy": acc + wobble}},
                "sensitivity": {"margin_size": {"modes": [
                    {"mode": "size", "reliance": size + wobble},
                    {"mode": "margin", "reliance": 1 - size - wobble}]}},
            })  # fmt: skip
    bias, reliance = primary_results(study, records)
    # On the reversed set the label follows the margin: bias = 1 - 2 accuracy.
    assert bias.values_a[0] == pytest.approx(1 - 2 * 0.88) and bias.verdict == "a < b"
    assert bias.difference.diff == pytest.approx(-0.6 - 2 * 0.002, abs=1e-9)
    assert reliance.values_b[0] == pytest.approx(0.48) and reliance.verdict == "a < b"


def test_change_from_initialisation_is_compared_on_the_training_distribution():
    compare = {"a": "a", "b": "b", "metric": "change:size", "train": "d", "test": "id",
               "delta": 0.05}
    study = _study([compare])
    validate_comparisons(study)
    with pytest.raises(StudyError, match='change:size is measured on the training distribution'):
        validate_comparisons(_study([{**compare, "test": "o"}]))
    records = [{"loss": loss, "train_dist": "d", "seed": seed,
                "encoding": {"modes": [{"mode": "size", "change": base + noise * (seed % 3)},
                                       {"mode": "margin", "change": 0.0}]}}
               for loss, base, noise in (("a", 0.30, 0.01), ("b", 0.10, 0.02)) for seed in SEEDS]
    (result,) = primary_results(study, records)
    assert result.values_a[1] == pytest.approx(0.31) and result.verdict == "a > b"
    assert result.difference.diff == pytest.approx(0.2 - 0.01 * (0 + 1 + 2 + 0 + 1) / 5)
