"""summary.md: best in bold, overlapping intervals marked, top modes ranked."""

from nodulelearn.study import study_from_dict
from nodulelearn.study.stats import estimate
from nodulelearn.study.summary import summary_markdown, top_modes_text

STUDY = study_from_dict(
    {
        "seeds": [0, 1],
        "losses": {"a": {"loss": "ce"}, "b": {"loss": "ce"}, "c": {"loss": "ce"}},
        "train": {"d": {"ood": ["o"]}},
    }
)
# accuracy over two seeds: a 0.90 ± 0.014, b 0.89 ± 0.014 (overlaps a), c 0.60 ± 0.014
ACCURACY = {"a": (0.89, 0.91), "b": (0.88, 0.90), "c": (0.59, 0.61)}


def _rows():
    rows = []
    for loss, values in ACCURACY.items():
        for seed, acc in enumerate(values):
            for test, role in (("d", "id"), ("o", "ood")):
                rows.append({
                    "run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d",
                    "seed": seed, "test_dist": test, "role": role, "accuracy": acc,
                    "sensitivity": acc, "specificity": acc, "auc": acc, "n": 200,
                })  # fmt: skip
    return rows


def test_best_is_bold_overlap_is_marked_and_clear_differences_are_not():
    text = summary_markdown(STUDY, _rows(), [], finished=6, missing=[])
    line = {loss: next(
        row for row in text.splitlines() if row.startswith(f"| d (ID) | {loss} |")
    ) for loss in ACCURACY}  # fmt: skip
    assert line["a"].count("**0.900 ± 0.014**") == 4
    assert line["b"].count("0.890 ± 0.014 ≈") == 4
    assert "≈" not in line["c"] and "**" not in line["c"] and "0.600 ± 0.014" in line["c"]
    assert text.index("| d (ID) |") < text.index("| o (OOD) |")  # ID block first


def test_missing_runs_are_listed():
    text = summary_markdown(STUDY, _rows()[:4], [], finished=2, missing=["c__d__s0", "c__d__s1"])
    assert "Runs finished: 2 of 4" in text
    assert "2 run(s) missing" in text and "`c__d__s1`" in text
    many = [f"r{i}" for i in range(20)]
    text = summary_markdown(STUDY, _rows(), [], finished=6, missing=many)
    assert "`r11` and 8 more" in text and "`r12`" not in text


def test_top_modes_rank_and_mark_ties():
    modes = {
        "noise": estimate([0.5], interval=(0.45, 0.55)),
        "margin": estimate([0.42], interval=(0.35, 0.5)),
        "size": estimate([0.05], interval=(0.02, 0.08)),
        "texture": estimate([0.03], interval=(0.0, 0.05)),
    }
    text = top_modes_text(modes)
    assert text.startswith("noise 0.50 [0.45, 0.55]; margin 0.42 [0.35, 0.50] (≈ noise); size")
    assert "texture" not in text  # top three only
    assert text.endswith("; size 0.05 [0.02, 0.08]")  # clearly below margin: no mark
    negligible = {"size": estimate([0.97]), "margin": estimate([0.02]), "noise": estimate([0.01])}
    assert top_modes_text(negligible) == "size 0.97"  # modes under 5% are not listed
