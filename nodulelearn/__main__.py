"""``python -m nodulelearn``: the ``nodulelearn`` command."""

from nodulelearn.cli import main

if __name__ == "__main__":
    main(prog="python -m nodulelearn")
