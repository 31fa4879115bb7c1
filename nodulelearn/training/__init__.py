"""Training: protocols, run directories, evaluation.

>>> from nodulelearn.training import TrainConfig, train
>>> metrics = train(TrainConfig(loss="ce", smoke=True), "runs/ce-smoke")  # doctest: +SKIP
"""

from nodulelearn.determinism import set_determinism
from nodulelearn.run_dir import RunDirectory, RunDirectoryError, TrainedRun, load_run
from nodulelearn.training.augment import AUGMENTATIONS, DEFAULT_AUGMENT, build_augment
from nodulelearn.training.callbacks import TrainingDivergedError
from nodulelearn.training.config import STRATEGIES, TrainConfig, parse_params, resolve_config
from nodulelearn.training.evaluate import evaluate_model, evaluate_on, summary_table
from nodulelearn.training.metrics import binary_metrics, roc_auc
from nodulelearn.training.protocols import PROTOCOLS, Protocol, protocol_for
from nodulelearn.training.train import train

__all__ = [
    "AUGMENTATIONS", "DEFAULT_AUGMENT", "PROTOCOLS", "STRATEGIES", "Protocol", "RunDirectory",
    "RunDirectoryError", "TrainConfig", "TrainedRun", "TrainingDivergedError", "binary_metrics",
    "build_augment", "evaluate_model", "evaluate_on", "load_run", "parse_params",
    "protocol_for", "resolve_config", "roc_auc", "set_determinism", "summary_table", "train",
]
