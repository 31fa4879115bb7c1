"""summary.md: accuracy and reliance per loss and training distribution, and which differences
between losses the data support.

Cells print mean ± sd over seeds (one seed: the value and its 95% test-set interval); the
highest mean of a column is bold, which by itself claims nothing. Differences between losses are
stated with their 95% interval, ``ce − supcon: −0.012 [−0.020, −0.004]``, paired by seed, tested,
and Holm-corrected across the comparisons of a table (differences.py, stats.py); a difference
"holds" when its adjusted p-value is below 0.05. A study's primary comparisons (primary.py), if it
declares any, come first, and the tables' differences are then exploratory.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from nodulelearn.markdown import markdown_code, markdown_text
from nodulelearn.study.differences import differences_section, tested_sets
from nodulelearn.study.spec import StudySpec
from nodulelearn.study.stats import (
    Estimate,
    estimate,
)

METRICS = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("auc", "AUC"),
)
RELIANCE = "reliance"
TOP_MODES = 3
# A mode is listed among the top modes only if its mean reliance share reaches this (5% of the
# summed effect): listing modes the model ignores would bury the ones it uses.
MIN_RELIANCE = 0.05
MAX_LISTED = 12  # missing runs named in the summary


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def metric_estimates(
    rows: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[str, Estimate]]:
    """(train dist, test dist, loss) -> metric -> ``Estimate`` over seeds, from results.csv rows."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["train_dist"], row["test_dist"], row["loss"])].append(row)
    out = {}
    for key, group in groups.items():
        sizes = [_float(r.get("n")) for r in group]
        n = min((s for s in sizes if s), default=None)
        out[key] = {
            metric: estimate(
                [_float(r.get(metric)) for r in group],
                metric=metric,
                n=n,
                interval=_recorded_interval(group, metric),
            )
            for metric, _ in METRICS
        }
    return out


def _recorded_interval(group: Sequence[Mapping[str, Any]], metric: str):
    """A single run's own ``<metric>_ci_low`` / ``_ci_high``, if it recorded them."""
    if len(group) != 1:
        return None
    lo, hi = _float(group[0].get(f"{metric}_ci_low")), _float(group[0].get(f"{metric}_ci_high"))
    return (lo, hi) if lo is not None and hi is not None else None


def reliance_estimates(
    rows: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[str, Estimate]]:
    """(train dist, test dist, loss) -> mode -> reliance ``Estimate``, from sensitivity.csv rows.

    Modes that do not vary in the test set (no reliance) are left out.
    """
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if _float(row.get(RELIANCE)) is None:
            continue
        groups[(row["train_dist"], row["test_dist"], row["loss"], row["mode"])].append(row)
    out: dict[tuple[str, str, str], dict[str, Estimate]] = defaultdict(dict)
    for (train, test, loss, mode), group in groups.items():
        interval = None
        if len(group) == 1:  # one seed: the analysis' own 95% interval
            interval = (
                _float(group[0].get(f"{RELIANCE}_ci_low")),
                _float(group[0].get(f"{RELIANCE}_ci_high")),
            )
        out[(train, test, loss)][mode] = estimate(
            [_float(r[RELIANCE]) for r in group], interval=interval
        )
    return dict(out)


def _mark(cell: Estimate, is_best: bool) -> str:
    return f"**{cell.text()}**" if is_best else cell.text()


