"""The command line's environment: TensorFlow's own log chatter is off unless ``--verbosity`` asks.

TensorFlow prints INFO and WARNING lines of its C++ core (some before its logging is even set up,
so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them) and of its Python logger (SavedModel's "Assets
written to ..."). ``quiet_tensorflow(argv)`` is called by the launcher of every ``bin/`` script
before TensorFlow is imported: unless ``argv`` holds ``--verbosity=N`` (or ``-v N``) with N >= 1,
it sets ``TF_CPP_MIN_LOG_LEVEL=3`` (0 with N >= 1; a level the user exported is kept, an empty
one is not a level), raises
the ``tensorflow`` Python logger to ERROR, drops the records below ERROR that TensorFlow's modules
log through absl's logger (SavedModel export does), and filters the import-time C++ INFO / WARNING lines
out of stderr; any other output of the import (Python warnings, errors) is passed through.
Nothing happens at import of this module.

A ``bin/`` script run directly (``bin/train``) is quieted the same way when it calls
``quiet_tensorflow(sys.argv)`` before its first nodulelearn import. Every ``bin/`` script ends
with ``run_main(main)``: absl's ``app.run`` with the exit statuses and one-line usage errors a
command line is expected to have.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

#: C++ log lines written before absl's logging is initialised: ``I0000 00:00:... file.cc:12] ...``
#: (severity I or W), the banner announcing them, and the cpu_feature_guard continuation line.
_CHATTER = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] .*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow with the"
    rb" appropriate compiler flags\.)$"
)


def verbosity(argv: Sequence[str]) -> int:
    """The value of absl's ``--verbosity`` / ``-v`` flag in ``argv`` (0, absl's default, if absent).

    A value that is not an integer counts as 0 here; absl reports it when it parses the flags.
    """
    value = None
    for i, arg in enumerate(argv):
        for flag in ("--verbosity", "-verbosity", "-v"):
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def quiet_tensorflow(argv: Sequence[str]) -> bool:
    """Turns TensorFlow's INFO / WARNING logging off unless ``argv`` asks for ``--verbosity>=1``.

    Call it before TensorFlow is imported (the ``bin/`` launcher does). Returns True when it
    quieted TensorFlow, False when the verbosity asked for its logs.
    """
    if verbosity(argv) >= 1:
        # Set, so that a script's own default (``setdefault("TF_CPP_MIN_LOG_LEVEL", "2")``) does
        # not hide what the user asked to see; a level the user exported is kept.
        _set_log_level_unless_chosen("0")
        return False
    _set_log_level_unless_chosen("3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # Parts of TensorFlow (SavedModel export) log through absl's logger, which also carries the
    # scripts' own messages: drop only the records that TensorFlow's modules write.
    from absl import logging as absl_logging  # creates absl's own logger class first

    absl_logger = absl_logging.get_absl_logger()
    if not any(isinstance(f, TensorFlowRecordFilter) for f in absl_logger.filters):
        absl_logger.addFilter(TensorFlowRecordFilter())
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietImportFinder) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietImportFinder())
    return True


def _set_log_level_unless_chosen(level: str) -> None:
    # An exported but empty variable is no choice (TensorFlow reads it as 0: everything shown).
    if not os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip():
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = level


class TensorFlowRecordFilter(logging.Filter):
    """Drops log records below ERROR that come from a module of the ``tensorflow`` package."""

    _PART = f"{os.sep}tensorflow{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or self._PART not in (record.pathname or "")


def filter_chatter(output: bytes) -> bytes:
    """``output`` without TensorFlow's import-time C++ INFO / WARNING lines."""
    lines = output.splitlines(keepends=True)
    return b"".join(line for line in lines if not _CHATTER.match(line.rstrip(b"\r\n")))


class _QuietImportFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with a loader that filters stderr while it is imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                kept = filter_chatter(captured.read())
                if kept:
                    sys.stderr.write(kept.decode(errors="replace"))
                    sys.stderr.flush()


