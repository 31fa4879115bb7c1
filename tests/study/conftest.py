"""Fixtures of the study tests: tiny distribution and study files, and stand-in stages.

The stand-ins (``FakeStages``) replace training and the sensitivity analysis in the tests of the
study's own logic (planning, resuming, sharding, aggregation), which then run in milliseconds;
test_end_to_end.py runs the real ones.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nodulelearn import run_dir as run_layout

TINY_TRAIN = """\
name = "tiny_train"
image_size = 32
pixel_spacing_mm = 1.5
[modes.margin]
alignment = 1.0
[modes.size]
alignment = 1.0
"""
TINY_OOD = """\
name = "tiny_ood"
image_size = 32
pixel_spacing_mm = 1.5
[modes.margin]
alignment = 1.0
[modes.size]
alignment = 0.0
"""
TINY_STUDY = """\
name = "tiny"
seeds = {seeds}

[budget]
{budget}

[sensitivity]
n = 32
repeats = 1

[losses.ce]

[losses.supcon]
temperature = 0.2

[train.tiny]
dist = "tiny_train.toml"
ood = ["tiny_ood.toml"]
"""
MODES = ("margin", "size", "texture", "calcification", "contrast", "position", "noise", "vessels")
ANALYSED = (*MODES, "nuisance")  # what permutation_sensitivity analyses (ANALYSED_MODES)


# A test set where the margin predicts the label and the size predicts it the other way round:
# a sweep's shortcut bias reads which of the two a model follows.
TINY_CONFLICT = """\
name = "tiny_conflict"
image_size = 32
pixel_spacing_mm = 1.5
[modes.margin]
alignment = 1.0
[modes.size]
alignment = -1.0
"""


def write_tiny_study(directory: Path, *, seeds=(0, 1), budget: str = "",
                     conflict: bool = False) -> Path:
    """Writes tiny_train.toml, tiny_ood.toml and study.toml into ``directory``; returns study's.

    ``conflict``: also tiny_conflict.toml (``TINY_CONFLICT``), a second OOD set of the study.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tiny_train.toml").write_text(TINY_TRAIN)
    (directory / "tiny_ood.toml").write_text(TINY_OOD)
    path = directory / "study.toml"
    text = TINY_STUDY.format(seeds=list(seeds), budget=budget)
    if conflict:
        (directory / "tiny_conflict.toml").write_text(TINY_CONFLICT)
        text = text.replace('ood = ["tiny_ood.toml"]',
                            'ood = ["tiny_ood.toml", "tiny_conflict.toml"]')
        assert "tiny_conflict.toml" in text  # the study's OOD list changed shape otherwise
    path.write_text(text)
    return path


def _unit(*parts) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class FakeStages:
    """Deterministic stand-ins for train(), permutation_sensitivity() and the encoding and
    recoverability analyses, counting their calls."""

    def __init__(self):
        self.train_calls: list[str] = []  # runs trained
        self.reused: list[str] = []  # complete training directories returned as they are
        self.sensitivity_calls: list[tuple[str, str]] = []
        self.encoding_calls: list[str] = []  # runs whose encoding was measured
        self.recoverability_calls: list[tuple[str, tuple[str, ...]]] = []

    def train(self, fields, train_dir: Path, overwrite: bool) -> dict:
        done = train_dir / run_layout.METRICS
        if done.is_file() and not overwrite:  # like train(): complete
            self.reused.append(str(train_dir))
            return json.loads(done.read_text())
        self.train_calls.append(str(train_dir))
        train_dir.mkdir(parents=True, exist_ok=True)
        metrics = {}
        for ref in fields["test_dists"]:
            acc = 0.5 + 0.5 * _unit(fields["loss"], fields["seed"], ref)
            metrics[Path(ref).stem] = {
                "accuracy": acc, "sensitivity": acc, "specificity": acc,
                "balanced_accuracy": acc, "auc": min(1.0, acc + 0.05), "n": 64,
            }  # fmt: skip
        # No encoder.keras: a study run without stand-in encoding stages skips the real encoding
        # analysis for this run (with a warning) instead of loading a stand-in file.
        (train_dir / run_layout.MODEL).write_bytes(b"stand-in")
        (train_dir / run_layout.METRICS).write_text(json.dumps(metrics))
        return metrics

    def sensitivity(self, train_dir, dist_ref, *, n, repeats, seed, batch_size) -> dict:
        self.sensitivity_calls.append((str(train_dir), dist_ref))
        # The real analysis adds the "nuisance" pseudo-mode (re-rendered noise) to the modes.
        weights = [_unit(str(train_dir.parent.name), dist_ref, m) for m in ANALYSED]
        total = sum(weights)
        modes = []
        for mode, w in zip(ANALYSED, weights, strict=True):
            share = w / total
            modes.append({
                "mode": mode, "varies": True, "delta_accuracy": w / 4, "mean_abs_delta_p": w / 5,
                "reliance": share, "reliance_ci_low": share - 0.02,
                "reliance_ci_high": share + 0.02,
            })  # fmt: skip
        return {"baseline": {"accuracy": 0.9, "auc": 0.95}, "modes": modes, "n": n, "repeats": repeats,
                "seed": seed}


    def encoding(self, train_dir, train_ref, *, seed, n, out_dir) -> dict:
        self.encoding_calls.append(train_dir.parent.name)
        modes = []
        for mode in MODES:
            value = _unit(train_dir.parent.name, "encoding", mode)
            modes.append({
                "mode": mode, "varies": True, "metric": "accuracy", "score": value,
                "normalized": value, "normalized_ci_low": max(0.0, value - 0.05),
                "normalized_ci_high": min(1.0, value + 0.05),
            })  # fmt: skip
        return {"distribution": f"{Path(train_ref).stem}_independent", "n": n or 1000,
                "seed": seed, "modes": modes}

    def recoverability(self, train_dir, refs, *, seed, n_test, n_fit, out_dir) -> list[dict]:
        self.recoverability_calls.append((train_dir.parent.name, tuple(refs)))
        records = []
        for ref in refs:
            original = 0.5 + 0.2 * _unit(train_dir.parent.name, ref, "original")
            retrained = 0.7 + 0.3 * _unit(train_dir.parent.name, ref, "retrained")
            records.append({
                "distribution": Path(ref).stem, "original_accuracy": original,
                "original_accuracy_ci_low": original - 0.05,
                "original_accuracy_ci_high": original + 0.05, "retrained_accuracy": retrained,
                "retrained_accuracy_ci_low": retrained - 0.05,
                "retrained_accuracy_ci_high": min(1.0, retrained + 0.05),
                "n_fit": n_fit or 512, "n_test": n_test,
            })  # fmt: skip
        return records


@pytest.fixture
def fake_stages():
    """A factory of fresh ``FakeStages`` (each counts its own calls)."""
    return FakeStages


@pytest.fixture(scope="session")
def tiny_study_files():
    """``write_tiny_study(directory, *, seeds, budget) -> study path``."""
    return write_tiny_study
