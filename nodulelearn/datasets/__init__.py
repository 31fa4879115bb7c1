"""Synthetic CT-like lung-nodule patches with controlled modes of variation.

``load_spec`` reads a distribution, ``sample_factors`` draws labels and factor values from it,
``render`` turns factor values into images and ``make_dataset`` does both inside ``tf.data``.
"""

from nodulelearn.datasets.modes import MODE_NAMES, MODES, Mode, get_mode
from nodulelearn.datasets.pipeline import make_dataset
from nodulelearn.datasets.render import render, render_factors
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
from nodulelearn.datasets.tfrecords import read_tfrecords, write_tfrecords

__all__ = [
    "MODES", "MODE_NAMES", "Mode", "get_mode",
    "DistributionSpec", "ModeSpec", "SpecError", "load_spec", "preset_names",
    "spec_at_image_size", "spec_from_dict",
    "Factors", "sample_factors",
    "render", "render_factors",
    "make_dataset",
    "write_tfrecords", "read_tfrecords",
]
