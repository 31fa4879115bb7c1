"""Partial dependence: mean P(malignant) as one mode is swept across its domain.

For every grid value ``v`` of a mode, every test sample gets ``mode = v`` while its label, its
other modes and its noise seed stay as sampled; the curve is the mean prediction over samples
(overall and per class). A flat curve means the model ignores the mode over its whole domain,
also where the test distribution never puts it.
"""

from __future__ import annotations

import numpy as np

from nodulelearn.datasets import MODE_NAMES, get_mode
from nodulelearn.datasets import mode_grid as datasets_mode_grid
from nodulelearn.sensitivity.permutation import mode_varies

CONTINUOUS_POINTS = 9


def mode_grid(mode: str, points: int = CONTINUOUS_POINTS) -> tuple[np.ndarray, list[str]]:
    """Grid values of ``mode`` (internal float encoding) and their readable labels.

    Categorical modes: every category; counts: every integer of the domain; continuous modes:
    ``points`` evenly spaced values from the low to the high end of the domain.
    """
    info = get_mode(mode)
    grid = datasets_mode_grid(mode, points)  # the package's one mode grid
    return grid, [info.format_value(float(v)) for v in grid]


def partial_dependence(predictor, factors, *, modes=None, points: int = CONTINUOUS_POINTS) -> dict:
    """Partial-dependence curves of every mode.

    Args:
        predictor: a ``Predictor`` (renders factors, returns P(malignant) ``[n]``).
        factors: the test samples (``Factors``); a few hundred are plenty.
        modes: modes to sweep (default all eight).
        points: grid points of a continuous mode.

    Returns:
        ``{mode: {"kind", "unit", "varies", "values", "labels", "mean_p", "sem_p",
        "mean_p_benign", "mean_p_malignant"}}`` with one entry per grid value; ``varies`` says
        whether the mode varies in the test distribution; per-class means are ``None`` when the
        class is absent.
    """
    import keras

    from nodulelearn.datasets import Factors

    if (not callable(getattr(predictor, "predict", None)) or isinstance(predictor, type)
            or isinstance(predictor, keras.Model)):  # a model's predict takes images, not factors
        raise TypeError(f"Expected predictor to be a nodulelearn.sensitivity.Predictor (factors "
                        f"-> P(malignant)). Received: {type(predictor).__name__}. Build one with "
                        "Predictor(model, image_size=..., pixel_spacing_mm=...).")
    if not isinstance(factors, Factors):
        raise TypeError(f"Expected factors to be nodulelearn.datasets.Factors (from "
                        f"sample_factors). Received: {type(factors).__name__}")
    if isinstance(modes, str):
        raise TypeError(f"Expected modes to be a list of mode names. Received the string "
                        f"{modes!r}; pass [{modes!r}].")
    labels = np.asarray(factors.labels)
    curves = {}
    for mode in MODE_NAMES if modes is None else modes:
        info = get_mode(mode)
        grid, names = mode_grid(mode, points)
        curve = {
            "kind": info.kind,
            "unit": info.unit,
            "varies": mode_varies(factors.values[mode]),
            "values": [float(v) for v in grid],
            "labels": names,
            "mean_p": [],
            "sem_p": [],
            "mean_p_benign": [],
            "mean_p_malignant": [],
        }
        for value in grid:
            swept = factors.replace_values(mode, np.full(len(factors), value, np.float32))
            probs = predictor.predict(swept)
            curve["mean_p"].append(float(probs.mean()))
            sem = probs.std(ddof=1) / np.sqrt(probs.size) if probs.size > 1 else 0.0
            curve["sem_p"].append(float(sem))
            for key, label in (("mean_p_benign", 0), ("mean_p_malignant", 1)):
                chosen = probs[labels == label]
                curve[key].append(float(chosen.mean()) if chosen.size else None)
        curves[mode] = curve
    return curves
