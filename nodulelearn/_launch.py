"""Console-script entry points: each runs the matching absl script of ``bin/``.

The scripts in ``bin/`` hold the flags (library code never reads flags); they are installed with
the package as ``nodulelearn._bin`` so that ``nodulelearn-<name>`` works from any directory.
"""

import importlib.resources
import runpy
import sys


def _run_script(name: str) -> None:
    script = importlib.resources.files("nodulelearn") / "_bin" / name
    with importlib.resources.as_file(script) as path:
        sys.argv[0] = f"nodulelearn-{name}"
        runpy.run_path(str(path), run_name="__main__")


def train() -> None:
    _run_script("train")


def evaluate() -> None:
    _run_script("evaluate")


def probe_features() -> None:
    _run_script("probe_features")


def export_tfrecords() -> None:
    _run_script("export_tfrecords")


def preview_dataset() -> None:
    _run_script("preview_dataset")


def run_study() -> None:
    _run_script("run_study")
