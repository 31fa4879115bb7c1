"""summary.md: accuracy and reliance per loss and training distribution, mean ± sd over seeds.

Within each (training distribution, test set) block, the best loss of a column is bold and every
loss whose interval overlaps the best one's is marked ``≈``: their difference is not supported by
the data (stats.py says which interval is used). A loss neither bold nor ``≈`` is worse than the
best by more than the intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from nodulelearn.study.spec import StudySpec
from nodulelearn.study.stats import Estimate, estimate

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
            metric: estimate([_float(r.get(metric)) for r in group], metric=metric, n=n)
            for metric, _ in METRICS
        }
    return out


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


def _mark(cell: Estimate, best: Estimate, is_best: bool, compare: bool) -> str:
    text = cell.text()
    if not compare:
        return text
    if is_best:
        return f"**{text}**"
    return f"{text} ≈" if cell.overlaps(best) else text


def _test_sets(rows: Sequence[Mapping[str, Any]], train: str) -> list[tuple[str, str]]:
    """(test dist, role) of a training distribution, ID first, in first-seen order."""
    seen = dict.fromkeys((r["test_dist"], r["role"]) for r in rows if r["train_dist"] == train)
    return sorted(seen, key=lambda t: t[1] != "id")


def accuracy_table(
    study: StudySpec, rows: Sequence[Mapping[str, Any]], train: str
) -> list[str]:
    """Markdown table of one training distribution: a block of losses per test set."""
    est = metric_estimates(rows)
    lines = [
        "| test set | loss | seeds | " + " | ".join(label for _, label in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for test, role in _test_sets(rows, train):
        losses = [e.id for e in study.losses if (train, test, e.id) in est]
        cells = {loss: est[(train, test, loss)] for loss in losses}
        for loss in losses:
            marked = []
            for metric, _ in METRICS:
                column = {name: cells[name][metric] for name in losses}
                best_loss = max(column, key=lambda name: column[name].mean)
                best = column[best_loss]
                compare = len(losses) > 1 and best.has_interval
                marked.append(_mark(column[loss], best, loss == best_loss, compare))
            seeds = cells[loss]["accuracy"].k
            row = f"| {test} ({role.upper()}) | {loss} | {seeds} | " + " | ".join(marked)
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
        text = f"{mode} {value.text(2)}"
        if value.k == 1 and value.has_interval:
            text += f" [{value.lo:.2f}, {value.hi:.2f}]"
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
    for test, role in _test_sets(sens_rows, train):
        for entry in study.losses:
            if (train, test, entry.id) in rel:
                text = top_modes_text(rel[(train, test, entry.id)])
                lines.append(f"| {test} ({role.upper()}) | {entry.id} | {text} |")
    return lines


def _budget_line(study: StudySpec) -> str:
    budget = ", ".join(f"{k}={v}" for k, v in study.budget.items())
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
) -> str:
    """The text of summary.md.

    Args:
        study: the validated study.
        result_rows: rows of results.csv (finished runs only).
        sens_rows: rows of sensitivity.csv.
        finished: number of finished runs.
        missing: ids of the runs not finished (or stale).

    Returns:
        Markdown text.
    """
    total = finished + len(missing)
    seeds = ", ".join(map(str, study.seeds))
    one_seed = len(study.seeds) == 1
    lines = [
        f"# Study `{study.name}`",
        "",
        *([study.description.strip(), ""] if study.description.strip() else []),
        f"Runs finished: {finished} of {total}. Seeds: {seeds}. {_budget_line(study)}",
        "",
    ]
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:MAX_LISTED])
        more = len(missing) - MAX_LISTED
        shown += f" and {more} more (`bin/run_study --dry_run` lists them)" if more > 0 else ""
        lines += [
            f"**Incomplete: {len(missing)} run(s) missing**, left out of every table: {shown}.",
            "",
        ]
    interval_note = (
        "One seed: cells show the single run; the intervals behind the marks are 95% test-set "
        "sampling intervals (accuracy-type metrics: normal approximation; AUC: Hanley-McNeil; "
        "reliance: the analysis' bootstrap interval). They ignore seed-to-seed variation, so "
        "even an unmarked difference may not survive other seeds."
        if one_seed
        else "Cells show mean ± sd over seeds; the marks compare the mean ± sd intervals."
    )
    lines += [
        "## How to read",
        "",
        "In each block (one test set), **bold** is the best loss of the column; `≈` marks a loss "
        "whose interval overlaps the best one's: the data do not support a difference. "
        + interval_note,
        "Reliance is a mode's share of the summed mean |ΔP(malignant)| when each mode is "
        f"permuted across the test set (the shares sum to 1). The top {TOP_MODES} modes with a "
        f"share of at least {MIN_RELIANCE:.2f} are listed; `(≈ mode)` marks a mode whose "
        "interval overlaps the one ranked above it.",
        "",
    ]
    for entry in study.train:
        if not any(r["train_dist"] == entry.id for r in result_rows):
            continue
        lines += [f"## Trained on `{entry.id}`", "", "### Accuracy", ""]
        lines += accuracy_table(study, result_rows, entry.id)
        if any(r["train_dist"] == entry.id for r in sens_rows):
            lines += ["", "### Modes relied on", ""]
            lines += reliance_table(study, sens_rows, entry.id)
        lines.append("")
    if not result_rows:
        lines += ["No run has finished yet.", ""]
    return "\n".join(lines)
