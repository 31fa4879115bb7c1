"""The training and permutation-sensitivity stages of a study run, each leaving its file on disk.

    <out>/runs/<run id>/train/             training's run directory (train() resumes it itself)
    <out>/runs/<run id>/sensitivity/<test dist>.json

A relaunch reuses a stage's file when it was made with today's settings. The encoding stage
lives in ``encoding_stage``; ``execution`` chains the stages and writes the record.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nodulelearn import run_dir as run_layout
from nodulelearn.atomic_files import write_json_atomic
from nodulelearn.study.plan import train_config_fields

log = logging.getLogger(__name__)

# The sensitivity analysis samples its test sets with this offset added to the run's seed, so that
# they never coincide with the samples the model was trained on (sample i depends on (seed, i)).
SENSITIVITY_SEED_OFFSET = 1_000_003


def default_train(config_fields: dict[str, Any], train_dir: Path, overwrite: bool) -> dict:
    """``nodulelearn.training.train`` on the run's config, seeded as ``bin/train`` seeds it."""
    from nodulelearn.training import TrainConfig, set_determinism, train

    config = TrainConfig(**config_fields)
    if config.deterministic:  # seeded and deterministic ops, as bin/train sets them up
        set_determinism(config.seed)
    # verbose=0: the study logs one progress line per run instead of Keras' progress bars.
    trained = train(config, str(train_dir), overwrite=overwrite, verbose=0)
    return trained.metrics if trained is not None else {}  # None: a non-chief worker


class PermutationAnalysis:
    """``permutation_sensitivity`` of a run's ``model.keras``, loading the model once per run."""

    def __init__(self):
        self._models: dict[Path, Any] = {}

    def __call__(
        self, train_dir: Path, dist_ref: str, *, n: int, repeats: int, seed: int, batch_size: int
    ) -> dict:
        from nodulelearn.datasets import spec_at_image_size
        from nodulelearn.sensitivity import permutation_sensitivity
        from nodulelearn.sensitivity.model_loading import load_keras_model

        path = Path(train_dir) / run_layout.MODEL
        if path not in self._models:
            self._models[path] = load_keras_model(str(path))
        model = self._models[path]
        # Rendered at the model's size, like training's own evaluation (a budget may set
        # image_size, e.g. 32 pixels for smoke studies).
        spec = spec_at_image_size(dist_ref, model.input_shape[1])
        return permutation_sensitivity(
            model, spec, n=n, repeats=repeats, seed=seed, batch_size=batch_size
        )


def train_stage(study, run, directory, overwrite, train_fn) -> dict[str, Any]:
    """Trains the run; returns its metrics.json.

    ``train`` itself returns at once when its directory holds this complete run, resumes an
    interrupted one, and refuses a directory holding a run of another config: so a training
    directory left by an older version of the study is never silently reused.
    """
    train_dir = directory / "train"
    train_fn(train_config_fields(study, run), train_dir, overwrite)
    return json.loads((train_dir / run_layout.METRICS).read_text())


def sensitivity_stage(study, run, directory, sensitivity_fn) -> dict[str, dict]:
    """The permutation analysis on each analysed test distribution, one file per distribution."""
    tests = run.tests if study.sensitivity.on == "all" else run.tests[:1]
    results = {}
    settings = {
        "n": study.sensitivity.n,
        "repeats": study.sensitivity.repeats,
        "seed": run.seed + SENSITIVITY_SEED_OFFSET,
    }
    for test in tests:
        path = directory / "sensitivity" / f"{test.label}.json"
        # A result left by an interrupted run is reused only if made with today's settings (an
        # unreadable one, damaged from outside, is recomputed).
        cached = read_cached(path)
        if cached is None or any(cached.get(k) != v for k, v in settings.items()):
            cached = sensitivity_fn(
                directory / "train",
                test.ref,
                **settings,
                batch_size=study.sensitivity.batch_size,
            )
            write_json_atomic(path, cached)
            cached = json.loads(path.read_text())
        results[test.label] = cached
    return results


def read_cached(path: Path) -> dict | None:
    """A stage's JSON file, or None when missing, unreadable (logged) or not an object."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s is unreadable (%s); recomputing it", path, err)
        return None
    return value if isinstance(value, dict) else None
