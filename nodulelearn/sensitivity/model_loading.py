"""Loading ``bin/train`` run directories for the analysis.

Model files, their checks and the JSON reader live in ``nodulelearn.model_io`` (shared with
``bin/evaluate``), the run-directory layout and ``load_run`` in ``nodulelearn.run_dir`` (shared
with training and the study); they are re-exported here for the analysis' callers.
"""

from __future__ import annotations

from nodulelearn.model_io import (
    ModelLoadError,
    check_input_shape,
    load_keras_model,
)
from nodulelearn.run_dir import TrainedRun, load_run

__all__ = ["ModelLoadError", "TrainedRun", "check_input_shape", "load_keras_model", "load_run"]
