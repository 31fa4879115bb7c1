"""Figures of the analysis: each function returns a ``matplotlib.figure.Figure``.

Figures are built on ``Figure`` objects, not through pyplot: no backend is chosen or switched
(importing this module changes nothing in a notebook), and they render headless.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from nodulelearn.datasets import MODE_NAMES


def _subplots(*args, figsize, **kwargs):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)

PANELS = (
    ("reliance", "reliance (share of mean |dP|)"),
    ("flip_rate", "flip rate"),
    ("mean_abs_delta_p", "mean |dP|"),
    ("delta_accuracy", "accuracy drop"),
    ("delta_auc", "AUC drop"),
)


def sensitivity_figure(result: dict, title: str | None = None):
    """Horizontal bars per mode, one panel per effect, 95% intervals as error bars.

    Modes that do not vary in the test distribution get no bar and are marked on the axis.
    """
    records = result["modes"]
    labels = [r["mode"] if r["varies"] else f"{r['mode']} (does not vary)" for r in records]
    y = np.arange(len(records))
    fig, axes = _subplots(1, len(PANELS), figsize=(3.2 * len(PANELS), 0.45 * len(records) + 1.6),
                          sharey=True)
    for ax, (key, name) in zip(axes, PANELS, strict=True):
        values = np.array([np.nan if r[key] is None else r[key] for r in records], float)
        low = np.array([np.nan if r[f"{key}_ci_low"] is None else r[f"{key}_ci_low"]
                        for r in records], float)
        high = np.array([np.nan if r[f"{key}_ci_high"] is None else r[f"{key}_ci_high"]
                         for r in records], float)
        err = np.stack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
        ax.barh(y, np.nan_to_num(values), xerr=np.nan_to_num(err), color="tab:blue", alpha=0.8,
                error_kw={"ecolor": "black", "capsize": 3, "lw": 1})
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    base = result["baseline"]
    auc = "n/a" if base.get("auc") is None else f"{base['auc']:.3f}"
    fig.suptitle(
        title or f"Permutation sensitivity on {result.get('distribution', '?')} "
        f"(n={result['n']}, {result['repeats']} repeats; baseline acc {base['accuracy']:.3f}, "
        f"AUC {auc})", fontsize=11,
    )
    fig.tight_layout()
    return fig


def partial_dependence_figure(curves: dict, title: str | None = None):
    """One panel per mode: mean P(malignant) (all, benign, malignant) over the mode's grid."""
    modes = [m for m in MODE_NAMES if m in curves]
    cols = 4
    rows = int(np.ceil(len(modes) / cols))
    fig, axes = _subplots(rows, cols, figsize=(3.3 * cols, 2.8 * rows), squeeze=False)
    for ax, mode in zip(axes.flat, modes, strict=False):
        curve = curves[mode]
        x = np.arange(len(curve["values"])) if curve["kind"] == "categorical" else curve["values"]
        mean, sem = np.array(curve["mean_p"]), np.array(curve["sem_p"])
        ax.plot(x, mean, "o-", color="black", label="all")
        ax.fill_between(x, mean - 1.96 * sem, mean + 1.96 * sem, color="black", alpha=0.15)
        for key, colour, name in (("mean_p_benign", "tab:green", "benign"),
                                  ("mean_p_malignant", "tab:red", "malignant")):
            values = np.array([np.nan if v is None else v for v in curve[key]], float)
            ax.plot(x, values, ".--", color=colour, label=name, alpha=0.8)
        if curve["kind"] == "categorical":
            ax.set_xticks(x, curve["labels"], fontsize=8)
        else:
            ax.set_xlabel(curve["unit"], fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(mode + ("" if curve["varies"] else " (fixed in test)"), fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(modes):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("mean P(malignant)")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title or "Partial dependence", fontsize=11)
    fig.tight_layout()
    return fig


def saliency_figure(maps: dict, title: str | None = None):
    """Rows: test images; columns: image, Grad-CAM overlay (if any), occlusion drop of P."""
    images, gradcam, occlusion = maps["images"], maps["gradcam"], maps["occlusion"]
    cols = 3 if gradcam is not None else 2
    fig, axes = _subplots(len(images), cols, figsize=(2.4 * cols, 2.4 * len(images)),
                          squeeze=False)
    limit = max(float(np.abs(occlusion).max()), 1e-6)
    for row, image in enumerate(images):
        label = "malignant" if maps["labels"][row] == 1 else "benign"
        axes[row, 0].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_ylabel(f"{label}\nP={maps['probs'][row]:.2f}", fontsize=8)
        if gradcam is not None:
            axes[row, 1].imshow(image, cmap="gray", vmin=0, vmax=1)
            axes[row, 1].imshow(gradcam[row], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        axes[row, -1].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[row, -1].imshow(occlusion[row], cmap="coolwarm", alpha=0.55, vmin=-limit, vmax=limit)
    names = ["image", "Grad-CAM (P malignant)", "occlusion: drop of P"]
    for col, name in enumerate(names if gradcam is not None else [names[0], names[2]]):
        axes[0, col].set_title(name, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    subtitle = maps.get("gradcam_message")
    fig.suptitle((title or "Saliency (tf-explain)") + (f"\n{subtitle}" if subtitle else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


def comparison_figure(rows: list[str], modes: list[str], matrix: np.ndarray, metric: str):
    """Heatmap run x mode of ``metric``; NaN cells (mode not varying) are grey and marked."""
    fig, ax = _subplots(figsize=(1.1 * len(modes) + 3, 0.5 * len(rows) + 1.8))
    masked = np.ma.masked_invalid(matrix)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    top = float(np.nanmax(matrix)) if np.isfinite(matrix).any() else 1.0
    image = ax.imshow(masked, cmap=cmap, aspect="auto", vmin=0.0, vmax=max(top, 1e-6))
    for (i, j), value in np.ndenumerate(matrix):
        text = "n/v" if np.isnan(value) else f"{value:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="black" if np.isnan(value) or value > 0.5 * np.nanmax(matrix) else "white")
    ax.set_xticks(np.arange(len(modes)), modes, rotation=30, ha="right")
    ax.set_yticks(np.arange(len(rows)), rows)
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(f"{metric} per run and mode (n/v: mode does not vary)", fontsize=10)
    fig.tight_layout()
    return fig


def encoding_figure(encoding: dict, title: str | None = None):
    """Bars of each mode's normalised encoding score in [0, 1] with its 95% interval."""
    records = encoding["modes"]
    labels = [r["mode"] if r["varies"] else f"{r['mode']} (does not vary)" for r in records]
    values = np.array([np.nan if r["normalized"] is None else r["normalized"] for r in records])
    low = np.array([np.nan if r["normalized_ci_low"] is None else r["normalized_ci_low"]
                    for r in records])
    high = np.array([np.nan if r["normalized_ci_high"] is None else r["normalized_ci_high"]
                     for r in records])
    fig, ax = _subplots(figsize=(5.5, 0.4 * len(records) + 1.4))
    y = np.arange(len(records))
    err = np.stack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
    ax.barh(y, np.nan_to_num(values), xerr=np.nan_to_num(err), color="tab:green", alpha=0.8,
            error_kw={"ecolor": "black", "capsize": 3, "lw": 1})
    baseline = np.array([np.nan if r.get("baseline_normalized") is None
                         else r["baseline_normalized"] for r in records])
    if np.isfinite(baseline).any():  # the untrained reference, with its verdict
        ax.plot(baseline, y, "k|", markersize=14, mew=2, label="untrained (mean of inits)")
        for yi, r in zip(y, records, strict=True):
            if r.get("verdict") in ("enhanced", "suppressed"):
                ax.annotate(r["verdict"], (1.0, yi), ha="right", va="center", fontsize=7)
        ax.legend(loc="lower right", fontsize=7)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("normalised encoding (0: chance, 1: perfect linear read-out)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"Encoding on {encoding.get('distribution', '?')} "
                 f"(n={encoding.get('n')}, D={encoding.get('embedding_dim')})", fontsize=10)
    fig.tight_layout()
    return fig


def encoding_layers_figure(rows: list[dict], title: str | None = None):
    """Change from initialisation by depth, one line per mode, with its simultaneous interval
    (``layers.layer_rows``); without a reference, the normalised encoding by depth."""
    change = any(r.get("change") is not None for r in rows)
    key = "change" if change else "normalized"
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, ax = _subplots(figsize=(6.5, 4.0))
    modes = [m for m in MODE_NAMES if any(r["mode"] == m for r in rows)]
    for i, mode in enumerate(modes):
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["depth"])
        x = np.array([r["depth"] for r in mine]) + 0.04 * (i - len(modes) / 2)
        v = np.array([np.nan if r[key] is None else r[key] for r in mine], float)
        if change:
            low = np.array([np.nan if r["change_ci_low"] is None else r["change_ci_low"]
                            for r in mine])
            high = np.array([np.nan if r["change_ci_high"] is None else r["change_ci_high"]
                             for r in mine])
            err = np.nan_to_num(np.stack([v - low, high - v]))
            ax.errorbar(x, v, yerr=err, marker="o", capsize=2, lw=1.2, label=mode)
        else:
            ax.plot(x, v, marker="o", lw=1.2, label=mode)
    if change:  # a change lies in [-1, 1]; interval ends beyond it are cut at the frame
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylim(-1.05, 1.05)
    ax.set_xticks(range(1, len(layers) + 1), layers, rotation=20, fontsize=8)
    ax.set_xlabel("layer (depth)")
    ax.set_ylabel("change from initialisation (trained - untrained)" if change
                  else "normalised encoding")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "Encoding by depth", fontsize=10)
    fig.tight_layout()
    return fig
