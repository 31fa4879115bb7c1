"""The `nodulelearn` command, `python -m nodulelearn`, the console scripts and TensorFlow's quieting."""

import configparser
import importlib.metadata
import io
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nodulelearn
from nodulelearn import _launch, cli, cli_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: TensorFlow's C++ log lines (``I0000 00:00:1796156351.981090   16412 port.cc:153] ...``).
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]", re.MULTILINE)


def _user_env(**extra):
    """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL (the test suite sets one)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **extra}


def _run(args, *, timeout=300, env=None, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=env or _user_env(), cwd=cwd or ROOT)


def _heavy_modules_after(argv):
    """Runs ``cli.main(argv)`` in a fresh Python; returns (exit code, heavy modules imported, out)."""
    code = textwrap.dedent(f"""
        import atexit, sys
        def report():
            heavy = [m for m in ("tensorflow", "keras", "numpy", "matplotlib") if m in sys.modules]
            print("HEAVY=" + ",".join(heavy), file=sys.stderr)
        atexit.register(report)
        from nodulelearn.cli import main
        main({argv!r})
    """)
    result = _run([sys.executable, "-c", code])
    heavy = re.search(r"^HEAVY=(.*)$", result.stderr, re.MULTILINE).group(1)
    return result, [m for m in heavy.split(",") if m]


def test_help_lists_every_subcommand_without_importing_tensorflow():
    result, heavy = _heavy_modules_after(["--help"])
    assert result.returncode == 0, result.stderr
    assert heavy == []
    for name in ("train", "evaluate", "probe", "export", "preview", "study"):
        assert re.search(rf"^  {name} ", result.stdout, re.MULTILINE), result.stdout


def test_version_is_the_installed_distributions_version():
    result, heavy = _heavy_modules_after(["--version"])
    assert result.returncode == 0
    assert heavy == []
    assert result.stdout.strip() == f"nodulelearn {importlib.metadata.version('nodulelearn')}"
    assert importlib.metadata.version("nodulelearn") == nodulelearn.__version__


def test_console_script_answers_help_and_version_quickly():
    for args in (["--help"], ["--version"]):
        started = time.perf_counter()
        result = _run([str(BIN / "nodulelearn"), *args])
        seconds = time.perf_counter() - started
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        # Under a second on an idle machine (no TensorFlow import); loose for loaded CI machines.
        assert seconds < 5, f"nodulelearn {args[0]} took {seconds:.1f} s"


def test_unknown_subcommand_and_no_subcommand_are_usage_errors():
    result = _run([sys.executable, "-m", "nodulelearn", "trian", "--loss=ce"])
    assert result.returncode == 2
    assert "unknown subcommand 'trian'" in result.stderr
    assert "train, evaluate, probe, export, preview, study" in result.stderr
    assert "Traceback" not in result.stderr
    result = _run([sys.executable, "-m", "nodulelearn", "--frobnicate"])
    assert result.returncode == 2 and "unknown option '--frobnicate'" in result.stderr
    result = _run([sys.executable, "-m", "nodulelearn"])
    assert result.returncode == 2 and result.stderr.startswith("usage: python -m nodulelearn")


def test_every_subcommand_names_an_installed_script_and_console_script():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    entries = dict(
        line.split(" = ") for line in
        parser["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert entries.pop("nodulelearn") == "nodulelearn.cli:main"
    assert {name: target for name, target in entries.items()} == {
        f"nodulelearn-{s}": f"nodulelearn._launch:{s}" for s in _launch.SCRIPTS
    }
    assert sorted(script for script, _ in cli.SUBCOMMANDS.values()) == sorted(_launch.SCRIPTS)
    for script in _launch.SCRIPTS:
        assert _launch.script_path(script).is_file(), script
        assert callable(getattr(_launch, script))
    with pytest.raises(ValueError, match="Unknown script 'trian'. Valid scripts: train, evaluate"):
        _launch.script_path("trian")


def test_subcommand_help_names_the_command_and_shows_no_tensorflow_logs():
    """One TensorFlow start: `python -m nodulelearn study --help` as a user types it."""
    result = _run([sys.executable, "-m", "nodulelearn", "study", "--help"])
    assert result.returncode == 0, result.stderr  # 0, although absl's --help exits with 1
    assert "python -m nodulelearn study:" in result.stdout
    assert "--study" in result.stdout and "--out" in result.stdout
    assert "_bin" not in result.stdout and "_bin" not in result.stderr
    assert not CPP_LOG_LINE.search(result.stderr), result.stderr
    assert "absl::InitializeLog" not in result.stderr


def test_console_script_train_runs_quietly(tmp_path):
    """A smoke run through `nodulelearn train`: a run directory, and no TensorFlow chatter."""
    out = tmp_path / "run"
    result = _run([str(BIN / "nodulelearn"), "train", "--loss=ce", "--smoke",
                   "--test_dists=clinical", f"--out_dir={out}"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.keras").is_file() and (out / "metrics.json").is_file()
    assert f"Run directory: {out}" in result.stdout
    assert not CPP_LOG_LINE.search(result.stderr), result.stderr[-3000:]
    assert "INFO:tensorflow" not in result.stderr and "Assets written to" not in result.stderr


@pytest.fixture
def fake_tensorflow(tmp_path):
    """A stand-in `tensorflow` package whose import writes C++-style chatter and one real line."""
    package = tmp_path / "fake" / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        import os
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are "
                    b"written to STDERR\\n"
                    b"I0000 00:00:1796156351.981090   16412 port.cc:153] oneDNN custom ops on.\\n"
                    b"W0000 00:00:1796156351.981488   16412 cudart_stub.cc:31] no cuda drivers\\n"
                    b"E0000 00:00:1796156351.981488   16412 real.cc:7] a real error\\n"
                    b"a Python warning during the import\\n")
    """))
    return package.parent


