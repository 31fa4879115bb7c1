"""Runs the absl scripts of ``bin/``: the ``nodulelearn-<name>`` console scripts and ``nodulelearn``.

The scripts in ``bin/`` hold the flags (library code never reads flags); they are installed with
the package as ``nodulelearn._bin`` so that they run from any directory. ``run_script`` executes
one as ``__main__`` under the program name the user typed (``nodulelearn train``,
``nodulelearn-train``), so that its ``--help`` and its error messages name that command rather than
a file inside the package, after ``cli_env.quiet_tensorflow`` has turned TensorFlow's log
chatter off (``--verbosity=1`` turns it back on).
"""

from __future__ import annotations

import importlib.resources
import sys
import types
from collections.abc import Sequence

from nodulelearn.cli_env import quiet_tensorflow

#: The scripts of bin/, each installed as ``nodulelearn-<name>``.
SCRIPTS = ("train", "evaluate", "probe_features", "export_tfrecords", "preview_dataset", "run_study")


def script_path(name: str):
    """The ``importlib.resources`` path of ``bin/<name>`` inside the installed package."""
    if name not in SCRIPTS:
        raise ValueError(f"Unknown script {name!r}. Valid scripts: {', '.join(SCRIPTS)}.")
    return importlib.resources.files("nodulelearn") / "_bin" / name


def run_script(name: str, argv: Sequence[str], prog: str) -> None:
    """Runs ``bin/<name>`` as ``__main__`` with ``sys.argv = [prog, *argv]``.

    The script ends with ``SystemExit`` (``cli_env.run_main``, absl's ``app.run`` underneath),
    which propagates to the caller.
    """
    argv = list(argv)
    quiet_tensorflow(argv)
    with importlib.resources.as_file(script_path(name)) as path:
        code = compile(path.read_text(encoding="utf-8"), str(path), "exec")
        module = types.ModuleType("__main__")
        module.__file__ = str(path)
        saved_main, saved_argv = sys.modules.get("__main__"), sys.argv
        sys.modules["__main__"], sys.argv = module, [prog, *argv]
        try:
            exec(code, module.__dict__)
        finally:
            sys.argv = saved_argv
            if saved_main is not None:
                sys.modules["__main__"] = saved_main


def _console_script(name: str) -> None:
    run_script(name, sys.argv[1:], f"nodulelearn-{name}")


def train() -> None:
    _console_script("train")


def evaluate() -> None:
    _console_script("evaluate")


def probe_features() -> None:
    _console_script("probe_features")


def export_tfrecords() -> None:
    _console_script("export_tfrecords")


def preview_dataset() -> None:
    _console_script("preview_dataset")


def run_study() -> None:
    _console_script("run_study")
