"""Preview sheets: how each mode of variation looks, and what a distribution's samples look like.

``write_preview`` writes one PNG with two panels:

* **modes**: one row per mode, the mode swept across its domain (every category, or six evenly
  spaced values) on a fixed reference nodule with one fixed noise seed, so that only that mode
  changes along a row;
* **samples**: a grid of random samples of the distribution, titled with their label
  (``M`` malignant, ``B`` benign) and a few of their factor values.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

from nodulelearn.atomic_files import write_bytes_atomic
from nodulelearn.datasets.modes import MODE_NAMES, MODES, mode_grid
from nodulelearn.datasets.render import render, render_factors
from nodulelearn.datasets.sampling import sample_factors
from nodulelearn.datasets.spec import DistributionSpec

# The nodule every row of the modes panel starts from: mid-range, plainly visible.
REFERENCE_VALUES = {
    "margin": 0.0,  # smooth
    "size": 14.0,
    "texture": 0.0,  # solid
    "calcification": 0.0,  # none
    "contrast": 40.0,
    "position": 3.0,
    "noise": 15.0,
    "vessels": 2.0,
}
SWEEP_STEPS = 6
_LABEL_COLOURS = {0: "tab:blue", 1: "tab:red"}


def sweep_values(mode: str, steps: int = SWEEP_STEPS) -> list[float]:
    """The values a mode's row shows: ``mode_grid`` (every category or integer, or ``steps``
    values across the domain)."""
    return [float(v) for v in mode_grid(mode, steps)]


def render_mode_sweeps(
    spec: DistributionSpec, seed: int = 0, steps: int = SWEEP_STEPS
) -> dict[str, tuple[list[float], np.ndarray]]:
    """Renders every mode's sweep on the reference nodule with one noise seed.

    Args:
        spec: gives the geometry (image size, pixel spacing).
        seed: picks the noise seed (that of sample 0 of ``spec`` with this seed).
        steps: number of values of a continuous mode.

    Returns:
        ``{mode: (values, images float32 [len(values), H, W, 1])}``.
    """
    noise_seed = sample_factors(spec, 1, seed).noise_seeds[0]
    rows = {mode: sweep_values(mode, steps) for mode in MODE_NAMES}
    # All rows in one batch: one rendering call, one compiled graph.
    columns = {m: [] for m in MODE_NAMES}
    for mode, values in rows.items():
        for m in MODE_NAMES:
            columns[m].extend(values if m == mode else [REFERENCE_VALUES[m]] * len(values))
    total = sum(len(values) for values in rows.values())
    images = render(
        {m: np.asarray(v, np.float32) for m, v in columns.items()},
        np.tile(noise_seed, (total, 1)),
        image_size=spec.image_size,
        pixel_spacing_mm=spec.pixel_spacing_mm,
        visibility=spec.render_visibility(),
    ).numpy()
    sweeps, start = {}, 0
    for mode, values in rows.items():
        sweeps[mode] = (values, images[start : start + len(values)])
        start += len(values)
    return sweeps


def _sample_title(factors, i: int) -> str:
    margin = MODES["margin"].format_value(factors.values["margin"][i])
    texture = MODES["texture"].format_value(factors.values["texture"][i]).replace("_", "-")
    size = factors.values["size"][i]
    calcified = " calc" if factors.values["calcification"][i] > 0.5 else ""
    label = "M" if factors.labels[i] == 1 else "B"
    return f"{label}: {margin[:5]} {size:.0f}mm\n{texture}{calcified}"


def preview_figure(spec: DistributionSpec, *, seed: int = 0, n: int = 24, columns: int = 8):
    """The two-panel preview figure (see module doc), a ``matplotlib.figure.Figure`` outside
    pyplot: nothing to close, and the caller's backend is left alone."""
    sweeps = render_mode_sweeps(spec, seed)
    factors = sample_factors(spec, n, seed)
    samples = render_factors(factors, spec, batch_size=max(8, min(n, 64)))

    sweep_cols = max(len(values) for values, _ in sweeps.values())
    sample_rows = -(-n // columns)
    width = max(sweep_cols, columns)
    fig = Figure(figsize=(1.35 * width, 1.45 * (len(sweeps) + sample_rows) + 1.0))
    grid = fig.add_gridspec(
        len(sweeps) + sample_rows, width, hspace=0.55, wspace=0.08, top=0.95, bottom=0.01
    )
    for row, (mode, (values, images)) in enumerate(sweeps.items()):
        for col in range(width):
            ax = fig.add_subplot(grid[row, col])
            ax.set_axis_off()
            if col < len(values):
                ax.imshow(images[col, ..., 0], cmap="gray", vmin=0.0, vmax=1.0)
                ax.set_title(MODES[mode].format_value(values[col]), fontsize=7)
            if col == 0:
                ax.text(
                    -0.12,
                    0.5,
                    mode,
                    transform=ax.transAxes,
                    rotation=90,
                    fontsize=9,
                    ha="right",
                    va="center",
                    fontweight="bold",
                )
    for i in range(n):
        row, col = len(sweeps) + i // columns, i % columns
        ax = fig.add_subplot(grid[row, col])
        ax.imshow(samples[i, ..., 0], cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        colour = _LABEL_COLOURS[int(factors.labels[i])]
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2)
        ax.set_title(_sample_title(factors, i), fontsize=6, color=colour)
    fig.suptitle(
        f"{spec.name}: modes of variation (rows, reference nodule, one noise seed) and {n} "
        f"random samples (B benign, M malignant), seed {seed}",
        fontsize=9,
        y=0.985,
    )
    return fig


def write_preview(
    spec: DistributionSpec, out: str | os.PathLike, *, seed: int = 0, n: int = 24, dpi: int = 72
) -> Path:
    """Writes the preview sheet as a PNG, atomically (temporary file, then rename).

    Args:
        spec: the distribution.
        out: path of the PNG to write (must end in ``.png``; its folder must exist).
        seed: seed of the samples and of the sweeps' noise.
        n: number of random samples shown.
        dpi: resolution of the sheet.

    Returns:
        The written path.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"Expected an output path ending in .png. Received: {str(out)!r}")
    if out.parent.exists() and not out.parent.is_dir():
        raise NotADirectoryError(f"The output folder {str(out.parent)!r} is a file, not a "
                                 "directory.")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"The output folder {str(out.parent)!r} does not exist.")
    if out.is_dir():
        raise IsADirectoryError(f"The output path {str(out)!r} is a directory; give a .png file.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"Invalid value for argument `n`. Expected an int >= 1. Received: n={n!r}")
    fig = preview_figure(spec, seed=seed, n=int(n))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes_atomic(out, buffer.getvalue())
    return out