@pytest.mark.parametrize("argv, quiet", [
    ([], True), (["--loss=ce"], True), (["--verbosity=0"], True), (["-v", "0"], True),
    (["--verbosity=1"], False), (["--verbosity", "2"], False), (["-v=1"], False),
])
def test_quieting_filters_only_the_chatter_of_the_import(fake_tensorflow, argv, quiet):
    code = ("import logging, os, sys\n"
            "from nodulelearn.cli_env import quiet_tensorflow\n"
            f"print(quiet_tensorflow({argv!r}))\n"
            "import tensorflow\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
            "print(logging.getLogger('tensorflow').level)\n")
    result = _run([sys.executable, "-c", code], env=_user_env(PYTHONPATH=str(fake_tensorflow)))
    assert result.returncode == 0, result.stderr
    returned, level, logger_level = result.stdout.split()
    assert returned == str(quiet)
    assert "E0000 00:00:1796156351.981488   16412 real.cc:7] a real error" in result.stderr
    assert "a Python warning during the import" in result.stderr
    assert ("port.cc:153" in result.stderr) is not quiet
    assert ("cudart_stub.cc" in result.stderr) is not quiet
    assert ("absl::InitializeLog" in result.stderr) is not quiet
    assert level == ("3" if quiet else "0")
    assert logger_level == ("40" if quiet else "0")  # ERROR, or unset (absl's --verbosity rules)


@pytest.mark.parametrize("exported, argv, expected", [
    ("1", [], "1"), ("", [], "3"), (" ", [], "3"), ("", ["--verbosity=1"], "0")])
def test_quieting_keeps_a_log_level_the_user_chose(exported, argv, expected):
    """An exported but empty TF_CPP_MIN_LOG_LEVEL is no choice: it would show every C++ line."""
    code = ("import os\nfrom nodulelearn.cli_env import quiet_tensorflow\n"
            f"quiet_tensorflow({argv!r})\nprint(repr(os.environ['TF_CPP_MIN_LOG_LEVEL']))\n")
    result = _run([sys.executable, "-c", code], env=_user_env(TF_CPP_MIN_LOG_LEVEL=exported))
    assert result.stdout.strip() == repr(expected), result.stderr


@pytest.mark.parametrize("argv, expected", [
    ([], 0), (["--verbosity=2"], 2), (["--verbosity", "1"], 1), (["-v", "3"], 3), (["-v=1"], 1),
    (["--verbosity=debug"], 0), (["--verbosity"], 0), (["--loss=ce", "--verbosity=1", "-v=0"], 0),
])
def test_verbosity_is_read_like_absl_reads_it(argv, expected):
    assert cli_env.verbosity(argv) == expected


def test_filter_chatter_keeps_everything_else():
    text = (b"I0000 00:00:1796156351.981090   16412 port.cc:153] chatter\n"
            b"Traceback (most recent call last):\n"
            b"E0000 00:00:1796156351.981090   16412 x.cc:1] kept\n"
            b"W1201 20:11:25.123456   16412 y.cc:2] chatter too\n")
    assert cli_env.filter_chatter(text) == (
        b"Traceback (most recent call last):\nE0000 00:00:1796156351.981090   16412 x.cc:1] kept\n")


def test_tensorflow_records_are_dropped_from_the_absl_logger_and_others_kept():
    keep = cli_env.TensorFlowRecordFilter()

    def record(path, level=20):
        return logging.LogRecord("absl", level, path, 1, "message", None, None)

    tf_module = os.path.join("site-packages", "tensorflow", "python", "saved_model", "save.py")
    assert not keep.filter(record(tf_module))
    assert not keep.filter(record(tf_module, logging.WARNING))
    assert keep.filter(record(tf_module, logging.ERROR))
    assert keep.filter(record(os.path.join("nodulelearn", "datasets", "tfrecords.py")))
    assert keep.filter(record(os.path.join("bin", "export_tfrecords")))


def test_quieting_leaves_absl_its_own_logger_class():
    """absl's logger must stay an ABSLLogger, which reports the caller's file, not absl's own."""
    code = ("from nodulelearn.cli_env import quiet_tensorflow\nquiet_tensorflow([])\n"
            "from absl import logging\nprint(type(logging.get_absl_logger()).__name__)\n")
    result = _run([sys.executable, "-c", code])
    assert result.stdout.strip() == "ABSLLogger", result.stderr


