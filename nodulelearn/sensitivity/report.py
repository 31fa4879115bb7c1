"""Writing the analysis' results: JSON, CSV, figures (all atomically) and a readable table.

Every file is written to a temporary name in its destination directory and renamed into place
(``os.replace``), so an interrupted analysis never leaves a half-written file behind.
"""

from __future__ import annotations

import io
import os

from nodulelearn.atomic_files import save_figure_atomic, write_csv_atomic, write_json_atomic
from nodulelearn.sensitivity.permutation import RECORD_METRICS

SENSITIVITY_JSON = "sensitivity.json"
SENSITIVITY_CSV = "sensitivity.csv"
SENSITIVITY_PNG = "sensitivity.png"
PARTIAL_DEPENDENCE_JSON = "partial_dependence.json"
PARTIAL_DEPENDENCE_PNG = "partial_dependence.png"
DECODABILITY_JSON = "decodability.json"
ENCODING_PNG = "encoding.png"
RECOVERABILITY_JSON = "recoverability.json"
RECOVERABILITY_CSV = "recoverability.csv"
ENCODING_COMPARISON_CSV = "encoding_comparison.csv"
ENCODING_COMPARISON_PNG = "encoding_comparison.png"
SALIENCY_PNG = "saliency.png"
PATCH_SALIENCY_PNG = "saliency_images.png"  # saliency on real patches (probe --images)
COMPARISON_CSV = "comparison.csv"
COMPARISON_PNG = "comparison.png"


def write_json(path: str, data) -> str:
    """Writes ``data`` as indented standard JSON (NaN as null), atomically; returns ``path``."""
    write_json_atomic(path, data)
    return path


def write_csv(path: str, rows: list[dict], fieldnames: list[str]) -> str:
    """Writes ``rows`` (dicts) as CSV with the given columns, atomically; returns ``path``."""
    write_csv_atomic(path, rows, fieldnames)
    return path


def save_figure(path: str, figure) -> str:
    """Saves a matplotlib figure as PNG, atomically, and closes it; returns ``path``."""
    save_figure_atomic(path, figure)
    return path


def sensitivity_csv_fields() -> list[str]:
    """Columns of ``sensitivity.csv``: one row per mode."""
    fields = ["mode", "kind", "varies"]
    for name in RECORD_METRICS:
        fields += [name, f"{name}_ci_low", f"{name}_ci_high"]
    return [*fields, "n", "repeats"]


def write_sensitivity(out_dir: str, result: dict) -> list[str]:
    """Writes ``sensitivity.json`` (the whole result) and ``sensitivity.csv`` (per-mode rows)."""
    return [
        write_json(os.path.join(out_dir, SENSITIVITY_JSON), result),
        write_csv(
            os.path.join(out_dir, SENSITIVITY_CSV), result["modes"], sensitivity_csv_fields()
        ),
    ]


def write_recoverability(out_dir: str, result: dict) -> list[str]:
    """Writes ``recoverability.json`` (``result``, its ``records`` one per distribution) and
    ``recoverability.csv`` (the records)."""
    from nodulelearn.sensitivity.retraining import FIELDS

    return [
        write_json(os.path.join(out_dir, RECOVERABILITY_JSON), result),
        write_csv(os.path.join(out_dir, RECOVERABILITY_CSV), result["records"], list(FIELDS)),
    ]


def _fmt(value, ci_low=None, ci_high=None, digits=3) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    if ci_low is None or ci_high is None:
        return text
    return f"{text} [{ci_low:.{digits}f}, {ci_high:.{digits}f}]"


def format_table(result: dict, title: str | None = None) -> str:
    """The permutation result as a readable fixed-width table (one line per mode).

    Modes are sorted by reliance (most relied upon first); modes that do not vary in the test
    distribution are listed last as "does not vary".
    """
    base = result["baseline"]
    out = io.StringIO()
    auc = "-" if base.get("auc") is None else f"{base['auc']:.3f}"
    header = title or f"Permutation sensitivity on {result.get('distribution', '?')}"
    out.write(
        f"{header}\n  n={result['n']}, repeats={result['repeats']}, seed={result['seed']}: "
        f"baseline accuracy {base['accuracy']:.3f}, AUC {auc}; 95% intervals in brackets\n"
    )
    adapter = result.get("adapter") or {}
    if adapter.get("input_intensity", "unit") != "unit" or adapter.get("channels", 1) != 1 or (
            adapter.get("outputs", "probability").startswith("softmax")):
        out.write(f"  model read through the adapter: input {adapter['input_intensity']} on "
                  f"{adapter.get('channels', '?')} channel(s), outputs {adapter['outputs']}\n")
    columns = ("mode", "reliance", "flip_rate", "mean_abs_delta_p", "delta_accuracy", "delta_auc")
    widths = (14, 22, 22, 22, 23, 23)
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    records = sorted(
        result["modes"],
        key=lambda r: (not r["varies"], -(r.get("reliance") or 0.0), r["mode"]),
    )
    for record in records:
        if not record["varies"]:
            out.write(f"{record['mode']:<14}  does not vary in this distribution\n")
            continue
        cells = [record["mode"]] + [
            _fmt(record[c], record[f"{c}_ci_low"], record[f"{c}_ci_high"]) for c in columns[1:]
        ]
        out.write("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n")
    return out.getvalue()


def format_encoding(encoding: dict, title: str | None = None) -> str:
    """The encoding result (decodability.json) as a readable table, one line per mode."""
    out = io.StringIO()
    label = f"{encoding['model']}: " if encoding.get("model") else ""
    out.write(f"{title or label + 'encoding on ' + str(encoding.get('distribution'))}\n"
              f"  n={encoding.get('n')}, embedding width {encoding.get('embedding_dim')}; "
              "normalized: 0 chance, 1 perfect linear read-out; 95% intervals in brackets\n")
    out.write(f"{'mode':<14}  {'normalized':<22}  {'metric':<9}  score\n")
    for record in encoding["modes"]:
        if not record["varies"]:
            out.write(f"{record['mode']:<14}  does not vary in this distribution\n")
            continue
        normalized = _fmt(record["normalized"], record["normalized_ci_low"],
                          record["normalized_ci_high"])
        metric = "bal. acc." if record["metric"] == "accuracy" else "R^2"
        score = (record["balanced_accuracy"] if record["metric"] == "accuracy"
                 else record["score"])
        out.write(f"{record['mode']:<14}  {normalized:<22}  {metric:<9}  {_fmt(score)}\n")
    return out.getvalue()


def format_recoverability(records: list[dict]) -> str:
    """Recoverability records as a readable table, one line per distribution."""
    out = io.StringIO()
    out.write("Recoverability (linear head refitted on a small sample of each distribution; "
              "95% Wilson intervals)\n")
    out.write(f"{'distribution':<28}  {'original accuracy':<22}  {'retrained accuracy':<22}  "
              "n_fit\n")
    for r in records:
        original = _fmt(r["original_accuracy"], r["original_accuracy_ci_low"],
                        r["original_accuracy_ci_high"])
        retrained = _fmt(r["retrained_accuracy"], r["retrained_accuracy_ci_low"],
                         r["retrained_accuracy_ci_high"])
        out.write(f"{r['distribution']:<28}  {original:<22}  {retrained:<22}  {r['n_fit']}\n")
    return out.getvalue()
