"""heatmap.png (loss x mode reliance, and encoding beside it) and ood.png (ID vs OOD accuracy
per loss)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodulelearn.atomic_files import save_figure_atomic
from nodulelearn.study.spec import StudySpec
from nodulelearn.study.summary import encoding_estimates, metric_estimates, reliance_estimates

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _subplots(*args, figsize, layout=None, **kwargs):
    # A bare Figure, not pyplot: no backend is chosen or switched, and it renders headless.
    from matplotlib.figure import Figure  # here: importing the study needs no matplotlib

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(*args, **kwargs)


def _id_test(rows: Sequence[Mapping[str, Any]], train: str) -> str | None:
    ids = (r["test_dist"] for r in rows if r["train_dist"] == train and r["role"] == "id")
    return next(ids, None)


def reliance_heatmap(
    study: StudySpec,
    sens_rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    encoding_rows: Sequence[Mapping[str, Any]] = (),
) -> Path | None:
    """Writes ``reliance_heatmap_figure`` to ``path``.

    Returns:
        The written path, or ``None`` if there is nothing to draw.
    """
    fig = reliance_heatmap_figure(study, sens_rows, encoding_rows=encoding_rows)
    return None if fig is None else save_figure_atomic(path, fig)


def reliance_heatmap_figure(
    study: StudySpec,
    sens_rows: Sequence[Mapping[str, Any]],
    *,
    encoding_rows: Sequence[Mapping[str, Any]] = (),
) -> Figure | None:
    """Loss x mode mean reliance on the in-distribution test set, one panel per training dist;
    with ``encoding_rows``, the loss x mode encoding (normalised) in a panel below each, and
    where the runs measured it, its change from initialisation (trained - untrained, diverging
    colours centred at 0) below that.

    Reliance columns: every analysed mode, the ``nuisance`` pseudo-mode included (what no mode
    explains); encoding columns: the modes (nuisance is not a factor a read-out can decode).

    Returns:
        The figure, or ``None`` if there is nothing to draw.
    """
    from nodulelearn.datasets import MODE_NAMES
    from nodulelearn.sensitivity import ANALYSED_MODES

    rel = reliance_estimates(sens_rows)
    enc = encoding_estimates(encoding_rows)
    change = encoding_estimates(encoding_rows, "change")
    panels = []
    for entry in study.train:
        test = _id_test(sens_rows, entry.id)
        losses = [e.id for e in study.losses if (entry.id, test, e.id) in rel]
        if test is not None and losses:
            panels.append((entry.id, test, losses))
    if not panels:
        return None
    modes = list(ANALYSED_MODES)
    # A pseudo-mode a newer analysis adds gets a column too, rather than being dropped.
    modes += sorted({m for cells in rel.values() for m in cells} - set(modes))
    rows = [("reliance", modes, lambda train, test, loss: rel.get((train, test, loss), {}))]
    if any((train, loss) in enc for train, _, losses in panels for loss in losses):
        rows.append(
            ("encoding", list(MODE_NAMES), lambda train, test, loss: enc.get((train, loss), {}))
        )
    if any((train, loss) in change for train, _, losses in panels for loss in losses):
        rows.append(("change from init", list(MODE_NAMES),
                     lambda train, test, loss: change.get((train, loss), {})))
    height = 1.9 + 0.45 * max(len(p[2]) for p in panels)  # title, panel, rotated mode names
    fig, axes = _subplots(
        len(rows), len(panels), figsize=(1.0 + 0.75 * len(modes) * len(panels), height * len(rows)),
        squeeze=False, layout="constrained",  # each row's titles clear the mode names above
    )  # fmt: skip
    image = change_image = None
    for r, (kind, columns, cells_of) in enumerate(rows):
        for k, (ax, (train, test, losses)) in enumerate(zip(axes[r], panels, strict=True)):
            cells = [cells_of(train, test, loss) for loss in losses]
            grid = [[c[m].mean if m in c else math.nan for m in columns] for c in cells]
            diverging = kind == "change from init"
            shown = ax.imshow(grid, vmin=-1.0 if diverging else 0.0, vmax=1.0, aspect="auto",
                              cmap="RdBu_r" if diverging else "viridis")
            if diverging:
                change_image = shown
            else:
                image = shown
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    if math.isfinite(value):
                        dark = abs(value) > 0.6 if diverging else value < 0.6
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if dark else "black")
            ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
            # Panels with the losses of the panel on their left leave the names to it.
            same = k > 0 and losses == panels[k - 1][2]
            ax.set_yticks(range(len(losses)), [] if same else losses)
            where = f"tested on {test}" if kind == "reliance" else "decorrelated training dist"
            ax.set_title(f"{kind}: trained on {train}\n({where})", fontsize=9)
    plain = axes[: len(rows) - (change_image is not None)]
    fig.colorbar(
        image, ax=plain.ravel().tolist(),
        label="reliance (share of mean |ΔP|) / encoding (normalized)", shrink=0.9,
    )  # fmt: skip
    if change_image is not None:
        fig.colorbar(change_image, ax=axes[-1].tolist(), shrink=0.9,
                     label="change from init (trained − untrained)")
    return fig


def ood_accuracy_plot(
    study: StudySpec, rows: Sequence[Mapping[str, Any]], path: str | Path
) -> Path | None:
    """Accuracy on each test set (ID and OOD) per loss, with error bars.

    Error bars: the 95% interval of the mean over seeds (t); with one seed, the 95% test-set
    interval (Wilson; stats.py).

    One panel per training distribution; bars grouped by loss, one bar per test set.

    Returns:
        The written path, or ``None`` if there is nothing to draw.
    """
    est = metric_estimates(rows)
    panels = []
    for entry in study.train:
        tests = list(dict.fromkeys(
            (r["test_dist"], r["role"]) for r in rows if r["train_dist"] == entry.id))
        tests.sort(key=lambda t: t[1] != "id")
        losses = [e.id for e in study.losses if any((entry.id, t, e.id) in est for t, _ in tests)]
        if losses:
            panels.append((entry.id, tests, losses))
    if not panels:
        return None
    fig, axes = _subplots(
        1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False, sharey=True
    )
    for ax, (train, tests, losses) in zip(axes[0], panels, strict=True):
        width = 0.8 / len(tests)
        for t, (test, role) in enumerate(tests):
            means, low, high, xs = [], [], [], []
            for i, loss in enumerate(losses):
                cell = est.get((train, test, loss))
                if cell is None:
                    continue
                acc = cell["accuracy"]
                xs.append(i - 0.4 + width * (t + 0.5))
                means.append(acc.mean)
                # max(0, .): a Wilson bound at accuracy 1 may round a hair below the mean.
                low.append(max(0.0, acc.mean - acc.lo) if acc.has_interval else 0.0)
                high.append(max(0.0, acc.hi - acc.mean) if acc.has_interval else 0.0)
            ax.bar(xs, means, width, yerr=[low, high], capsize=2,
                   label=f"{test} ({role.upper()})", hatch=None if role == "id" else "//")
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(len(losses)), losses, rotation=30, ha="right")
        ax.set_ylim(0.0, 1.05)
        ax.set_title(f"trained on {train}", fontsize=9)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2)
    one_seed = len(study.seeds) == 1
    axes[0][0].set_ylabel(
        "accuracy (bars: 95% test-set interval)" if one_seed else "accuracy (mean, 95% interval)"
    )
    return save_figure_atomic(path, fig)
