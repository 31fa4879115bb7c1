"""summary.md: the highest mean in bold, differences between losses stated with their interval and
tested (a planted difference is reported as holding, a planted null is not), top modes ranked."""

import re

from nodulelearn.study import study_from_dict
from nodulelearn.study.differences import loss_differences
from nodulelearn.study.stats import estimate
from nodulelearn.study.summary import summary_markdown, top_modes_text

SEEDS = (0, 1, 2, 3, 4)
STUDY = study_from_dict(
    {
        "seeds": list(SEEDS),
        "losses": {"a": {"loss": "ce"}, "b": {"loss": "ce"}, "c": {"loss": "ce"}},
        "train": {"d": {"ood": ["o"]}},
    }
)
# Planted accuracies per seed. a and b differ by seed-level noise only (a null difference; their
# seed-to-seed spread is large); c is 0.10 below a on every seed with the same noise (a real,
# paired difference, clear although its spread over seeds overlaps a's).
NOISE = (0.00, 0.06, -0.05, 0.03, -0.04)
B_NOISE = (0.01, 0.04, -0.03, 0.05, -0.06)
ACCURACY = {
    "a": [0.85 + e for e in NOISE],
    "b": [0.85 + e for e in B_NOISE],
    "c": [0.75 + e + 0.002 * s for s, e in enumerate(NOISE)],
}


def _rows(accuracy=ACCURACY, seeds=SEEDS, n=200):
    rows = []
    for loss, values in accuracy.items():
        for seed, acc in zip(seeds, values, strict=True):
            for test, role in (("d", "id"), ("o", "ood")):
                rows.append({
                    "run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d",
                    "seed": seed, "test_dist": test, "role": role, "accuracy": acc,
                    "sensitivity": acc, "specificity": acc, "auc": acc, "n": n,
                })  # fmt: skip
    return rows


def _line(text, start):
    return next(row for row in text.splitlines() if row.startswith(start))


def test_a_planted_difference_holds_and_a_null_one_does_not():
    text = summary_markdown(STUDY, _rows(), [], finished=15, missing=[])
    assert "≈" not in text.split("## Trained on")[1]  # no marks read off overlapping bars
    assert _line(text, "| d (ID) | b |").count("**0.852 ± ") == 4  # highest mean: bold
    assert "**" not in _line(text, "| d (ID) | a |")
    found = {(test, d.metric, d.a, d.b): d for test, d in loss_differences(STUDY, _rows(), "d")}
    assert len(found) == 2 * 2 * 3  # test sets x metrics x pairs
    assert all(d.k == 5 for d in found.values())
    assert found[("d", "accuracy", "a", "c")].holds
    assert found[("o", "auc", "b", "c")].holds
    assert not found[("d", "accuracy", "a", "b")].holds
    assert not found[("o", "auc", "a", "b")].holds
    # stated as "a − c: 0.096 [lo, hi]" with a positive interval, and marked as holding
    row = _line(text, "| d (ID) | accuracy | a − c: ")
    lo, hi = map(float, re.search(r"\[([−\d.]+), ([−\d.]+)\]", row).groups())
    assert 0 < lo < 0.096 < hi and row.endswith("| yes |")
    assert _line(text, "| d (ID) | accuracy | a − b: ").endswith("| no |")
    holds = _line(text, "Differences that hold")
    assert "d, accuracy: a − c: 0.096 [" in holds and "a − b" not in holds
    assert "Holm-corrected over the 12 comparisons" in text


def test_nothing_holds_when_nothing_differs():
    flat = {loss: [0.8 + e for e in NOISE] for loss in ("a", "b")}
    flat["c"] = [0.8 + e for e in B_NOISE]
    text = summary_markdown(STUDY, _rows(flat), [], finished=15, missing=[])
    assert "No difference between losses holds (12 compared)" in text
    assert "Differences that hold" not in text


def test_one_seed_uses_test_set_intervals():
    study = study_from_dict({**STUDY.to_dict(), "seeds": [0]})
    accuracy = {"a": [1.0], "b": [0.99], "c": [0.70]}
    text = summary_markdown(study, _rows(accuracy, seeds=(0,), n=400), [], finished=3, missing=[])
    assert "**1.000 [0.990, 1.000]**" in _line(text, "| d (ID) | a |")  # Wilson: a width at 1.0
    found = {(t, d.metric, d.a, d.b): d for t, d in loss_differences(study, _rows(
        accuracy, seeds=(0,), n=400), "d")}  # fmt: skip
    assert all(d.k == 1 for d in found.values())
    assert found[("d", "accuracy", "a", "c")].holds
    assert not found[("d", "accuracy", "a", "b")].holds
    assert "One seed: Newcombe interval" in text


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