def accuracy_table(
    study: StudySpec, rows: Sequence[Mapping[str, Any]], train: str
) -> list[str]:
    """Markdown table of one training distribution: a block of losses per test set."""
    est = metric_estimates(rows)
    lines = [
        "| test set | loss | seeds | " + " | ".join(label for _, label in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for test, role in tested_sets(rows, train):
        losses = [e.id for e in study.losses if (train, test, e.id) in est]
        cells = {loss: est[(train, test, loss)] for loss in losses}
        for loss in losses:
            marked = []
            for metric, _ in METRICS:
                column = {name: cells[name][metric] for name in losses}
                finite = [name for name in losses if math.isfinite(column[name].mean)]
                best_loss = max(finite, key=lambda name: column[name].mean, default=None)
                marked.append(_mark(column[loss], len(losses) > 1 and loss == best_loss))
            seeds = cells[loss]["accuracy"].k
            row = (f"| {markdown_text(test)} ({role.upper()}) | {markdown_text(loss)} | {seeds} | "
                   + " | ".join(marked))
            lines.append(row + " |")
    return lines


def top_modes_text(
    modes: Mapping[str, Estimate], top: int = TOP_MODES, minimum: float = MIN_RELIANCE
) -> str:
    """The ``top`` modes by mean reliance, each marked when its interval overlaps the one above.

    Modes below ``minimum`` are left out, except the first (there is always one answer).
    """
    ranked = sorted(modes.items(), key=lambda item: -item[1].mean)
    ranked = ranked[:1] + [item for item in ranked[1:top] if item[1].mean >= minimum]
    parts = []
    for i, (mode, value) in enumerate(ranked):
        text = f"{mode} {value.text(2)}"  # one seed: with its interval
        if i > 0 and value.overlaps(ranked[i - 1][1]):
            text += f" (≈ {ranked[i - 1][0]})"
        parts.append(text)
    return "; ".join(parts)


def reliance_table(
    study: StudySpec, sens_rows: Sequence[Mapping[str, Any]], train: str
) -> list[str]:
    """Markdown table: per test set and loss, the modes the model relies on most."""
    rel = reliance_estimates(sens_rows)
    lines = ["| test set | loss | top modes (reliance) |", "|---|---|---|"]
    for test, role in tested_sets(sens_rows, train):
        for entry in study.losses:
            if (train, test, entry.id) in rel:
                text = top_modes_text(rel[(train, test, entry.id)])
                lines.append(
                    f"| {markdown_text(test)} ({role.upper()}) | {markdown_text(entry.id)} | "
                    f"{text} |"
                )
    return lines


def encoding_estimates(
    rows: Sequence[Mapping[str, Any]], metric: str = "normalized",
) -> dict[tuple[str, str], dict[str, Estimate]]:
    """(train dist, loss) -> mode -> ``Estimate`` of the normalised encoding (or of ``metric``,
    e.g. ``"change"`` from initialisation), from encoding.csv.

    One seed: the measurement's own 95% interval. Modes not scored are left out.
    """
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if _float(row.get(metric)) is not None:
            groups[(row["train_dist"], row["loss"], row["mode"])].append(row)
    out: dict[tuple[str, str], dict[str, Estimate]] = defaultdict(dict)
    for (train, loss, mode), group in groups.items():
        out[(train, loss)][mode] = estimate(
            [_float(r[metric]) for r in group],
            interval=_recorded_interval(group, metric),
        )
    return dict(out)


def _verdict_text(rows: Sequence[Mapping[str, Any]], train: str, loss: str, mode: str) -> str:
    """The runs' verdicts of a mode's change from initialisation, e.g. "enhanced 2/3"."""
    found = [r.get("verdict") for r in rows if r["train_dist"] == train and r["loss"] == loss
             and r["mode"] == mode and r.get("verdict")]
    counts = {v: found.count(v) for v in ("enhanced", "suppressed", "unchanged") if v in found}
    return ", ".join(f"{v} {k}/{len(found)}" for v, k in counts.items()) or "–"


def learned_vs_used_table(
    study: StudySpec,
    sens_rows: Sequence[Mapping[str, Any]],
    enc_rows: Sequence[Mapping[str, Any]],
    train: str,
) -> list[str]:
    """Markdown table: per loss and mode, reliance (ID test set) beside the change of the
    encoding from initialisation (trained - untrained) with the runs' verdicts; the raw encoding
    where the runs measured no untrained reference.

    A mode enhanced or kept by training with a low reliance was learned but is not used.
    """
    rel = reliance_estimates(sens_rows)
    change = any(_float(r.get("change")) is not None for r in enc_rows
                 if r["train_dist"] == train)
    enc = encoding_estimates(enc_rows, "change" if change else "normalized")
    id_test = next((t for t, role in tested_sets(sens_rows, train) if role == "id"), None)
    lines = [
        f"| loss | mode | reliance ({markdown_text(id_test or 'ID')}) | "
        + ("change from init | verdict |" if change else "encoding (normalized) |"),
        "|---|---|---|---|" + ("---|" if change else ""),
    ]
    empty = Estimate(math.nan, math.nan, 0, math.nan, math.nan)
    for entry in study.losses:
        used = rel.get((train, id_test, entry.id), {})
        learned = enc.get((train, entry.id), {})
        modes = list(dict.fromkeys([*used, *learned]))
        for mode in modes:
            cells = [used.get(mode, empty), learned.get(mode, empty)]
            text = [c.text(2) if c.k else "–" for c in cells]
            if change:
                text.append(_verdict_text(enc_rows, train, entry.id, mode))
            lines.append(f"| {markdown_text(entry.id)} | {mode} | {' | '.join(text)} |")
    return lines if len(lines) > 2 else []


def change_by_depth_table(
    study: StudySpec, layer_rows: Sequence[Mapping[str, Any]], train: str
) -> list[str]:
    """Markdown table: per loss and mode, the first layer where most runs' encoding changed from
    initialisation (enhanced or suppressed), then each layer's mean change and majority verdict.
    """
    rows = [r for r in layer_rows if r["train_dist"] == train and r.get("verdict")]
    depth = {r["layer"]: int(r["depth"]) for r in rows}
    layers = sorted(depth, key=depth.get)
    if not layers:
        return []
    lines = [f"| loss | mode | first changed at | {' | '.join(layers)} |",
             "|---|---|---|" + "---|" * len(layers)]
    for entry in study.losses:
        mine = [r for r in rows if r["loss"] == entry.id]
        for mode in dict.fromkeys(r["mode"] for r in mine):
            cells, first = [], "–"
            for layer in layers:
                group = [r for r in mine if r["mode"] == mode and r["layer"] == layer]
                verdicts = [r["verdict"] for r in group]
                changes = [c for c in (_float(r.get("change")) for r in group) if c is not None]
                if not changes:
                    cells.append("–")
                    continue
                top = max(dict.fromkeys(verdicts), key=verdicts.count)
                if first == "–" and top != "unchanged" and 2 * verdicts.count(top) > len(group):
                    first = f"{layer} ({top})"
                cells.append(f"{sum(changes) / len(changes):+.2f} {top} "
                             f"{verdicts.count(top)}/{len(group)}")
            lines.append(f"| {markdown_text(entry.id)} | {mode} | {first} | {' | '.join(cells)} |")
    return lines if len(lines) > 2 else []


def _budget_line(study: StudySpec) -> str:
    budget = markdown_text(", ".join(f"{k}={v}" for k, v in study.budget.items()))
    sens = study.sensitivity
    return (
        f"Budget: {budget or 'TrainConfig defaults'}; sensitivity n={sens.n}, "
        f"repeats={sens.repeats}, on {sens.on} test sets."
    )


def summary_markdown(
    study: StudySpec,
    result_rows: Sequence[Mapping[str, Any]],
    sens_rows: Sequence[Mapping[str, Any]],
    *,
    finished: int,
    missing: Sequence[str],
    encoding_rows: Sequence[Mapping[str, Any]] = (),
    primary: Sequence[str] = (),
    layer_rows: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The text of summary.md.

    Args:
        study: the validated study.
        result_rows: rows of results.csv (finished runs only).
        sens_rows: rows of sensitivity.csv.
        finished: number of finished runs.
        missing: ids of the runs not finished (or stale).
        encoding_rows: rows of encoding.csv (for the "learned vs used" tables).
        primary: the primary comparisons' section (``primary.primary_section``), shown first.
        layer_rows: rows of encoding_layers.csv (for the "change by depth" tables).

    Returns:
        Markdown text.
    """
    total = finished + len(missing)
    seeds = ", ".join(map(str, study.seeds))
    one_seed = len(study.seeds) == 1
    lines = [
        f"# Study {markdown_code(study.name)}",
        "",
        *([study.description.strip(), ""] if study.description.strip() else []),
        f"Runs finished: {finished} of {total}. Seeds: {seeds}. {_budget_line(study)}",
        "",
    ]
    if missing:
        shown = ", ".join(markdown_code(m) for m in missing[:MAX_LISTED])
        more = len(missing) - MAX_LISTED
        shown += f" and {more} more (`bin/run_study --dry_run` lists them)" if more > 0 else ""
        lines += [
            f"**Incomplete: {len(missing)} run(s) missing**, left out of every table: {shown}.",
            "",
        ]
    lines += [*primary]
    interval_note = (
        "One seed: cells show the run's value and its 95% test-set interval (accuracy, "
        "sensitivity, specificity: Wilson; AUC: Hanley-McNeil). They ignore seed-to-seed "
        "variation: a difference that holds with one seed may not survive other seeds."
        if one_seed
        else "Cells show mean ± sd over seeds."
    )
    lines += [
        "## How to read",
        "",
        f"{interval_note} **Bold** is the highest mean of a column in its block (one test "
        "set); by itself it claims nothing. Under each table, every pair of losses is compared "
        "on accuracy and AUC with the same seeds and test sets: the difference `a − b` with its "
        + ("95% interval and its uncorrected p, exploratory: the study's claims are its primary "
           "comparisons (stats.py says which tests)." if study.compare else
           "95% interval, and whether it holds after a Holm correction over the table's "
           "comparisons (stats.py says which tests)."),
        "Reliance is a mode's share of the summed mean |ΔP(malignant)| when each mode is "
        f"permuted across the test set (the shares sum to 1). The top {TOP_MODES} modes with a "
        f"share of at least {MIN_RELIANCE:.2f} are listed; `(≈ mode)` marks a mode whose "
        "interval overlaps the one ranked above it (their order is uncertain).",
        "Learned vs used: beside each mode's reliance, its encoding: how well a linear read-out "
        "recovers it from the frozen embedding on the decorrelated training distribution "
        "(every alignment 0), normalised to [0, 1] (0: chance, 1: perfect). High encoding with "
        "low reliance: learned but not used. Where the runs measured the untrained reference "
        "(the same architecture re-initialised), the table shows instead the change from "
        "initialisation (trained − untrained encoding) and the runs' verdicts (enhanced, "
        "suppressed, unchanged: docs/sensitivity.md), and a table by depth says at which layer "
        "each loss's change first appears. results.csv holds, for every OOD test set, the "
        "accuracy of the original head and of a head refitted on a small sample of that set "
        "(`recoverability_*`).",
        "",
    ]
    for entry in study.train:
        if not any(r["train_dist"] == entry.id for r in result_rows):
            continue
        lines += [f"## Trained on {markdown_code(entry.id)}", "", "### Accuracy", ""]
        lines += accuracy_table(study, result_rows, entry.id)
        differences = differences_section(study, result_rows, entry.id)
        if differences:
            lines += ["", *differences]
        if any(r["train_dist"] == entry.id for r in sens_rows):
            lines += ["", "### Modes relied on", ""]
            lines += reliance_table(study, sens_rows, entry.id)
        learned = learned_vs_used_table(study, sens_rows, encoding_rows, entry.id)
        if learned:
            lines += ["", "### Learned vs used", ""]
            lines += learned
        by_depth = change_by_depth_table(study, layer_rows, entry.id)
        if by_depth:
            lines += ["", "### Change from initialisation by depth", ""]
            lines += by_depth
        lines.append("")
    if not result_rows:
        lines += ["No run has finished yet.", ""]
    return "\n".join(lines)
