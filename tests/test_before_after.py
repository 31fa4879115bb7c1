"""The public behaviour of a fixed-seed smoke run is unchanged by refactoring: bit-identical.

`bin/train --deterministic` trains an end-to-end run (ce) and a pretrain-then-probe run (supcon);
their metrics.json and history.csv, and the raw permutation effects of each mode on the ce and
supcon classifiers, must equal, exactly, the values stored in `tests/fixtures/before_after/`
(produced by this file's `__main__` at the commit named in the fixture's README).

The normalised `reliance` shares are left out on purpose: they depend on which (pseudo-)modes
the analysis reports, which may grow; the raw per-mode effects may not change. New keys (e.g.
intervals of the baseline metrics) may join; the stored ones must keep their values.

Regenerate (only for an intended change of results, saying why in the commit):
    python tests/test_before_after.py tests/fixtures/before_after/values.json
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "before_after", "values.json")
LOSSES = ("ce", "supcon")
EFFECTS = ("delta_accuracy", "delta_auc", "flip_rate", "mean_abs_delta_p")
SENSITIVITY = dict(n=64, repeats=2, seed=0, bootstrap=10, batch_size=64)


def _train(repo: str, loss: str, out_dir: str) -> None:
    command = [sys.executable, os.path.join(repo, "bin", "train"), f"--loss={loss}", "--smoke",
               "--train_dist=clinical", "--deterministic", "--seed=0", f"--out_dir={out_dir}"]
    env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"


def _history(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sensitivity(model_path: str) -> dict:
    import keras

    from nodulelearn.datasets import spec_at_image_size
    from nodulelearn.sensitivity import permutation_sensitivity

    model = keras.saving.load_model(model_path, compile=False)
    spec = spec_at_image_size("clinical", 32)  # the smoke runs' image size
    result = permutation_sensitivity(model, spec, **SENSITIVITY)
    return {
        "baseline": result["baseline"],
        "modes": {r["mode"]: {name: r[name] for name in EFFECTS} for r in result["modes"]},
    }


def produce(repo: str, work_dir: str) -> dict:
    """Trains the smoke runs with the code at ``repo`` and measures them (see the module doc)."""
    values = {}
    for loss in LOSSES:
        run_dir = os.path.join(work_dir, loss)
        _train(repo, loss, run_dir)
        with open(os.path.join(run_dir, "metrics.json")) as f:
            metrics = json.load(f)
        values[loss] = {
            "metrics": metrics,
            "history": _history(os.path.join(run_dir, "history.csv")),
            "sensitivity": _sensitivity(os.path.join(run_dir, "model.keras")),
        }
    return values


@pytest.mark.slow
def test_smoke_runs_are_bit_identical_to_the_stored_ones(tmp_path):
    with open(FIXTURE) as f:
        expected = json.load(f)
    got = produce(REPO, str(tmp_path))
    for loss in LOSSES:
        assert got[loss]["metrics"] == expected[loss]["metrics"], loss
        assert got[loss]["history"] == expected[loss]["history"], loss
        baseline = expected[loss]["sensitivity"]["baseline"]  # new keys (intervals) may join
        assert {k: got[loss]["sensitivity"]["baseline"].get(k) for k in baseline} == baseline
        for mode, effects in expected[loss]["sensitivity"]["modes"].items():
            assert got[loss]["sensitivity"]["modes"].get(mode) == effects, (loss, mode)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT.json  (runs the code on PYTHONPATH / this checkout)")
    import nodulelearn

    repo = os.path.dirname(os.path.dirname(os.path.abspath(nodulelearn.__file__)))
    with tempfile.TemporaryDirectory() as work:
        result = produce(repo, work)
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