def _reliance_rows(nuisance_share=0.30):
    """Planted sensitivity.csv rows, one seed: nuisance takes ``nuisance_share``, margin 0.40 and
    the other modes share the rest equally."""
    from nodulelearn.sensitivity import ANALYSED_MODES

    others = [m for m in ANALYSED_MODES if m not in ("margin", "nuisance")]
    share = {"margin": 0.40, "nuisance": nuisance_share}
    share |= {m: (1.0 - 0.40 - nuisance_share) / len(others) for m in others}
    return [
        {"run_id": f"{loss}__d__s0", "loss": loss, "train_dist": "d", "seed": 0,
         "test_dist": test, "role": role, "mode": mode, "reliance": value,
         "reliance_ci_low": value - 0.02, "reliance_ci_high": value + 0.02}
        for loss in ("a", "b", "c") for test, role in (("d", "id"), ("o", "ood"))
        for mode, value in share.items()
    ]  # fmt: skip


def test_reliance_tables_and_heatmap_include_nuisance():
    from nodulelearn.datasets import MODE_NAMES
    from nodulelearn.sensitivity import ANALYSED_MODES
    from nodulelearn.study.figures import reliance_heatmap_figure

    sens = _reliance_rows()
    text = summary_markdown(STUDY, _rows(seeds=(0,), accuracy={k: v[:1] for k, v in
                                                               ACCURACY.items()}),
                            sens, finished=3, missing=[])  # fmt: skip
    top = _line(text, "| d (ID) | a | margin ")  # the top-modes table, not the results table
    assert top.startswith("| d (ID) | a | margin 0.40 [0.38, 0.42]; nuisance 0.30 [0.28, 0.32]")
    encoding = [
        {"run_id": f"{loss}__d__s0", "loss": loss, "train_dist": "d", "seed": 0, "mode": mode,
         "normalized": 0.5} for loss in ("a", "b", "c") for mode in MODE_NAMES
    ]  # fmt: skip
    fig = reliance_heatmap_figure(STUDY, sens, encoding_rows=encoding)
    reliance_ax, encoding_ax = fig.axes[:2]
    assert [t.get_text() for t in reliance_ax.get_xticklabels()] == list(ANALYSED_MODES)
    assert [t.get_text() for t in encoding_ax.get_xticklabels()] == list(MODE_NAMES)
    column = list(ANALYSED_MODES).index("nuisance")
    cells = {(round(t.get_position()[0]), t.get_text()) for t in reliance_ax.texts}
    assert (column, "0.30") in cells  # the nuisance share is drawn, in its own column
    # without the nuisance record (an older analysis), its column is empty, not shifted
    older = [r for r in sens if r["mode"] != "nuisance"]
    fig = reliance_heatmap_figure(STUDY, older)
    assert all(round(t.get_position()[0]) != column for t in fig.axes[0].texts)


def test_names_with_markdown_characters_keep_every_table_cell_in_place():
    import html.parser

    from nodulelearn.markdown import markdown_to_html

    names = {"a": "a|b", "b": "c*d*", "c": "e`f<g>"}
    study = study_from_dict({**STUDY.to_dict(), "losses": {v: {"loss": "ce"} for v in names.values()}})
    rows = [{**r, "loss": names[r["loss"]]} for r in _rows()]
    for r in rows:
        r["auc"] = {"a|b": 0.994, "c*d*": 1.0, "e`f<g>": 0.5}[r["loss"]] if r["seed"] == 0 else 0.7
    text = summary_markdown(study, rows, [], finished=15, missing=["a|b__d__s9"])
    tables = [line for line in text.splitlines() if line.startswith("|")]
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in tables if "accuracy | sensitivity" in
              line or line.startswith("| d (ID) | a\\|b |")}
    assert len(widths) == 1  # the header and the row of loss "a|b" have as many cells

    class Cells(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th"):
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Cells()
    parser.feed(markdown_to_html(text))
    header = next(r for r in parser.rows if r[:3] == ["test set", "loss", "seeds"])
    for loss in names.values():
        row = next(r for r in parser.rows if r[:2] == ["d (ID)", loss])
        assert len(row) == len(header), row
        mean = sum([{"a|b": 0.994, "c*d*": 1.0, "e`f<g>": 0.5}[loss]] + [0.7] * 4) / 5
        assert row[header.index("AUC")].startswith(f"{mean:.3f} ± ")
    differences = [r for r in parser.rows if len(r) == 7 and " − " in r[2]]
    assert any(r[2].startswith("a|b − c*d*: ") for r in differences)
    assert "a|b__d__s9" in markdown_to_html(text)