FAKE_SCRIPT = '''"""A stand-in bin/ script: prints what absl sees."""
import sys
from absl import app, flags

_NAME = flags.DEFINE_string("name", "x", "A flag.")


def main(argv):
    print(f"argv0={sys.argv[0]} name={_NAME.value} rest={argv[1:]} doc={__doc__.split(':')[0]}")
    sys.exit(3)


if __name__ == "__main__":
    app.run(main)
'''


def _launch_fake(tmp_path, entry, args):
    """Runs the fake script as `nodulelearn-run_study ARGS` or `nodulelearn study ARGS`."""
    (tmp_path / "run_study").write_text(FAKE_SCRIPT)
    call = "_launch.run_study()" if entry == "console" else f"cli.main(['study', *{args!r}])"
    code = textwrap.dedent(f"""
        import pathlib, sys
        from nodulelearn import _launch, cli
        _launch.script_path = lambda name: pathlib.Path({str(tmp_path)!r}) / name
        sys.argv = ["ignored", *{args!r}]
        {call}
    """)
    return _run([sys.executable, "-c", code])


@pytest.mark.parametrize("entry, prog", [
    ("console", "nodulelearn-run_study"), ("cli", "nodulelearn study")])
def test_launcher_runs_a_script_under_the_command_name(tmp_path, entry, prog):
    """Through a fresh Python: the script is __main__, absl names the flags after the command."""
    result = _launch_fake(tmp_path, entry, ["--name=y"])
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == f"argv0={prog} name=y rest=[] doc=A stand-in bin/ script"
    result = _launch_fake(tmp_path, entry, ["--help"])
    assert f"{prog}:\n  --name: A flag." in result.stdout, result.stdout + result.stderr
    assert str(tmp_path) not in result.stdout
    result = _launch_fake(tmp_path, entry, ["--nmae=y"])
    assert result.returncode == 1 and "Unknown command line flag 'nmae'" in result.stderr


@pytest.mark.parametrize("subcommand", ["train", "evaluate", "probe", "export", "preview", "study"])
def test_subcommand_help_imports_no_tensorflow(subcommand):
    """`nodulelearn train --help` answers in well under a second: nothing heavy is imported."""
    result, heavy = _heavy_modules_after([subcommand, "--help"])
    assert "--" in result.stdout and f"nodulelearn {subcommand}:" in result.stdout, result.stderr
    assert "tensorflow" not in heavy and "keras" not in heavy, heavy
    assert result.returncode == 0, result.stderr  # absl's own convention is 1


@pytest.mark.parametrize("flag", ["-h", "--helpshort", "--helpfull", "--help=true", "-?"])
def test_every_help_flag_prints_the_help_and_exits_0(flag):
    result, _ = _heavy_modules_after(["preview", "--dist=clinical", flag])
    assert result.returncode == 0, result.stderr
    assert "nodulelearn preview:" in result.stdout and "--out" in result.stdout
    assert "Traceback" not in result.stderr and "error" not in result.stderr


@pytest.mark.parametrize("script", _launch.SCRIPTS)
def test_bin_scripts_run_directly_answer_dash_h_with_status_0(script):
    result = _run([sys.executable, str(ROOT / "bin" / script), "-h"])
    assert result.returncode == 0, result.stderr
    assert f"{script}:" in result.stdout and "--" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "stray"], "nodulelearn train: error: Unexpected arguments: stray"),
    (["probe", "--out=x"], "nodulelearn probe: error: Pass exactly one of --run_dir"),
    (["study", "--aggregate_only"],
     "nodulelearn study: error: --aggregate_only and --dry_run need --out"),
    (["export", "--dist=clinical", "--n=4"], "nodulelearn export: error: flag --out=None"),
    (["train", "--n_train=abc"], "nodulelearn train: error: flag --n_train=abc"),
    (["preview", "--out=x", "--dist=clinical", "--nmae=3"], "Unknown command line flag 'nmae'"),
])
def test_usage_errors_are_one_line_without_the_help(args, message):
    result, heavy = _heavy_modules_after(args)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("HEAVY=")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert lines[0].endswith(f"(see nodulelearn {args[0]} --help)"), lines
    assert result.stdout == "" and "tensorflow" not in heavy


@pytest.mark.parametrize("terminal", [True, False])
def test_an_error_after_a_progress_bar_starts_its_own_line_on_a_terminal(monkeypatch, terminal):
    class Stdout(io.StringIO):
        def isatty(self):
            return terminal

    out = Stdout()
    out.write("\r 3/16 ━━━━━━━━━━━━ 1s 88ms/step - loss: 0.6931")  # Keras redraws in place
    monkeypatch.setattr(sys, "stdout", out)
    cli_env.end_progress_line()
    assert out.getvalue().endswith("0.6931\n") is terminal
    assert out.getvalue().count("\n") == int(terminal)  # a file or a pipe gets nothing
