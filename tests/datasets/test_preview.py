"""Preview sheets: the library function and bin/preview_dataset."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nodulelearn.datasets import load_spec
from nodulelearn.datasets.modes import MODE_NAMES, MODES
from nodulelearn.datasets.preview import (
    REFERENCE_VALUES,
    render_mode_sweeps,
    sweep_values,
    write_preview,
)

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "preview_dataset"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL_SPEC = """
name = "small"
image_size = 32
pixel_spacing_mm = 1.5
[modes.margin]
alignment = 1.0
"""


@pytest.fixture
def spec_path(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SPEC)
    return path


def test_sweep_values_cover_each_domain():
    assert sweep_values("margin") == [0.0, 1.0, 2.0]
    assert sweep_values("calcification") == [0.0, 1.0]
    assert sweep_values("vessels") == [float(k) for k in range(7)]
    size = sweep_values("size")
    assert len(size) == 6 and size[0] == MODES["size"].domain[0] and size[-1] == 30.0


def test_each_row_changes_only_its_mode(spec_path):
    spec = load_spec(spec_path)
    sweeps = render_mode_sweeps(spec, seed=1)
    assert list(sweeps) == list(MODE_NAMES)
    for mode, (values, images) in sweeps.items():
        assert images.shape == (len(values), 32, 32, 1)
        steps = [np.abs(a - b).max() for a, b in zip(images[:-1], images[1:], strict=True)]
        assert min(steps) > 0.01, f"{mode}: neighbouring values look the same"
    # Every row starts from the reference nodule: where a row shows the reference value, the
    # image equals the reference image.
    reference = sweeps["margin"][1][0]  # margin smooth: the reference nodule itself
    texture_values, texture_images = sweeps["texture"]
    assert texture_values[0] == REFERENCE_VALUES["texture"]
    np.testing.assert_allclose(texture_images[0], reference, atol=1e-6)


def test_write_preview_writes_a_png_atomically(tmp_path, spec_path):
    spec = load_spec(spec_path)
    out = tmp_path / "sheet.png"
    assert write_preview(spec, out, seed=0, n=4) == out
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) < 400_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png", "small.toml"]  # no temp
    with pytest.raises(ValueError, match=r"ending in \.png"):
        write_preview(spec, tmp_path / "sheet.jpg", n=4)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_preview(spec, tmp_path / "missing" / "sheet.png", n=4)
    with pytest.raises(ValueError, match="`n`"):
        write_preview(spec, out, n=0)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_preview(spec, tmp_path / "dir.png", n=4)
    with pytest.raises(NotADirectoryError, match="is a file"):
        write_preview(spec, tmp_path / "small.toml" / "sheet.png", n=4)


def test_importing_the_preview_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import nodulelearn.datasets.preview; "
            "print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg"


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_command_line(tmp_path, spec_path):
    out = tmp_path / "preview.png"
    result = _run(f"--dist={spec_path}", f"--out={out}", "--n=3", "--seed=2")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert "Wrote" in result.stderr
