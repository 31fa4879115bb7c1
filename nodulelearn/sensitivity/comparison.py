"""Comparison of several analysed models: a run x mode table and heatmap of one effect."""

from __future__ import annotations

import os

import numpy as np

from nodulelearn.datasets import MODE_NAMES
from nodulelearn.sensitivity import figures, report
from nodulelearn.sensitivity.permutation import ANALYSED_MODES

COMPARISON_METRICS = ("reliance", "flip_rate", "mean_abs_delta_p", "delta_accuracy", "delta_auc")


def comparison_matrix(results: dict[str, dict], metric: str = "reliance"):
    """Rows (labels of ``results``), modes and a ``[rows, modes]`` matrix of ``metric``.

    Args:
        results: row label (e.g. run name, or "run:distribution") -> a permutation result.
        metric: one of ``COMPARISON_METRICS``.

    Returns:
        ``(rows, modes, matrix)``; NaN where a mode does not vary (or the effect is undefined).
    """
    if metric not in COMPARISON_METRICS:
        raise ValueError(
            f"Unknown comparison metric {metric!r}. Valid metrics: {', '.join(COMPARISON_METRICS)}."
        )
    rows = list(results)
    modes = [m for m in ANALYSED_MODES if any(m in _by_mode(r) for r in results.values())]
    matrix = np.full((len(rows), len(modes)), np.nan)
    for i, row in enumerate(rows):
        records = _by_mode(results[row])
        for j, mode in enumerate(modes):
            value = records.get(mode, {}).get(metric)
            if value is not None:
                matrix[i, j] = value
    return rows, modes, matrix


def _by_mode(result: dict) -> dict[str, dict]:
    return {r["mode"]: r for r in result["modes"]}


def write_comparison(out_dir: str, results: dict[str, dict], metric: str = "reliance") -> list[str]:
    """Writes ``comparison.csv`` (one row per run and mode) and ``comparison.png`` (heatmap).

    Returns:
        The written paths.
    """
    rows, modes, matrix = comparison_matrix(results, metric)
    csv_rows = []
    for label, result in results.items():
        for record in result["modes"]:
            csv_rows.append({"run": label, "distribution": result.get("distribution"), **record})
    fields = ["run", "distribution", *report.sensitivity_csv_fields()]
    return [
        report.write_csv(os.path.join(out_dir, report.COMPARISON_CSV), csv_rows, fields),
        report.save_figure(
            os.path.join(out_dir, report.COMPARISON_PNG),
            figures.comparison_figure(rows, modes, matrix, metric),
        ),
    ]


ENCODING_FIELDS = ("run", "distribution", "mode", "kind", "varies", "metric", "normalized",
                   "normalized_ci_low", "normalized_ci_high", "score", "score_ci_low",
                   "score_ci_high", "chance", "balanced_accuracy", "n_test")


def write_encoding_comparison(out_dir: str, encodings: dict[str, dict]) -> list[str]:
    """Writes ``encoding_comparison.csv`` (run x mode normalised encoding, with intervals) and
    ``encoding_comparison.png`` (heatmap), beside the reliance comparison.

    Args:
        encodings: run label -> the content of its decodability.json.
    """
    rows = list(encodings)
    modes = [m for m in MODE_NAMES if any(m in _by_mode(e) for e in encodings.values())]
    matrix = np.full((len(rows), len(modes)), np.nan)
    csv_rows = []
    for i, label in enumerate(rows):
        records = _by_mode(encodings[label])
        for j, mode in enumerate(modes):
            value = records.get(mode, {}).get("normalized")
            if value is not None:
                matrix[i, j] = value
        for record in encodings[label]["modes"]:
            csv_rows.append({"run": label, "distribution": encodings[label].get("distribution"),
                             **{k: record.get(k) for k in ENCODING_FIELDS[2:]}})
    return [
        report.write_csv(os.path.join(out_dir, report.ENCODING_COMPARISON_CSV), csv_rows,
                         list(ENCODING_FIELDS)),
        report.save_figure(
            os.path.join(out_dir, report.ENCODING_COMPARISON_PNG),
            figures.comparison_figure(rows, modes, matrix, "normalized encoding"),
        ),
    ]
