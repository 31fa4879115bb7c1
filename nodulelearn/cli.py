"""The ``nodulelearn`` command: one subcommand per script of ``bin/``.

``nodulelearn train --loss=ce`` runs ``bin/train --loss=ce``, and so on; every flag after the
subcommand goes to that script, whose ``--help`` lists them. ``nodulelearn --help`` and
``nodulelearn --version`` import nothing heavy, so they answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

#: subcommand -> (script of bin/, what it does).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train one model and evaluate it on its test distributions"),
    "evaluate": ("evaluate", "evaluate a saved Keras classifier on distributions"),
    "probe": ("probe_features", "which modes does a classifier rely on (permutation analysis)"),
    "export": ("export_tfrecords", "write a distribution to TFRecord shards"),
    "preview": ("preview_dataset", "write a preview sheet of a distribution"),
    "study": ("run_study", "run a study: losses x training distributions x seeds"),
}


def usage(prog: str) -> str:
    """The text of ``nodulelearn --help``."""
    from nodulelearn import __version__

    width = max(map(len, SUBCOMMANDS))
    lines = [
        f"usage: {prog} [--help] [--version] <subcommand> [flags]",
        "",
        f"nodulelearn {__version__}: which features does a CNN learn from lung-nodule images,",
        "and how does the loss change that?",
        "",
        "subcommands:",
        *(f"  {name:<{width}}  {text}" for name, (_, text) in SUBCOMMANDS.items()),
        "",
        "options:",
        "  -h, --help     show this message and exit",
        "  --version      print the version and exit",
        "",
        f"`{prog} <subcommand> --help` lists the flags of a subcommand. TensorFlow's own",
        "INFO / WARNING logging is hidden unless --verbosity=1 (or higher) is given.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, prog: str = "nodulelearn") -> None:
    """Runs ``prog [--help | --version | <subcommand> [flags]]``; exits with the script's status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(usage(prog))
        sys.exit(2)
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage(prog))
        sys.exit(0)
    if argv[0] == "--version":
        from nodulelearn import __version__

        print(f"nodulelearn {__version__}")
        sys.exit(0)
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        what = "option" if name.startswith("-") else "subcommand"
        sys.stderr.write(
            f"{prog}: error: unknown {what} {name!r}. "
            f"Valid subcommands: {', '.join(SUBCOMMANDS)} (or --help, --version).\n"
        )
        sys.exit(2)
    from nodulelearn._launch import run_script

    run_script(SUBCOMMANDS[name][0], rest, f"{prog} {name}")
