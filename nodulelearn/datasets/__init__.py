"""Synthetic CT-like lung-nodule patches with controlled modes of variation.

``load_spec`` reads a distribution, ``sample_factors`` draws labels and factor values from it,
``render`` turns factor values into images and ``make_dataset`` does both inside ``tf.data``.
``set_spec_field`` / ``sweepable_paths`` address a spec's fields by dotted path (sweeps), and
``decorrelated`` makes every mode independent of the label.
"""

from nodulelearn.datasets.memory import check_dataset_fits_memory, dataset_bytes
from nodulelearn.datasets.modes import (
    MODE_NAMES,
    MODES,
    RENDER_VISIBILITY_MODES,
    Mode,
    get_mode,
    mode_grid,
)
from nodulelearn.datasets.pipeline import make_dataset
from nodulelearn.datasets.render import BatchRenderer, render, render_factors
from nodulelearn.datasets.sampling import Factors, sample_factors
from nodulelearn.datasets.spec import (
    DistributionSpec,
    ModeSpec,
    SpecError,
    load_spec,
    preset_names,
    spec_at_image_size,
    spec_from_dict,
)
from nodulelearn.datasets.spec_paths import (
    decorrelated,
    get_spec_field,
    set_spec_field,
    sweepable_paths,
)
from nodulelearn.datasets.tfrecords import read_tfrecords, write_tfrecords

__all__ = [
    "MODES", "MODE_NAMES", "RENDER_VISIBILITY_MODES", "Mode", "get_mode", "mode_grid",
    "DistributionSpec", "ModeSpec", "SpecError", "load_spec", "preset_names",
    "spec_at_image_size", "spec_from_dict",
    "set_spec_field", "get_spec_field", "sweepable_paths", "decorrelated",
    "Factors", "sample_factors",
    "render", "render_factors", "BatchRenderer",
    "make_dataset",
    "check_dataset_fits_memory", "dataset_bytes",
    "write_tfrecords", "read_tfrecords",
]
