"""Training: protocols, run directories, evaluation.

>>> from nodulelearn.training import TrainConfig, set_determinism, train
>>> set_determinism(0)  # doctest: +SKIP
>>> run = train(TrainConfig(loss="ce", smoke=True), "runs/ce-smoke")  # doctest: +SKIP
>>> run.metrics["clinical"]["auc"], run.model  # doctest: +SKIP

The names below are imported on first use: ``from nodulelearn.training import STRATEGIES`` (for
a binary's ``--help``) imports no TensorFlow.
"""

import sys
import types

from nodulelearn.lazy import lazy_attributes

#: Every public name and the module that defines it.
EXPORTS: dict[str, str] = {
    "set_determinism": "nodulelearn.determinism",
    "DeterminismError": "nodulelearn.determinism",
    "RunDirectory": "nodulelearn.run_dir",
    "RunDirectoryError": "nodulelearn.run_dir",
    "TrainedRun": "nodulelearn.run_dir",
    "load_run": "nodulelearn.run_dir",
    "DEFAULT_AUGMENT": "nodulelearn.training.config",
    "STRATEGIES": "nodulelearn.training.config",
    "TrainConfig": "nodulelearn.training.config",
    "check_field": "nodulelearn.training.config",
    "check_fields": "nodulelearn.training.config",
    "parse_params": "nodulelearn.training.config",
    "resolve_config": "nodulelearn.training.config",
    "AUGMENTATIONS": "nodulelearn.training.augment",
    "build_augment": "nodulelearn.training.augment",
    "TrainingDivergedError": "nodulelearn.training.callbacks",
    "evaluate_model": "nodulelearn.training.evaluate",
    "evaluate_on": "nodulelearn.training.evaluate",
    "summary_table": "nodulelearn.training.evaluate",
    "binary_metrics": "nodulelearn.training.metrics",
    "roc_auc": "nodulelearn.training.metrics",
    "PROTOCOLS": "nodulelearn.training.protocols",
    "Protocol": "nodulelearn.training.protocols",
    "protocol_for": "nodulelearn.training.protocols",
    "train": "nodulelearn.training.train",
}

__all__ = sorted(EXPORTS)

__getattr__, __dir__ = lazy_attributes(globals(), EXPORTS)


class _Package(types.ModuleType):
    """Keeps ``nodulelearn.training.train`` the function: importing the submodule of the same
    name would otherwise replace the package's attribute with the module."""

    def __setattr__(self, name: str, value) -> None:
        if name in EXPORTS and isinstance(value, types.ModuleType):
            return  # the import system naming a submodule; the export wins
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
