"""Feature sensitivity: which modes of variation does a Keras classifier learn, and use?

- reliance: ``permutation_sensitivity`` permutes each mode's values across a test set (and, for
  the pseudo-mode ``nuisance``, the noise seeds), re-renders and measures how the predictions
  change;
- encoding: ``measure_encoding`` reads each mode off the frozen embedding with cross-validated
  linear models, on ``encoding_distribution(train_dist)`` (every mode independent);
- recoverability: ``recoverability`` refits only the linear head on a small sample of an OOD
  distribution (last-layer retraining).
``probe_model`` / ``probe_dists`` / ``probe_run`` add partial dependence and tf-explain
saliency and write every output file; ``probe_runs`` compares several runs; ``to_dataframe``
turns any result into a ``pandas.DataFrame``. Works on any saved Keras classifier
``[B, H, W, 1] -> P(malignant)`` (or logits); never imports the training code.
"""

from nodulelearn.model_io import (
    ModelLoadError,
    ModelOutputError,
    check_input_shape,
    load_keras_model,
)
from nodulelearn.sensitivity.comparison import comparison_matrix, write_comparison
from nodulelearn.sensitivity.dependence import partial_dependence
from nodulelearn.sensitivity.encoding import (
    decodability,
    encoding_distribution,
    encoding_sample_size,
    measure_encoding,
)
from nodulelearn.sensitivity.frames import to_dataframe
from nodulelearn.sensitivity.intervals import delong_interval, wilson_interval
from nodulelearn.sensitivity.model_loading import TrainedRun, load_run
from nodulelearn.sensitivity.permutation import ANALYSED_MODES, NUISANCE, permutation_sensitivity
from nodulelearn.sensitivity.prediction import Predictor
from nodulelearn.sensitivity.probe import (
    ProbeResults,
    probe_dists,
    probe_encoding,
    probe_model,
    probe_recoverability,
    probe_run,
    probe_runs,
    run_labels,
    study_run_dirs,
)
from nodulelearn.sensitivity.report import format_table
from nodulelearn.sensitivity.retraining import recoverability
from nodulelearn.sensitivity.saliency_maps import SaliencyUnavailable, saliency

__all__ = [
    "ANALYSED_MODES", "NUISANCE",
    "ModelLoadError", "ModelOutputError", "Predictor", "ProbeResults", "SaliencyUnavailable",
    "TrainedRun", "check_input_shape", "comparison_matrix", "decodability", "delong_interval",
    "encoding_distribution", "encoding_sample_size", "format_table", "load_keras_model",
    "load_run", "measure_encoding", "partial_dependence", "permutation_sensitivity",
    "probe_dists", "probe_encoding", "probe_model", "probe_recoverability", "probe_run",
    "probe_runs", "recoverability", "run_labels", "saliency", "study_run_dirs", "to_dataframe",
    "wilson_interval", "write_comparison",
]
