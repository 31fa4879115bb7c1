"""Real patches as a test set: patches rendered by nodulelearn and written as a CSV of .npy files, a
class folder of 16-bit PNGs, an .npz and a MedMNIST-layout .npz of volumes give the accuracy of
evaluating them through their distribution; every bad input is one line naming the problem."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from nodulelearn.datasets import load_spec, make_dataset, spec_at_image_size
from nodulelearn.datasets.patches import PatchError, load_patches
from nodulelearn.training.evaluate import evaluate_model, evaluate_patches, with_intervals

from .test_model_adapter import _plain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N, SEED = 40, 11
LOW_HU, WIDTH_HU = -1250.0, 1700.0


@pytest.fixture(scope="module")
def rendered(spec_path):
    spec = spec_at_image_size(load_spec(spec_path), 32)
    images, labels = [], []
    for x, y in make_dataset(spec, N, SEED, 16):
        images.append(x.numpy())
        labels.append(y.numpy())
    return spec, np.concatenate(images)[..., 0], np.concatenate(labels).astype(int)


@pytest.fixture(scope="module")
def model():
    return _plain(32)[2]


@pytest.fixture(scope="module")
def written(rendered, tmp_path_factory):
    """The rendered patches as: CSV of .npy (HU), class folder of 16-bit PNGs (unit), .npz
    (unit) and MedMNIST .npz of volumes (uint8-free float HU volumes, split 'test')."""
    _, images, labels = rendered
    root = tmp_path_factory.mktemp("patches")
    (root / "csv" / "arrays").mkdir(parents=True)
    with open(root / "csv" / "patches.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            np.save(root / "csv" / "arrays" / f"{i}.npy", image * WIDTH_HU + LOW_HU)
            writer.writerow([f"arrays/{i}.npy", ["benign", "malignant"][label]])
    for name in ("benign", "malignant"):
        (root / "folder" / name).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "folder" / ["benign", "malignant"][label]
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.rint(image * 65535).astype(np.uint16))
    np.savez(root / "plain.npz", images=images, labels=labels)
    volumes = np.repeat(images[:, None] * WIDTH_HU + LOW_HU, 5, axis=1)
    volumes[:, [0, 1, 3, 4]] = 400.0  # only the central axial slice is the patch
    np.savez(root / "medmnist.npz", test_images=volumes, test_labels=labels[:, None],
             train_images=volumes[:2], train_labels=labels[:2, None])
    return root


def test_each_layout_gives_the_accuracy_of_the_distribution(rendered, written, model):
    spec, images, labels = rendered
    through_distribution = evaluate_model(model, spec, N, SEED, 16)
    assert 0.2 < through_distribution["accuracy"] < 0.9
    sets = {
        "csv": load_patches(written / "csv" / "patches.csv", intensity="hu"),
        "folder": load_patches(written / "folder", intensity="unit", image_size=32),
        "npz": load_patches(written / "plain.npz", intensity="unit"),
        "medmnist": load_patches(written / "medmnist.npz", intensity="hu", split="test"),
    }
    for name, patches in sets.items():
        assert len(patches) == N, name
        metrics = evaluate_patches(model, patches, 16)
        assert metrics["accuracy"] == through_distribution["accuracy"], name
        assert metrics["auc"] == pytest.approx(through_distribution["auc"], abs=1e-3), name
        assert metrics["accuracy_ci_low"] < metrics["accuracy"] < metrics["accuracy_ci_high"]
    np.testing.assert_allclose(sets["npz"].images[..., 0], images, atol=0)
    np.testing.assert_allclose(sets["csv"].images[..., 0], images, atol=1e-6)
    np.testing.assert_allclose(sets["medmnist"].images[..., 0], images, atol=1e-6)
    assert sorted(sets["folder"].labels.tolist()) == sorted(labels.tolist())
    with pytest.raises(ValueError, match=r"Expected patches of shape \[n, 32, 32, 1\].*"
                                         r"Received shape \[40, 16, 16, 1\]"):
        evaluate_patches(model, dataclasses.replace(sets["npz"],
                                                    images=sets["npz"].images[:, ::2, ::2]))


def test_intervals_are_wilson_and_delong():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    probs = np.array([0.1, 0.6, 0.3, 0.9, 0.4, 0.8, 0.7, 0.2])
    metrics = with_intervals(labels, probs)
    assert metrics["accuracy"] == 0.75
    assert metrics["accuracy_ci_low"] == pytest.approx(0.4093, abs=1e-3)  # Wilson, 6 of 8
    assert metrics["sensitivity_ci_high"] == pytest.approx(0.9544, abs=1e-3)  # 3 of 4
    assert metrics["auc_ci_low"] < metrics["auc"] < metrics["auc_ci_high"]


def test_bin_evaluate_reports_patches_beside_distributions(written, model, spec_path, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    out = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "evaluate"), f"--model={path}",
         f"--dists={spec_path}", "--n=16", f"--images={written / 'plain.npz'}",
         f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    assert "images:plain.npz" in table and "sensitivity_test" in table
    assert table.count("[") >= 8  # intervals on both rows
    rows = json.loads(out.read_text())
    assert rows["images:plain.npz"]["adapter"]["input_intensity"] == "unit"
    assert rows["images:plain.npz"]["n"] == N


@pytest.mark.parametrize("flags, message", [
    (["--dists="], "--dists is empty"),
    ([], "nothing to evaluate on"),
    (["--dists=clinical", "--input_intensity=window:9"], "Invalid input_intensity"),
])
def test_bin_evaluate_refuses_in_one_line(flags, message, tmp_path, model):
    path = tmp_path / "m.keras"
    model.save(path)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "evaluate"),
                           f"--model={path}", *flags], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("evaluate: error:"), done.stderr[-1500:]
    assert "Traceback" not in done.stderr


def _write_csv(root, rows):
    with open(root / "p.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return root / "p.csv"


def test_bad_inputs_are_one_line_each(tmp_path, written):
    def refused(match, *args, **kwargs):
        with pytest.raises(PatchError, match=match) as err:
            load_patches(*args, **kwargs)
        assert "\n" not in str(err.value)

    empty = tmp_path / "empty"
    (empty / "benign").mkdir(parents=True)
    (empty / "malignant").mkdir()
    refused("has no images", empty)
    (tmp_path / "half" / "benign").mkdir(parents=True)
    refused("needs the subfolders benign/ and malignant/. Missing: malignant/.",
            tmp_path / "half")
    np.save(tmp_path / "a.npy", np.zeros((32, 32)))
    np.save(tmp_path / "b.npy", np.zeros((24, 24)))
    refused("invalid label 'maybe'. Expected 0, 1, benign or malignant",
            _write_csv(tmp_path, [["a.npy", "maybe"]]))
    refused(r"mixed sizes: 24x24 \(e.g. b.npy\); 32x32 \(e.g. a.npy\).*--images_resize",
            _write_csv(tmp_path, [["a.npy", 0], ["b.npy", 1]]))
    resized = load_patches(_write_csv(tmp_path, [["a.npy", 0], ["b.npy", 1]]), image_size=32,
                           resize=True)
    assert resized.images.shape == (2, 32, 32, 1)
    refused("are 32x32 but the model takes 64x64", _write_csv(tmp_path, [["a.npy", 0]]),
            image_size=64)
    cv2.imwrite(str(tmp_path / "rgba.png"), np.zeros((32, 32, 4), np.uint8))
    refused(r"expected a single-channel \(grayscale\) PNG.*\[32, 32, 4\]",
            _write_csv(tmp_path, [["rgba.png", 1]]))
    refused("line 2: the image .*nowhere.npy' does not exist",
            _write_csv(tmp_path, [["../nowhere.npy", 1]]))
    refused("expected a .png or .npy image", _write_csv(tmp_path, [["p.csv", 1]]))
    nan = np.zeros((32, 32))
    nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    refused("1 pixels are NaN or infinite", _write_csv(tmp_path, [["nan.npy", 0]]))
    np.save(tmp_path / "a.npy", np.full((32, 32), 1000.0))
    refused(r"values span \[1000, 1000\], outside \[0, 1\] expected for "
            r"--images_intensity=unit. Valid: hu, unit, uint8",
            _write_csv(tmp_path, [["a.npy", 0]]), intensity="unit")
    refused("holds the splits test, train: pass --images_split", written / "medmnist.npz")
    refused("images_split='test' applies to an .npz only", written / "folder", split="test")
    refused("Invalid images_intensity 'ct'", written / "plain.npz", intensity="ct")
    refused("do not exist", tmp_path / "missing.csv")
