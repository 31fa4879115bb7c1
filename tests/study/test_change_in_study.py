"""The change from initialisation in a study: encoding_layers.csv rows, the learned-vs-used table
(change and verdict, not the raw encoding), the heatmap's diverging change panel."""

import pytest

from nodulelearn.study import records, study_from_dict
from nodulelearn.study.summary import learned_vs_used_table

STUDY = study_from_dict({"seeds": [0, 1], "losses": {"a": {"loss": "ce"}, "b": {"loss": "ce"}},
                         "train": {"d": {"ood": ["o"]}}})
CHANGE = {"a": {"margin": 0.30, "noise": -0.40}, "b": {"margin": 0.0, "noise": 0.05}}
VERDICT = {0.30: "enhanced", -0.40: "suppressed", 0.0: "unchanged", 0.05: "unchanged"}


def _encoding_rows():
    return [
        {"run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d", "seed": seed,
         "mode": mode, "normalized": 0.5 + change, "baseline_normalized": 0.5,
         "change": change + 0.01 * seed, "change_ci_low": change - 0.1,
         "change_ci_high": change + 0.1, "verdict": VERDICT[change]}
        for loss, modes in CHANGE.items() for seed in (0, 1) for mode, change in modes.items()
    ]  # fmt: skip


def _reliance_rows():
    return [
        {"run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d", "seed": seed,
         "test_dist": "d", "role": "id", "mode": mode, "reliance": 0.5}
        for loss in CHANGE for seed in (0, 1) for mode in ("margin", "noise")
    ]  # fmt: skip


def test_learned_vs_used_shows_the_change_with_its_verdicts():
    table = learned_vs_used_table(STUDY, _reliance_rows(), _encoding_rows(), "d")
    assert table[0].endswith("| change from init | verdict |")
    row = next(line for line in table if line.startswith("| a | noise |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[3].startswith("-0.40") and cells[4] == "suppressed 2/2"
    assert next(line for line in table if line.startswith("| a | margin |")).endswith(
        "| enhanced 2/2 |")
    # without a reference (older runs): the raw encoding, as before
    raw = [{k: v for k, v in r.items() if k not in ("change", "verdict")}
           for r in _encoding_rows()]
    table = learned_vs_used_table(STUDY, _reliance_rows(), raw, "d")
    assert table[0].endswith("| encoding (normalized) |")


def test_the_heatmap_shows_the_change_on_a_diverging_map_beside_the_encoding():
    from nodulelearn.study.figures import reliance_heatmap_figure

    fig = reliance_heatmap_figure(STUDY, _reliance_rows(), encoding_rows=_encoding_rows())
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("encoding:") for t in titles)
    change = next(ax for ax in fig.axes if ax.get_title().startswith("change from init"))
    image = change.get_images()[0]
    assert image.get_cmap().name == "RdBu_r" and image.get_clim() == (-1.0, 1.0)
    assert "-0.40" in {t.get_text() for t in change.texts}


def test_encoding_layer_rows_carry_run_loss_and_seed():
    layers = [{"layer": "pool0", "depth": 1, "mode": "noise", "change": -0.2,
               "verdict": "suppressed"}]
    record = {"run_id": "a__d__s1", "loss": "a", "loss_name": "ce", "loss_params": {},
              "train_dist": "d", "seed": 1,
              "encoding": {"distribution": "d_independent", "modes": [], "layers": layers}}
    rows = records.encoding_layer_rows(record)
    assert rows == [pytest.approx({
        "run_id": "a__d__s1", "loss": "a", "loss_name": "ce", "loss_params": "{}",
        "train_dist": "d", "seed": 1, "test_dist": "d_independent", "role": "encoding",
        "layer": "pool0", "depth": 1, "mode": "noise", "change": -0.2, "verdict": "suppressed"})]
    assert records.encoding_layer_rows({**record, "encoding": None}) == []


def test_the_summary_says_at_which_depth_each_losses_change_appears():
    from nodulelearn.study.summary import summary_markdown

    def verdict(loss, layer, seed):  # a: noise suppressed from pool1 on (both seeds), b: never
        if loss == "a" and layer != "pool0":
            return "suppressed"
        return "enhanced" if (loss, layer, seed) == ("b", "pool1", 0) else "unchanged"

    layers = [
        {"run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d", "seed": seed,
         "layer": layer, "depth": depth, "mode": "noise",
         "change": -0.3 if verdict(loss, layer, seed) == "suppressed" else 0.01,
         "verdict": verdict(loss, layer, seed)}
        for loss in ("a", "b") for seed in (0, 1)
        for depth, layer in enumerate(("pool0", "pool1", "embedding"), start=1)
    ]  # fmt: skip
    results = [{"run_id": f"{loss}__d__s{seed}", "loss": loss, "train_dist": "d", "seed": seed,
                "test_dist": "d", "role": "id", "accuracy": 0.9, "sensitivity": 0.9,
                "specificity": 0.9, "auc": 0.9, "n": 100} for loss in CHANGE for seed in (0, 1)]
    text = summary_markdown(STUDY, results, _reliance_rows(), finished=4, missing=[],
                            encoding_rows=_encoding_rows(), layer_rows=layers)
    table = text.split("### Change from initialisation by depth")[1]
    assert "| loss | mode | first changed at | pool0 | pool1 | embedding |" in table
    row_a = next(line for line in table.splitlines() if line.startswith("| a | noise |"))
    assert "| pool1 (suppressed) | +0.01 unchanged 2/2 | -0.30 suppressed 2/2 |" in row_a
    row_b = next(line for line in table.splitlines() if line.startswith("| b | noise |"))
    assert row_b.startswith("| b | noise | – |")  # one seed of two enhanced: not most runs
