"""bin/export_tfrecords: the command line writes a readable export and refuses bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "export_tfrecords"

SMALL_SPEC = """
name = "small"
image_size = 32
[modes.margin]
alignment = 1.0
"""


def run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SPEC)
    return path


def test_exports_and_refuses_to_overwrite(tmp_path, spec_path):
    from nodulelearn.datasets import read_tfrecords

    out = tmp_path / "out"
    args = [f"--dist={spec_path}", "--n=8", "--seed=2", f"--out={out}", "--shards=2"]
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "data-00000-of-00002.tfrecord", "data-00001-of-00002.tfrecord", "dataset.json"]
    description = json.loads((out / "dataset.json").read_text())
    assert (description["n"], description["seed"], description["spec"]["name"]) == (8, 2, "small")
    images, labels = next(read_tfrecords(out, 8).as_numpy_iterator())
    assert images.shape == (8, 32, 32, 1) and labels.shape == (8,)

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run(*args)
    assert again.returncode != 0
    assert "not empty" in again.stderr and "--overwrite" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched



def run_with_injected_error(script, error, *args):
    """Runs ``script`` in a subprocess whose every file write raises ``error`` (an expression).

    Tests run as root, which ignores read-only permissions: the error is injected instead, at
    ``os.open`` / ``tempfile.mkstemp`` / ``TFRecordWriter``, the calls that create files.
    """
    code = f"""
import errno, os, runpy, sys, tempfile
import tensorflow as tf
def fail(*a, **k):
    raise {error}
class Writer(tf.io.TFRecordWriter):
    def __init__(self, *a, **k):
        fail()
tf.io.TFRecordWriter = Writer
tempfile.mkstemp = fail
sys.argv = [{str(script)!r}] + {list(args)!r}
runpy.run_path({str(script)!r}, run_name="__main__")
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("export_tfrecords: error:", "preview_dataset: error:")), last
    for fragment in fragments:
        assert fragment in last, last


# One subprocess each (a TensorFlow import is slow): the library tests cover the other cases.
def test_full_disk_is_one_line(tmp_path, spec_path):
    error, reason = "OSError(errno.ENOSPC, 'No space left on device')", "No space left on device"
    out = tmp_path / "out"
    result = run_with_injected_error(SCRIPT, error, f"--dist={spec_path}", "--n=4", f"--out={out}")
    assert_one_line_error(result, str(out), reason)
    assert not (out / "dataset.json").exists() and not list(out.glob("*.tfrecord"))


def test_out_under_a_file_is_one_line(tmp_path, spec_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = run(f"--dist={spec_path}", "--n=4", f"--out={blocker / 'sub'}")
    assert_one_line_error(result, str(blocker), "lies under a file")
    assert blocker.read_text() == "x"


def test_absurd_geometry_is_refused_before_any_work(tmp_path):
    spec = tmp_path / "absurd.toml"
    spec.write_text("pixel_spacing_mm = 1e300\n")  # exported all-NaN images before
    out = tmp_path / "out"
    result = run(f"--dist={spec}", "--n=4", f"--out={out}")
    assert_one_line_error(result, "Invalid value for", "pixel_spacing_mm=1e+300")
    assert not out.exists()


PREVIEW = SCRIPT.with_name("preview_dataset")


def test_preview_write_errors_are_one_line(tmp_path, spec_path):
    out = tmp_path / "sheet.png"
    result = run_with_injected_error(
        PREVIEW, "OSError(errno.ENOSPC, 'No space left on device')", f"--dist={spec_path}",
        f"--out={out}", "--n=2")
    assert_one_line_error(result, str(out), "No space left on device")
    assert list(tmp_path.iterdir()) == [spec_path]