#: absl's help flags (``-h`` is read as ``--help``): each prints help and, in absl, exits 1.
_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?", "h")


def _help_flag(argv: Sequence[str]) -> str | None:
    """The first help flag of ``argv[1:]`` as absl spells it (``--help``...), or None."""
    for arg in argv[1:]:
        if arg == "--":
            return None
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name in _HELP_FLAGS and value.lower() in ("", "true", "1"):
            return "--help" if name == "h" else f"--{name}"
    return None


def run_main(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> NoReturn:
    """``absl.app.run(main)`` with the exits a command line is expected to have.

    - ``--help``, ``--helpshort``, ``--helpfull``, ``-h`` (and ``-?``) print the help and exit 0
      (absl exits 1), whatever other flags are given;
    - a flag absl cannot parse (unknown, bad value, required but missing) or an ``app.UsageError``
      raised by ``main`` (a stray argument, flags that do not go together) prints one line,
      ``<command>: error: <message> (see <command> --help)``, without absl's pages of help.

    Every ``bin/`` script ends with ``run_main(main)``.
    """
    from absl import app

    argv = list(sys.argv if argv is None else argv)
    help_flag = _help_flag(argv)
    if help_flag is not None:
        try:
            app.run(main, argv=[argv[0], help_flag])  # absl prints the help before main
        except SystemExit as exit_:
            sys.exit(0 if exit_.code == 1 else exit_.code)
        sys.exit(0)

    def usage_error(message: str, exitcode: int) -> NoReturn:
        name = os.path.basename(argv[0])
        message = " ".join(line.strip() for line in message.splitlines() if line.strip())
        print(f"{name}: error: {message} (see {name} --help)", file=sys.stderr, flush=True)
        sys.exit(exitcode)

    def parse_flags(args: list[str]) -> list[str]:
        from absl import flags

        try:
            return flags.FLAGS(args)
        except flags.Error as error:  # unknown flag, bad value, missing required flag
            usage_error(str(error), 1)

    def checked_main(args: list[str]) -> Any:
        try:
            return main(args)
        except app.UsageError as error:
            usage_error(str(error), error.exitcode)

    app.run(checked_main, argv=argv, flags_parser=parse_flags)
    sys.exit(0)  # not reached: absl's run ends with sys.exit


def use_absl_logging() -> None:
    """absl's log handler, in a process that parses no flags (a study's child process).

    absl announces "WARNING: Logging before flag parsing goes to stderr." before the first record
    of a process whose flags are unparsed; such a process has no flags to parse, so they are
    marked parsed (their defaults) first.
    """
    from absl import flags
    from absl import logging as absl_logging

    flags.FLAGS.mark_as_parsed()
    absl_logging.use_absl_handler()


def end_progress_line() -> None:
    """Ends the line of a Keras progress bar on a terminal, so that what is printed next (an
    error stopping the training mid-epoch) starts on a line of its own.

    Keras redraws its bar in place on a terminal (``\\r``, no newline until the epoch ends); in
    a file or a pipe it writes whole lines, so nothing is printed there.
    """
    if sys.stdout.isatty():
        sys.stdout.write("\n")
        sys.stdout.flush()


def exit_on_os_error(name: str, error: OSError) -> NoReturn:
    """Ends command ``name`` after an environment error a user can fix (``--out`` not a directory,
    read-only, a full disk): one line ``<name>: error: <path>: <problem>`` and exit status 1.

    The process ends without Python's clean-up (``os._exit``) once stdout, stderr and the logs are
    flushed: after a failed HDF5 write, closing what h5py still holds prints tracebacks (a full
    disk) or crashes (a file size limit: measured, a segmentation fault in the garbage collector at
    exit). Every result file is already complete or absent (written atomically); locks are
    released by the kernel.
    """
    from nodulelearn.run_dir import describe_os_error

    sys.stdout.flush()
    print(f"{name}: error: {describe_os_error(error)}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(1)
