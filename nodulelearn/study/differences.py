"""The differences between losses under each table of summary.md: every pair of losses on
accuracy and AUC, paired by seed (one seed: the single-run comparison), Holm-corrected over the
table; for a study with primary comparisons (primary.py), the same table without a verdict.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from nodulelearn.markdown import markdown_text
from nodulelearn.study.spec import StudySpec
from nodulelearn.study.stats import (
    ALPHA,
    Difference,
    holm_adjust,
    paired_difference,
    single_difference,
)

# The metrics whose differences between losses are tested (one family per table).
COMPARED = ("accuracy", "auc")


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    return float(value)


def tested_sets(rows: Sequence[Mapping[str, Any]], train: str) -> list[tuple[str, str]]:
    """(test dist, role) of a training distribution, ID first, in first-seen order."""
    seen = dict.fromkeys((r["test_dist"], r["role"]) for r in rows if r["train_dist"] == train)
    return sorted(seen, key=lambda t: t[1] != "id")


def loss_differences(
    study: StudySpec, rows: Sequence[Mapping[str, Any]], train: str
) -> list[tuple[str, Difference]]:
    """Every (test set, metric, pair of losses) difference of one training distribution's table.

    Pairs are taken in the study's loss order (``a − b`` with ``a`` listed first). With two or
    more shared seeds the difference is paired by seed; with one, it is the single-seed
    comparison on the shared test set (stats.py). The p-values are Holm-corrected across every
    difference returned.

    Returns:
        ``(test set, Difference)`` pairs, in table order.
    """
    values: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    sizes: dict[tuple[str, str], float] = {}
    for row in rows:
        if row["train_dist"] != train:
            continue
        for metric in COMPARED:
            value = _float(row.get(metric))
            if value is not None and math.isfinite(value):
                values[(row["test_dist"], row["loss"], metric)][int(row["seed"])] = value
        if _float(row.get("n")):
            key = (row["test_dist"], row["loss"])
            sizes[key] = min(sizes.get(key, math.inf), _float(row["n"]))
    found: list[tuple[str, Difference]] = []
    losses = [e.id for e in study.losses]
    for test, _ in tested_sets(rows, train):
        for metric in COMPARED:
            for i, a in enumerate(losses):
                for b in losses[i + 1 :]:
                    va, vb = values.get((test, a, metric), {}), values.get((test, b, metric), {})
                    seeds = sorted(set(va) & set(vb))
                    if len(seeds) >= 2:
                        diff = paired_difference(
                            a, b, metric, [va[s] for s in seeds], [vb[s] for s in seeds]
                        )
                    elif len(seeds) == 1 and (test, a) in sizes and (test, b) in sizes:
                        n = min(sizes[(test, a)], sizes[(test, b)])
                        diff = single_difference(a, b, metric, va[seeds[0]], vb[seeds[0]], n)
                    else:
                        continue
                    found.append((test, diff))
    adjusted = holm_adjust([d for _, d in found])
    return [(test, d) for (test, _), d in zip(found, adjusted, strict=True)]


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def differences_section(
    study: StudySpec, rows: Sequence[Mapping[str, Any]], train: str
) -> list[str]:
    """Markdown: the table of loss differences and the sentence saying which ones hold; for a
    study that declares primary comparisons, the table without a verdict (exploratory)."""
    found = loss_differences(study, rows, train)
    if not found:
        return []
    if study.compare:
        return _exploratory_section(found, rows, train)
    paired = any(d.k >= 2 for _, d in found)
    how = (
        "Paired by seed (mean difference, 95% t interval, paired t-test)"
        if paired
        else "One seed: Newcombe interval and two-proportion z-test (AUC: Hanley-McNeil), "
        "test-set noise only"
    )
    lines = [
        "### Differences between losses",
        "",
        f"{how}; p-values Holm-corrected over the {len(found)} comparisons of this table. A "
        f"difference holds when its corrected p is below {ALPHA:.2f}.",
        "",
        "| test set | metric | difference [95% interval] | seeds | p | p (Holm) | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    roles = dict(tested_sets(rows, train))
    for test, d in found:
        lines.append(
            f"| {markdown_text(test)} ({roles[test].upper()}) | {d.metric} | "
            f"{markdown_text(d.text())} | {d.k} | {_p_text(d.p)} | {_p_text(d.p_holm)} | "
            f"{'yes' if d.holds else 'no'} |"
        )
    holding = [f"{markdown_text(test)}, {d.metric}: {markdown_text(d.text())}"
               for test, d in found if d.holds]
    lines.append("")
    if holding:
        lines.append(f"Differences that hold ({len(holding)} of {len(found)}): " +
                     "; ".join(holding) + ".")
    else:
        lines.append(
            f"No difference between losses holds ({len(found)} compared): the data do not "
            "support ranking them here."
        )
    return lines


def _exploratory_section(found, rows, train) -> list[str]:
    lines = [
        "### Differences between losses (exploratory)",
        "",
        "Mean difference with its 95% interval and the uncorrected p; no verdict: this study's "
        "claims are its primary comparisons.",
        "",
        "| test set | metric | difference [95% interval] | seeds | p |",
        "|---|---|---|---|---|",
    ]
    roles = dict(tested_sets(rows, train))
    for test, d in found:
        lines.append(f"| {markdown_text(test)} ({roles[test].upper()}) | {d.metric} | "
                     f"{markdown_text(d.text())} | {d.k} | {_p_text(d.p)} |")
    return lines
