"""The outputs of a study with sweeps: sweep.csv, curves.png and (2-D sweeps) bias.png.

``sweep.csv``: one row per run x test set of every swept entry: the loss, the base entry, one
column per swept spec path, the seed, the test set and its role, accuracy and AUC, the reliance on
analysed mode, ``nuisance`` included (``reliance_<mode>``, from the sensitivity analysis on that
test set) and, on the
conflict test set, the shortcut bias.

Shortcut bias (after Hermann et al. 2023, "On the foundations of shortcut learning", Fig. 2): on
a test set where the core mode and the shortcut mode indicate different classes for every sample,

    shortcut bias = P(prediction follows the shortcut) - P(prediction follows the core),

a number in [-1, 1]: +1 the model always follows the shortcut, -1 always the core, 0 either
equally often (for a binary label every prediction follows exactly one of the two, so it is
``1 - 2 * P(prediction follows the core)``). The conflict test set is the OOD set of the entry in
which one of the two modes has alignment +1 and the other -1 (``margin_noise_reversed``: the
label follows the margin, the noise look is the other class's); there, following the core is
being correct when the core has alignment +1, so bias = 1 - 2 x accuracy (2 x accuracy - 1 when
the shortcut has alignment +1).

The core and shortcut modes of an entry are its ``core`` / ``shortcut`` keys; when they are not
given, the shortcut is the mode whose alignment is swept and the core the other mode with
alignment 1 in the base training distribution.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nodulelearn.atomic_files import save_figure_atomic, write_csv_atomic
from nodulelearn.markdown import markdown_code, markdown_text
from nodulelearn.study import stats
from nodulelearn.study.plan import eval_dists
from nodulelearn.study.spec import StudySpec, TrainEntry
from nodulelearn.study.sweep import format_value, swept_paths

log = logging.getLogger(__name__)


def shortcut_bias(predictions, core_class, shortcut_class) -> float:
    """P(prediction = shortcut's class) - P(prediction = core's class) where the two disagree.

    Args:
        predictions: predicted classes (0/1), one per sample.
        core_class: the class the core mode's value indicates, per sample.
        shortcut_class: the class the shortcut mode's value indicates, per sample.

    Returns:
        The bias in [-1, 1], over the samples where ``core_class != shortcut_class``.

    Raises:
        ValueError: shapes differ, or no sample has core and shortcut disagreeing.
    """
    pred, core, short = (np.asarray(a).reshape(-1) for a in (predictions, core_class,
                                                              shortcut_class))
    if not pred.shape == core.shape == short.shape:
        raise ValueError(
            f"predictions, core_class and shortcut_class must have one entry per sample. "
            f"Received shapes {pred.shape}, {core.shape}, {short.shape}."
        )
    conflict = core != short
    if not conflict.any():
        raise ValueError(
            "Shortcut bias needs samples on which core and shortcut disagree; none do "
            f"(of {pred.size} samples)."
        )
    p = pred[conflict]
    return float(np.mean(p == short[conflict]) - np.mean(p == core[conflict]))


def bias_from_accuracy(accuracy: float, core_alignment: float) -> float:
    """Shortcut bias on a conflict set (core and shortcut alignments +1 / -1) from accuracy.

    The label follows the mode with alignment +1, so a correct prediction follows it and a wrong
    one the other mode: ``1 - 2 acc`` when the core has alignment +1, ``2 acc - 1`` otherwise.
    """
    if core_alignment not in (1.0, -1.0):
        raise ValueError(f"core_alignment must be +1 or -1 on a conflict set. Received: "
                         f"{core_alignment!r}")
    return 1.0 - 2.0 * accuracy if core_alignment == 1.0 else 2.0 * accuracy - 1.0


def pair_modes(entry: TrainEntry) -> tuple[str | None, str | None]:
    """``(core, shortcut)`` of a swept entry: its keys, else inferred (module docstring)."""
    from nodulelearn.datasets import load_spec

    swept = entry.sweep or entry.point
    aligned = [p.split(".")[1] for p, _ in swept
               if p.startswith("modes.") and p.endswith(".alignment")]
    shortcut = entry.shortcut or (aligned[0] if len(aligned) == 1 else None)
    core = entry.core
    if core is None and shortcut is not None:
        spec = load_spec(entry.dist)
        others = [m for m, s in spec.modes.items()
                  if m != shortcut and s.fixed is None and s.alignment == 1.0]
        core = others[0] if len(others) == 1 else None
    return core, shortcut


def conflict_alignment(ref: str, core: str | None, shortcut: str | None) -> float | None:
    """The core's alignment (+1 or -1) if ``ref`` is a conflict set for the pair, else None."""
    from nodulelearn.datasets import load_spec

    if core is None or shortcut is None:
        return None
    modes = load_spec(ref).modes
    a, b = modes[core], modes[shortcut]
    if a.fixed is None and b.fixed is None and {a.alignment, b.alignment} == {1.0, -1.0}:
        return a.alignment
    return None


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def sweep_rows(study: StudySpec, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of sweep.csv (module docstring), from the records of the finished runs."""
    from nodulelearn.sensitivity import ANALYSED_MODES

    entries = {e.id: e for e in study.train if e.point}
    paths = swept_paths(study)
    rows = []
    for record in records:
        entry = entries.get(record["train_dist"])
        if entry is None:
            continue
        core, shortcut = pair_modes(entry)
        point = dict(entry.point)
        refs = {t.label: t.ref for t in eval_dists(entry)}  # here, not where the run ran
        for test in record["tests"]:
            metrics = record["metrics"].get(test["label"], {})
            row: dict[str, Any] = {
                "run_id": record["run_id"], "loss": record["loss"], "train_dist": entry.base,
                **{p: point.get(p, "") for p in paths},
                "seed": record["seed"], "test_dist": test["label"], "role": test["role"],
                "core": core or "", "shortcut": shortcut or "",
                "accuracy": metrics.get("accuracy"), "auc": metrics.get("auc"),
                "n": metrics.get("n"),
            }  # fmt: skip
            sens = record["sensitivity"].get(test["label"])
            by_mode = {m["mode"]: m for m in (sens or {}).get("modes", [])}
            for mode in ANALYSED_MODES:
                cell = by_mode.get(mode, {})
                row[f"reliance_{mode}"] = cell.get("reliance", "")
                row[f"reliance_{mode}_lo"] = cell.get("reliance_ci_low", "")
                row[f"reliance_{mode}_hi"] = cell.get("reliance_ci_high", "")
            sign = conflict_alignment(refs.get(test["label"], test["ref"]), core, shortcut)
            acc = _float(metrics.get("accuracy"))
            row["shortcut_bias"] = (
                bias_from_accuracy(acc, sign) if sign is not None and math.isfinite(acc) else ""
            )
            rows.append(row)
    return rows


def _subplots(*args, figsize, layout=None, **kwargs):
    # A bare Figure, not pyplot: no backend is chosen or switched, and it renders headless.
    from matplotlib.figure import Figure  # here: importing the study needs no matplotlib

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def _estimate(rows, key: str, metric: str = "") -> stats.Estimate:
    values = [_float(r[key]) for r in rows]
    if len(rows) == 1 and f"{key}_lo" in rows[0]:  # one seed: the analysis' own interval
        return stats.estimate(values, interval=(_float(rows[0][f"{key}_lo"]),
                                                _float(rows[0][f"{key}_hi"])))
    return stats.estimate(values, metric=metric, n=_float(rows[0].get("n")) if rows else None)


def _swept_entries(study: StudySpec) -> dict[str, list[TrainEntry]]:
    groups: dict[str, list[TrainEntry]] = {}
    for entry in study.train:
        if entry.point:
            groups.setdefault(entry.base, []).append(entry)
    return groups


def _axes_values(points: Sequence[TrainEntry]) -> list[tuple[str, list[Any]]]:
    axes: dict[str, list[Any]] = {}
    for entry in points:
        for path, value in entry.point:
            if value not in axes.setdefault(path, []):
                axes[path].append(value)
    return list(axes.items())


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def curves_figure(study: StudySpec, rows: Sequence[Mapping[str, Any]], path: str | Path):
    """curves.png: per swept entry and loss, reliance on core and shortcut (ID test set) and the
    accuracy on every test set against the swept value (last swept field; a 2-D sweep gets one
    pair of panels per value of its first field). Intervals: mean ± sd over seeds; one seed: the
    sensitivity analysis' interval (reliance) or the 95% test-set interval (accuracy).

    Returns:
        The written path, or ``None`` when no swept run has finished.
    """
    groups = _swept_entries(study)
    panels = []  # (base, loss, fixed (path, value) or None, x path, x values)
    for base, points in groups.items():
        axes = _axes_values(points)
        x_path, x_values = axes[-1]
        outer = [None] if len(axes) == 1 else [(axes[0][0], v) for v in axes[0][1]]
        for loss in (e.id for e in study.losses):
            if any(r["train_dist"] == base and r["loss"] == loss for r in rows):
                panels.append((base, loss, outer, x_path, x_values))
    if not panels:
        return None
    n_cols = 2 * max(len(p[2]) for p in panels)
    fig, grid = _subplots(len(panels), n_cols, figsize=(3.2 * n_cols, 2.6 * len(panels)),
                             squeeze=False)
    for i, (base, loss, outer, x_path, x_values) in enumerate(panels):
        numeric = _numeric(x_values)
        xs = list(x_values) if numeric else list(range(len(x_values)))
        for j, fixed in enumerate(outer):
            mine = [r for r in rows if r["train_dist"] == base and r["loss"] == loss
                    and (fixed is None or r[fixed[0]] == fixed[1])]
            rel_ax, acc_ax = grid[i][2 * j], grid[i][2 * j + 1]
            core, shortcut = (mine[0]["core"], mine[0]["shortcut"]) if mine else ("", "")
            for mode, style in ((core, "-o"), (shortcut, "--s")):
                if not mode:
                    continue
                _line(rel_ax, xs, x_values, [r for r in mine if r["role"] == "id"],
                      x_path, f"reliance_{mode}", "", style, f"{mode}")
            tests = list(dict.fromkeys((r["test_dist"], r["role"]) for r in mine))
            for test, role in tests:
                _line(acc_ax, xs, x_values, [r for r in mine if r["test_dist"] == test],
                      x_path, "accuracy", "accuracy", "-o" if role == "id" else "--^",
                      f"{test} ({role.upper()})")
            where = "" if fixed is None else f", {fixed[0]}={format_value(fixed[1])}"
            rel_ax.set_title(f"{loss} on {base}{where}\nreliance (ID test set)", fontsize=8)
            acc_ax.set_title(f"{loss} on {base}{where}\naccuracy", fontsize=8)
            acc_ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
            for ax, top in ((rel_ax, 1.0), (acc_ax, 1.02)):
                ax.set_ylim(0.0 if ax is rel_ax else 0.3, top)
                ax.set_xlabel(x_path, fontsize=8)
                if not numeric:
                    ax.set_xticks(xs, [format_value(v) for v in x_values], fontsize=7)
                ax.legend(fontsize=6)
        for j in range(2 * len(outer), n_cols):
            grid[i][j].axis("off")
    seeds = len(study.seeds)
    fig.suptitle("mean ± sd over seeds" if seeds > 1 else
                 "one seed: reliance ± its sensitivity interval, accuracy ± 95% test-set interval",
                 fontsize=8)
    fig.tight_layout()
    return save_figure_atomic(path, fig)


def _line(ax, xs, x_values, rows, x_path, key, metric, style, label):
    means, lo, hi, used = [], [], [], []
    for x, value in zip(xs, x_values, strict=True):
        at = [r for r in rows if r[x_path] == value and r.get(key) not in ("", None)]
        if not at:
            continue
        est = _estimate(at, key, metric)
        used.append(x)
        means.append(est.mean)
        # An interval need not hold the mean (a bootstrap interval of the reliance may lie
        # beside it): the bars then reach the interval's nearer end only from the mean's side.
        lo.append(max(0.0, est.mean - est.lo) if est.has_interval else 0.0)
        hi.append(max(0.0, est.hi - est.mean) if est.has_interval else 0.0)
    if used:
        ax.errorbar(used, means, yerr=[lo, hi], fmt=style, capsize=2, markersize=3, label=label)


def bias_figure(study: StudySpec, rows: Sequence[Mapping[str, Any]], path: str | Path):
    """bias.png: per 2-D swept entry and loss, the mean shortcut bias over seeds on the grid
    (rows: the first swept field, columns: the second), from -1 (core) to +1 (shortcut).

    Returns:
        The written path, or ``None`` when no 2-D sweep has a finished run on a conflict set.
    """
    panels = []
    for base, points in _swept_entries(study).items():
        axes = _axes_values(points)
        if len(axes) != 2:
            continue
        for loss in (e.id for e in study.losses):
            mine = [r for r in rows if r["train_dist"] == base and r["loss"] == loss
                    and r["shortcut_bias"] not in ("", None)]
            if mine:
                panels.append((base, loss, axes, mine))
    if not panels:
        return None
    fig, grid = _subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False,
                          layout="constrained")
    image = None
    for n, (ax, (base, loss, axes, mine)) in enumerate(zip(grid[0], panels, strict=True)):
        (y_path, y_values), (x_path, x_values) = axes
        cells = np.full((len(y_values), len(x_values)), np.nan)
        for i, y in enumerate(y_values):
            for j, x in enumerate(x_values):
                at = [_float(r["shortcut_bias"]) for r in mine if r[y_path] == y and r[x_path] == x]
                if at:
                    cells[i, j] = float(np.mean(at))
                    ax.text(j, i, f"{cells[i, j]:+.2f}", ha="center", va="center", fontsize=7)
        image = ax.imshow(cells, vmin=-1.0, vmax=1.0, cmap="coolwarm", origin="lower",
                          aspect="auto")
        ax.set_xticks(range(len(x_values)), [format_value(v) for v in x_values], fontsize=7)
        ax.set_yticks(range(len(y_values)), [format_value(v) for v in y_values], fontsize=7)
        ax.set_xlabel(x_path, fontsize=8)
        if n == 0 or panels[n - 1][0] != base:  # one label per entry, not one per panel
            ax.set_ylabel(y_path, fontsize=8)
        ax.set_title(f"{loss} on {base}\n(on {mine[0]['test_dist']})", fontsize=8)
    fig.colorbar(image, ax=grid[0].tolist(), shrink=0.9,
                 label="shortcut bias = P(follows shortcut) − P(follows core)")
    return save_figure_atomic(path, fig)


def _num(value: float, digits: int = 2) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.{digits}f}".replace("-", "−")


def bias_comparisons(study: StudySpec, rows: Sequence[Mapping[str, Any]]
                     ) -> dict[str, list[stats.Difference]]:
    """Per swept entry, every pair of losses compared on the shortcut bias over the whole sweep.

    The runs of two losses are paired by grid point and seed (each pair: two models trained on
    the same data), ``a − b`` is averaged over the pairs, with its t interval and the exact sign
    test (``stats.sign_test_difference``), Holm-corrected over the pairs of losses of the entry.
    It asks whether a loss shifts the bias across the sweep; the per-point differences (three
    seeds) rarely can.
    """
    losses = [e.id for e in study.losses]
    found: dict[str, list[stats.Difference]] = {}
    for base in _swept_entries(study):
        by_run: dict[tuple[str, str, Any], float] = {}
        for r in rows:
            if r["train_dist"] == base and r["shortcut_bias"] not in ("", None):
                point = tuple((p, r[p]) for p in swept_paths(study))
                by_run[(r["loss"], point, r["seed"])] = _float(r["shortcut_bias"])
        differences = []
        for i, a in enumerate(losses):
            for b in losses[i + 1:]:
                keys = sorted(k[1:] for k in by_run if k[0] == a and (b, *k[1:]) in by_run)
                if len(keys) >= 2:
                    differences.append(stats.sign_test_difference(
                        a, b, "shortcut_bias", [by_run[(a, *k)] for k in keys],
                        [by_run[(b, *k)] for k in keys]))
        if differences:
            found[base] = stats.holm_adjust(differences)
    return found


def _holds(d: stats.Difference) -> bool:
    """Supported: the sign test holds after Holm and the mean's interval excludes 0."""
    return d.holds and (d.lo > 0 or d.hi < 0)


def sweep_summary_markdown(study: StudySpec, records: Sequence[Mapping[str, Any]]) -> str:
    """summary.md's sweep section: the mean shortcut bias per point and loss, and the losses
    compared over the whole sweep (``bias_comparisons``); empty without a conflict set."""
    if not any(e.point for e in study.train):
        return ""
    rows = sweep_rows(study, records)
    comparisons = bias_comparisons(study, rows)
    losses = [e.id for e in study.losses]
    lines = []
    for base, points in _swept_entries(study).items():
        mine = [r for r in rows if r["train_dist"] == base and r["shortcut_bias"] not in ("", None)]
        if not mine:
            continue
        paths = [path for path, _ in _axes_values(points)]
        lines += [f"\n## Shortcut bias over the sweep of {markdown_code(base)} (on "
                  f"{markdown_code(mine[0]['test_dist'])})\n",
                  "P(follows the shortcut) − P(follows the core), mean over seeds [95% t "
                  "interval] (one seed: the value):\n",
                  "| " + " | ".join(map(markdown_text, paths + losses)) + " |",
                  "|" + "---|" * (len(paths) + len(losses))]
        for entry in points:
            point = dict(entry.point)
            cells = []
            for loss in losses:
                values = [_float(r["shortcut_bias"]) for r in mine if r["loss"] == loss
                          and all(r[p] == point[p] for p in paths)]
                e = stats.estimate(values, interval=(math.nan, math.nan))
                cells.append("" if e.k == 0 else _num(e.mean) if e.k == 1
                             else f"{_num(e.mean)} [{_num(e.lo)}, {_num(e.hi)}]")
            values = [markdown_text(format_value(point[p])) for p in paths]
            lines.append("| " + " | ".join(values + cells) + " |")
        if base in comparisons:
            lines += ["", "Loss against loss over the whole sweep, paired by point and seed: mean "
                      "difference of the bias [95% t interval], exact sign test, Holm over the "
                      "pairs of losses; holds: Holm p < 0.05 and the interval excludes 0:\n",
                      "| a − b | difference | pairs | sign test p | Holm p | holds |",
                      "|---|---|---|---|---|---|"]
            for d in comparisons[base]:
                lines.append(f"| {markdown_text(d.a)} − {markdown_text(d.b)} | "
                             f"{_num(d.diff, 3)} [{_num(d.lo, 3)}, "
                             f"{_num(d.hi, 3)}] | {d.k} | {d.p:.2g} | {d.p_holm:.2g} | "
                             f"{'yes' if _holds(d) else 'no'} |")
    return "\n".join(lines) + ("\n" if lines else "")


#: The files write_sweep_outputs may write (aggregation reads and cleans up only its own files).
OUTPUTS = ("sweep.csv", "curves.png", "bias.png")


def write_sweep_outputs(study: StudySpec, records: Sequence[Mapping[str, Any]],
                        out_dir: str | Path) -> list[Path]:
    """Writes sweep.csv, curves.png and (2-D sweeps) bias.png of an expanded study.

    Returns:
        The paths written; nothing for a study without sweeps.
    """
    if not any(e.point for e in study.train):
        return []
    out_dir = Path(out_dir)
    rows = sweep_rows(study, records)
    lead = ["run_id", "loss", "train_dist", *swept_paths(study), "seed", "test_dist", "role"]
    columns = list(dict.fromkeys(lead + [k for r in rows for k in r]))
    table, curves, bias = (out_dir / name for name in OUTPUTS)
    written = [write_csv_atomic(table, rows, columns)]
    for figure in (curves_figure(study, rows, curves), bias_figure(study, rows, bias)):
        if figure is not None:
            written.append(figure)
    if any(len(_axes_values(p)) == 2 for p in _swept_entries(study).values()) and not any(
        r["shortcut_bias"] not in ("", None) for r in rows
    ):
        log.warning("No bias.png: no finished 2-D sweep run was tested on a conflict set (an OOD "
                    "set where the core and the shortcut have alignments +1 and -1).")
    return written
