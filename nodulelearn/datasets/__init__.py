"""Synthetic CT-like lung-nodule patches with controlled modes of variation."""

from nodulelearn.datasets.modes import MODE_NAMES, MODES, Mode, get_mode
from nodulelearn.datasets.render import render

__all__ = ["MODES", "MODE_NAMES", "Mode", "get_mode", "render"]
