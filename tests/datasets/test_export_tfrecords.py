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

