"""The encoding stage of a study run: encoding and recoverability of the run's frozen encoder.

    <out>/runs/<run id>/encoding.json        encoding on the decorrelated training distribution
    <out>/runs/<run id>/recoverability.json  last-layer retraining on each OOD test set
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from nodulelearn import run_dir as run_layout
from nodulelearn.atomic_files import write_json_atomic
from nodulelearn.study.stages import SENSITIVITY_SEED_OFFSET, read_cached

log = logging.getLogger(__name__)

ENCODING_FILE = "encoding.json"
RECOVERABILITY_FILE = "recoverability.json"


class EncodingAnalysis:
    """Encoding and recoverability of a run's frozen encoder (``nodulelearn.sensitivity``).

    ``encoding`` reads every mode off the embedding on the decorrelated training distribution
    (every alignment 0); ``recoverability`` refits only the linear head on a small sample of each
    OOD test distribution. Each also writes its own files (decodability.json, encoding.png;
    recoverability.json / .csv) into ``out_dir``.
    """

    def encoding(
        self, train_dir: Path, train_ref: str, *, seed: int, n: int | None, out_dir: Path
    ) -> dict:
        from nodulelearn.sensitivity import encoding_distribution, probe_encoding

        encoder = self._load(Path(train_dir) / run_layout.ENCODER)
        return probe_encoding(
            encoder, encoding_distribution(train_ref), str(out_dir), seed=seed, n=n,
            **_reference_options(out_dir, n),
        )

    def recoverability(
        self, train_dir: Path, refs: Sequence[str], *, seed: int, n_test: int,
        n_fit: int | None, out_dir: Path,
    ) -> list[dict]:  # fmt: skip
        from nodulelearn.sensitivity import probe_recoverability

        model = self._load(Path(train_dir) / run_layout.MODEL)
        encoder = self._load(Path(train_dir) / run_layout.ENCODER)
        extra = {} if n_fit is None else {"n_fit": n_fit}
        return probe_recoverability(
            model, encoder, list(refs), str(out_dir), seed=seed, n_test=n_test, **extra,
            **_reference_options(out_dir, n_fit),
        )

    @staticmethod
    def _load(path: Path):
        from nodulelearn.sensitivity import load_keras_model

        return load_keras_model(str(path))


#: The untrained reference's on-disk cache, shared by every run: <out>/untrained/.
REFERENCE_DIR = "untrained"
#: Untrained inits of a smoke study (its read-outs are sized down too); 5 otherwise.
SMOKE_BASELINE_INITS = 2


def _reference_options(out_dir: Path, n: int | None) -> dict:
    """The untrained reference's settings for a run's ``out_dir`` (<out>/runs/<id>/<stage>): the
    study's shared cache, and fewer inits where ``n`` is set (smoke studies)."""
    options = {"baseline_cache_dir": str(Path(out_dir).parents[2] / REFERENCE_DIR)}
    if n is not None:
        options["baseline_inits"] = SMOKE_BASELINE_INITS
    return options


def encoding_stage(study, run, directory, analysis) -> tuple[dict | None, dict[str, dict]]:
    """Encoding (one result) and recoverability (one record per OOD test set) of the run.

    A training directory without an encoder (e.g. a stand-in model) gets neither, with a warning.

    Each is kept in its own file (``encoding.json``, ``recoverability.json``) and reused by a
    relaunch when made with today's seed and sample size.
    """
    # Imported here: the sensitivity package imports TensorFlow, which the runner's start and
    # usage errors must not.
    from nodulelearn.sensitivity.readout import measured_otherwise

    if not (directory / "train" / run_layout.ENCODER).is_file() and isinstance(
        analysis, EncodingAnalysis
    ):
        log.warning(
            "%s: the training directory has no %s; encoding and recoverability are not "
            "measured for this run", run.id, run_layout.ENCODER,
        )  # fmt: skip
        return None, {}
    seed = run.seed + SENSITIVITY_SEED_OFFSET
    # Encoding: one sample (and folds) for every run of the study, so runs are compared on the
    # same images and the untrained reference is computed once per encoding distribution.
    encoding_seed = SENSITIVITY_SEED_OFFSET
    # Smoke studies shrink the read-outs to the sensitivity budget (seconds, not minutes); a real
    # study uses the analysis' own sample-size rules (e.g. 20 samples per embedding dimension).
    n = study.sensitivity.n if study.budget.get("smoke") else None
    path = directory / ENCODING_FILE
    encoding = read_cached(path)
    # Made by the analysis before it had the untrained reference, or with another read-out:
    # redone (stand-ins kept).
    real = isinstance(analysis, EncodingAnalysis)
    if encoding is None or encoding.get("seed") != encoding_seed or (
        n and encoding.get("n") != n
    ) or (
        real and ("baseline_inits" not in encoding or measured_otherwise(encoding))
    ):
        encoding = analysis.encoding(
            directory / "train", run.train.dist, seed=encoding_seed, n=n,
            out_dir=directory / "encoding",
        )
        write_json_atomic(path, encoding)
        encoding = json.loads(path.read_text())
    ood = [t for t in run.tests if t.role == "ood"]
    if not ood:
        return encoding, {}
    settings = {
        "seed": seed, "n_test": study.sensitivity.n, "n_fit": n, "tests": [t.label for t in ood],
    }  # fmt: skip
    path = directory / RECOVERABILITY_FILE
    cached = read_cached(path)
    if cached is None or any(cached.get(k) != v for k, v in settings.items()) or (real and any(
        "baseline_accuracy" not in r for r in cached.get("records", {}).values()
    )):
        found = analysis.recoverability(
            directory / "train", [t.ref for t in ood],
            seed=seed, n_test=study.sensitivity.n, n_fit=n, out_dir=directory / "recoverability",
        )  # fmt: skip
        records_by_test = dict(zip(settings["tests"], found, strict=True))
        write_json_atomic(path, {**settings, "records": records_by_test})
        cached = json.loads(path.read_text())
    return encoding, cached["records"]
