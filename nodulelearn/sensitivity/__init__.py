"""Feature sensitivity: which modes of variation does a Keras classifier rely on?

``permutation_sensitivity`` permutes each mode's values across a test set, re-renders with the
same noise seeds and measures how the predictions change; ``probe_model`` / ``probe_run`` add
partial dependence, linear decodability from an encoder and tf-explain saliency maps, and write
every output file; ``probe_runs`` compares several runs. Works on any saved Keras classifier
``[B, H, W, 1] -> P(malignant)`` (or logits); never imports the training code.
"""

from nodulelearn.sensitivity.comparison import comparison_matrix, write_comparison
from nodulelearn.sensitivity.decodability import decodability
from nodulelearn.sensitivity.model_loading import (
    ModelLoadError,
    TrainedRun,
    check_input_shape,
    load_keras_model,
    load_run,
)
from nodulelearn.sensitivity.partial_dependence import partial_dependence
from nodulelearn.sensitivity.permutation import permutation_sensitivity
from nodulelearn.sensitivity.prediction import ModelOutputError, Predictor
from nodulelearn.sensitivity.probe import probe_dists, probe_model, probe_run, probe_runs
from nodulelearn.sensitivity.report import format_table
from nodulelearn.sensitivity.saliency import SaliencyUnavailable, saliency

__all__ = [
    "ModelLoadError", "ModelOutputError", "Predictor", "SaliencyUnavailable", "TrainedRun",
    "check_input_shape", "comparison_matrix", "decodability", "format_table",
    "load_keras_model", "load_run", "partial_dependence", "permutation_sensitivity",
    "probe_dists", "probe_model", "probe_run", "probe_runs", "saliency", "write_comparison",
]
