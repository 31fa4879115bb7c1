"""The public behaviour of a fixed-seed smoke run is unchanged by refactoring.

`bin/train --deterministic` trains an end-to-end run (ce) and a pretrain-then-probe run (supcon);
their metrics.json and history.csv, and the raw permutation effects of each mode on the ce and
supcon classifiers, must equal the values stored in `tests/fixtures/before_after/` (produced by
this file's `__main__` at the commit named in the fixture's README): bit-identical on the machine
that stored them, and to within float32 rounding on another CPU (`--deterministic` fixes the
order of operations, not the instruction set: measured on an AMD EPYC against values stored on
another CPU, at most 5.8e-5 relative, 2.6e-9 absolute). A real change of results (a prediction
that flips moves an accuracy by 1/32 here) is far outside that.

The normalised `reliance` shares are left out on purpose: they depend on which (pseudo-)modes
the analysis reports, which may grow; the raw per-mode effects may not change. New keys (e.g.
intervals of the baseline metrics) may join; the stored ones must keep their values.

Regenerate (only for an intended change of results, saying why in the commit):
    python tests/test_before_after.py tests/fixtures/before_after/values.json
"""

from __future__ import annotations

import csv
import json
import math
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


REL, ABS = 1e-4, 1e-6  # float32 rounding across CPUs (module docstring)


def assert_matches(got, expected, where: str) -> None:
    """``got`` has every key of ``expected`` (new keys may join) with the same values: numbers
    (also numbers written as text, as in history.csv) to within REL / ABS, anything else equal."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{where}: expected a mapping, got {got!r}"
        for key, value in expected.items():
            assert key in got, f"{where}: {key!r} is missing"
            assert_matches(got[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got!r}"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_matches(a, b, f"{where}[{i}]")
    else:
        try:
            a, b = float(got), float(expected)
        except (TypeError, ValueError):
            assert got == expected, f"{where}: {got!r} != {expected!r}"
            return
        assert math.isclose(a, b, rel_tol=REL, abs_tol=ABS), f"{where}: {got!r} != {expected!r}"


def test_matching_tolerates_rounding_only():
    assert_matches({"loss": "0.6526322960853577", "n": 32}, {"loss": "0.6526322364807129", "n": 32},
                   "x")
    with pytest.raises(AssertionError, match=r"x.accuracy"):
        assert_matches({"accuracy": 0.625}, {"accuracy": 0.59375}, "x")  # one flipped image
    with pytest.raises(AssertionError, match="missing"):
        assert_matches({}, {"auc": 0.5}, "x")
    with pytest.raises(AssertionError, match="'train' != 'pretrain'"):
        assert_matches({"phase": "train"}, {"phase": "pretrain"}, "x")


@pytest.mark.slow
def test_smoke_runs_match_the_stored_ones(tmp_path):
    with open(FIXTURE) as f:
        expected = json.load(f)
    got = produce(REPO, str(tmp_path))
    for loss in LOSSES:
        assert_matches(got[loss]["metrics"], expected[loss]["metrics"], f"{loss} metrics")
        assert_matches(got[loss]["history"], expected[loss]["history"], f"{loss} history")
        # new keys (intervals) may join the baseline and the modes; the stored ones must match
        assert_matches(got[loss]["sensitivity"], expected[loss]["sensitivity"], f"{loss} effects")


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
