"""nodulelearn: which features does a CNN learn from lung-nodule images, and how does the loss change that?

The main entry points are exported here for notebooks and scripts::

    import nodulelearn as nl
    dataset = nl.make_dataset("margin_size", n=256, seed=0, batch_size=64)

They are imported on first use (``import nodulelearn`` imports no TensorFlow and has no side
effects); ``EXPORTS`` says where each one lives.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Every top-level name and the module that defines it (the one place this list lives).
EXPORTS: dict[str, str] = {
    # data
    "load_spec": "nodulelearn.datasets",
    "spec_at_image_size": "nodulelearn.datasets",
    "sample_factors": "nodulelearn.datasets",
    "render": "nodulelearn.datasets",
    "make_dataset": "nodulelearn.datasets",
    # training
    "TrainConfig": "nodulelearn.training",
    "train": "nodulelearn.training",
    "evaluate_model": "nodulelearn.training",
    # a finished run, for the analysis: classifier, encoder, config, metrics (what train returns)
    "load_run": "nodulelearn.run_dir",
    # the sensitivity analysis
    "permutation_sensitivity": "nodulelearn.sensitivity",
    "partial_dependence": "nodulelearn.sensitivity",
    "probe_model": "nodulelearn.sensitivity",
    "probe_run": "nodulelearn.sensitivity",
    # any classifier (its channels, intensity and outputs) and real patches as a test set
    "ModelAdapter": "nodulelearn.model_adapter",
    "load_patches": "nodulelearn.datasets.patches",
    "evaluate_patches": "nodulelearn.training.evaluate",
    # the study
    "load_study": "nodulelearn.study",
    "run_study": "nodulelearn.study",
    "aggregate_study": "nodulelearn.study",
    # reports
    "write_report": "nodulelearn.html_report",
}

#: Sub-packages reachable as attributes without importing them first (``nodulelearn.losses``).
SUBPACKAGES = ("datasets", "losses", "models", "training", "sensitivity", "study")

__all__ = ["__version__", *EXPORTS, *SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in EXPORTS:
        value = getattr(importlib.import_module(EXPORTS[name]), name)
    elif name in SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS, *SUBPACKAGES})
