"""Runs the runs of a study (or of one shard of it): train, evaluate, sensitivity, record.

Every stage leaves its result on disk before the next starts, so a relaunch after any
interruption redoes only what is missing:

    <out>/study.json                       the validated study (aggregation reads it)
    <out>/.locks/shard-<i>-of-<n>/         held by the process running that shard
    <out>/runs/<run id>/identity.json      the run's fingerprint, written before its first stage
    <out>/runs/<run id>/train/             training's run directory (train() resumes it itself)
    <out>/runs/<run id>/sensitivity/<test dist>.json
    <out>/runs/<run id>/encoding.json      encoding on the decorrelated training distribution
    <out>/runs/<run id>/recoverability.json  last-layer retraining on each OOD test set
    <out>/runs/<run id>/record.json        written last: the run is finished

A process holds the lock of its shard and of the run it works on (``nodulelearn.locks``), so two
processes never run one shard or one run at once; the kernel frees the locks of a killed process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nodulelearn import run_dir as run_layout
from nodulelearn.atomic_files import to_jsonable, write_json_atomic
from nodulelearn.locks import LOCK_FILE, LockedError, hold_lock
from nodulelearn.study import records
from nodulelearn.study.availability import low_availability_notes
from nodulelearn.study.plan import Run, plan_runs, shard_runs, train_config_fields
from nodulelearn.study.spec import StudyError, StudySpec, is_spec_path
from nodulelearn.study.sweep import expand_study
from nodulelearn.study.worker import RUNS_PER_PROCESS, RunWorker, peak_memory_bytes

log = logging.getLogger(__name__)

# The sensitivity analysis samples its test sets with this offset added to the run's seed, so that
# they never coincide with the samples the model was trained on (sample i depends on (seed, i)).
SENSITIVITY_SEED_OFFSET = 1_000_003
STUDY_FILE = "study.json"


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    """What happened to one run.

    Attributes:
        run_id: the run.
        status: ``"ran"``, ``"skipped"`` (already finished) or ``"failed"``.
        seconds: wall time spent on it now.
        error: the failure's message (``"failed"`` only).
    """

    run_id: str
    status: str
    seconds: float
    error: str = ""


def run_dir(out_dir: str | Path, run: Run | str) -> Path:
    """The directory of a run inside a study's output directory."""
    return Path(out_dir) / "runs" / (run if isinstance(run, str) else run.id)


def spec_digest(ref: str) -> str:
    """SHA-256 of what a distribution samples (its parsed content, not its file's bytes).

    Comments, formatting and the free-text description do not change it; any value that changes
    the data (an alignment, a look, the image size, ...) does.

    Raises:
        StudyError: the distribution cannot be read.
    """
    from nodulelearn.datasets import load_spec

    try:
        content = load_spec(ref).to_dict()
    except (OSError, ValueError) as err:
        raise StudyError(
            f"Distribution {ref!r} of the study cannot be read ({err}). A run's identity "
            "includes the content of every distribution it uses."
        ) from None
    content.pop("description", None)
    content.pop("ood_companions", None)  # only a default, resolved into the run's tests
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def run_fingerprint(study: StudySpec, run: Run) -> dict[str, Any]:
    """Everything that determines a run's results; a finished run with another one is stale.

    It holds the content digest of each distribution the run trains or tests on (``specs``), so
    editing a distribution file makes the runs that use it stale, like changing a setting.
    """
    return to_jsonable(
        {
            "train": train_config_fields(study, run),
            "sensitivity": dataclasses.asdict(study.sensitivity),
            "tests": [dataclasses.asdict(t) for t in run.tests],
            "specs": {t.ref: spec_digest(t.ref) for t in run.tests},
        }
    )


def location_free(fingerprint: Any) -> Any:
    """The fingerprint with each distribution file's path replaced by its content digest.

    A run's results depend on what its distributions sample, not on where their files lie: a
    study folder copied or moved elsewhere (a sweep's point specs live in ``<out>/specs``), or a
    spec file moved with its content unchanged, keeps its finished runs. Preset names stay.
    """
    specs = fingerprint.get("specs") if isinstance(fingerprint, dict) else None
    if not isinstance(specs, dict):
        return fingerprint
    files = {ref: f"file with sha256 {digest}" for ref, digest in specs.items()
             if isinstance(ref, str) and is_spec_path(ref)}

    def replace(value: Any) -> Any:
        if isinstance(value, dict):
            return {files.get(k, k): replace(v) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v) for v in value]
        return files.get(value, value) if isinstance(value, str) else value

    return replace(fingerprint)


def fingerprint_changes(old: Any, new: dict[str, Any]) -> list[str]:
    """What differs between a stored fingerprint and the current one, in words (for messages)."""
    if not isinstance(old, dict):
        return ["the stored fingerprint is missing or unreadable"]
    changes = []
    for key in new:
        if old.get(key) == new[key]:
            continue
        if key == "specs" and isinstance(old.get(key), dict):
            changes += [
                f"the content of {ref}" for ref in new[key] if old[key].get(ref) != new[key][ref]
            ]
        elif key == "specs":
            changes.append("distribution contents (not recorded by an older nodulelearn)")
        else:
            changes.append(f"the {key} settings")
    return changes or ["the fingerprint's layout"]


IDENTITY_FILE = "identity.json"
ENCODING_FILE = "encoding.json"
RECOVERABILITY_FILE = "recoverability.json"
LOCKS_DIR = ".locks"  # <out>/.locks/shard-<i>-of-<n>/: one process per shard of a study
FINISHED, TO_RUN, STALE = "finished", "to run", "stale"


def run_state(out_dir: str | Path, study: StudySpec, run: Run) -> tuple[str, list[str]]:
    """Whether a run is finished, still to run, or stale; and, if stale, what changed.

    A run is stale when its record, or (unfinished) the identity it was started with, was made
    with other settings or distribution contents than the study now has.

    Raises:
        StudyError: its record or identity file is unreadable (the message names the file).
    """
    directory = run_dir(out_dir, run)
    current = run_fingerprint(study, run)
    record = records.read_record(directory)
    if record is not None:
        stored = record.get("fingerprint")
    else:
        stored = records.read_json(directory / IDENTITY_FILE, what="run identity")
        if stored is None:
            return TO_RUN, []
    if location_free(stored) == location_free(current):
        return (FINISHED if record is not None else TO_RUN), []
    return STALE, fingerprint_changes(stored, current)


def is_finished(out_dir: str | Path, study: StudySpec, run: Run) -> bool:
    """Whether the run's record exists and was made with the study's current settings.

    Raises:
        StudyError: the run (finished, or started) was made with other settings or distribution
            contents (it would silently mix results of two different studies).
    """
    state, changes = run_state(out_dir, study, run)
    if state == STALE:
        raise StudyError(
            f"Run {run.id!r} in {str(out_dir)!r} was made with other settings than the study "
            f"{study.name!r} now asks for (changed: {'; '.join(changes)}). Use another --out, "
            "or --overwrite to redo it."
        )
    return state == FINISHED


def _default_train(config_fields: dict[str, Any], train_dir: Path, overwrite: bool) -> dict:
    from nodulelearn.training import TrainConfig, set_determinism, train

    config = TrainConfig(**config_fields)
    if config.deterministic:  # seeded and deterministic ops, as bin/train sets them up
        set_determinism(config.seed)
    # verbose=0: the study logs one progress line per run instead of Keras' progress bars.
    trained = train(config, str(train_dir), overwrite=overwrite, verbose=0)
    return trained.metrics if trained is not None else {}  # None: a non-chief worker


class _PermutationAnalysis:
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


class _EncodingAnalysis:
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
            encoder, encoding_distribution(train_ref), str(out_dir), seed=seed, n=n
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
            model, encoder, list(refs), str(out_dir), seed=seed, n_test=n_test, **extra
        )

    @staticmethod
    def _load(path: Path):
        from nodulelearn.sensitivity import load_keras_model

        return load_keras_model(str(path))


def _encoding_stage(study, run, directory, analysis) -> tuple[dict | None, dict[str, dict]]:
    """Encoding (one result) and recoverability (one record per OOD test set) of the run.

    A training directory without an encoder (e.g. a stand-in model) gets neither, with a warning.

    Each is kept in its own file (``encoding.json``, ``recoverability.json``) and reused by a
    relaunch when made with today's seed and sample size.
    """
    if not (directory / "train" / run_layout.ENCODER).is_file() and isinstance(
        analysis, _EncodingAnalysis
    ):
        log.warning(
            "%s: the training directory has no %s; encoding and recoverability are not "
            "measured for this run", run.id, run_layout.ENCODER,
        )  # fmt: skip
        return None, {}
    seed = run.seed + SENSITIVITY_SEED_OFFSET
    # Smoke studies shrink the read-outs to the sensitivity budget (seconds, not minutes); a real
    # study uses the analysis' own sample-size rules (e.g. 20 samples per embedding dimension).
    n = study.sensitivity.n if study.budget.get("smoke") else None
    path = directory / ENCODING_FILE
    encoding = _read_cached(path)
    if encoding is None or encoding.get("seed") != seed or (n and encoding.get("n") != n):
        encoding = analysis.encoding(
            directory / "train", run.train.dist, seed=seed, n=n, out_dir=directory / "encoding"
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
    cached = _read_cached(path)
    if cached is None or any(cached.get(k) != v for k, v in settings.items()):
        found = analysis.recoverability(
            directory / "train", [t.ref for t in ood],
            seed=seed, n_test=study.sensitivity.n, n_fit=n, out_dir=directory / "recoverability",
        )  # fmt: skip
        records_by_test = dict(zip(settings["tests"], found, strict=True))
        write_json_atomic(path, {**settings, "records": records_by_test})
        cached = json.loads(path.read_text())
    return encoding, cached["records"]


def _train_stage(study, run, directory, overwrite, train_fn) -> dict[str, Any]:
    """Trains the run; returns its metrics.json.

    ``train`` itself returns at once when its directory holds this complete run, resumes an
    interrupted one, and refuses a directory holding a run of another config: so a training
    directory left by an older version of the study is never silently reused.
    """
    train_dir = directory / "train"
    train_fn(train_config_fields(study, run), train_dir, overwrite)
    return json.loads((train_dir / run_layout.METRICS).read_text())


def _sensitivity_stage(study, run, directory, sensitivity_fn) -> dict[str, dict]:
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
        cached = _read_cached(path)
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


def _read_cached(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s is unreadable (%s); recomputing it", path, err)
        return None
    return value if isinstance(value, dict) else None


def execute_run(
    study: StudySpec,
    run: Run,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    train_fn: Callable | None = None,
    sensitivity_fn: Callable | None = None,
    encoding_fn: Any = None,
) -> dict[str, Any]:
    """Trains, evaluates and probes one run, then writes its record.

    Args:
        study: the validated study.
        run: one of ``plan_runs(study)``.
        out_dir: the study's output directory.
        overwrite: redo every stage even if its files exist.
        train_fn: ``(TrainConfig fields, train_dir, overwrite) -> metrics`` (default: builds a
            ``TrainConfig`` and calls ``nodulelearn.training.train``).
        sensitivity_fn: ``(train_dir, dist_ref, *, n, repeats, seed, batch_size) -> result``
            (default: ``nodulelearn.sensitivity.permutation_sensitivity`` on the run's model).
        encoding_fn: an object with ``encoding(train_dir, train_ref, *, seed, n, out_dir) ->
            result`` and ``recoverability(train_dir, refs, *, seed, n_test, n_fit, out_dir) ->
            [record per ref]`` (``n`` / ``n_fit`` None: the analysis' defaults) (default: ``nodulelearn.sensitivity``'s ``probe_encoding`` on
            the decorrelated training distribution and ``probe_recoverability`` on the OOD sets).

    Returns:
        The run's record (also written to ``<out>/runs/<run id>/record.json``); without
        ``overwrite``, the record already there if the run is finished.

    Raises:
        LockedError: another process is running this run (it holds the run directory's lock).
        StudyError: the run was made or started with other settings (without ``overwrite``).
    """
    directory = run_dir(out_dir, run)
    with hold_lock(directory, what="study run directory"):
        if overwrite:
            _clear_run_dir(directory)
        elif is_finished(out_dir, study, run):  # e.g. finished by another shard meanwhile
            return records.read_record(directory)
        fns = {"train": train_fn, "sensitivity": sensitivity_fn, "encoding": encoding_fn}
        return _execute_stages(study, run, directory, overwrite, fns)


def _execute_and_measure(study: StudySpec, run: Run, out_dir: str | Path,
                         overwrite: bool) -> tuple[dict[str, Any], int]:
    """``execute_run`` with the default stages and this process's peak memory after it (what a
    ``RunWorker``'s child process runs)."""
    return execute_run(study, run, out_dir, overwrite=overwrite), peak_memory_bytes()


def _clear_run_dir(directory: Path) -> None:
    """Deletes everything in a run directory but its lock file (this process holds it)."""
    for path in directory.iterdir():
        if path.name == LOCK_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _execute_stages(study, run, directory, overwrite, fns) -> dict:
    from nodulelearn.datasets import load_spec

    fingerprint = run_fingerprint(study, run)
    # Written before the first stage, so a relaunch with other settings or distribution contents
    # is refused for an interrupted run too (training would resume it as it is).
    write_json_atomic(directory / IDENTITY_FILE, fingerprint)
    start = time.monotonic()
    raw_metrics = _train_stage(study, run, directory, overwrite, fns["train"] or _default_train)
    trained = time.monotonic()
    metrics = {
        t.label: records.match_metrics(raw_metrics, t, getattr(load_spec(t.ref), "name", None))
        for t in run.tests
    }
    sensitivity = _sensitivity_stage(
        study, run, directory, fns["sensitivity"] or _PermutationAnalysis()
    )
    analysed = time.monotonic()
    encoding, recoverability = _encoding_stage(
        study, run, directory, fns["encoding"] or _EncodingAnalysis()
    )
    seconds = {
        "train": trained - start,
        "sensitivity": analysed - trained,
        "encoding": time.monotonic() - analysed,
    }
    record = records.build_record(
        run, fingerprint, metrics, sensitivity, seconds, encoding, recoverability
    )
    write_json_atomic(records.record_path(directory), record)
    return record


def _format_memory(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def run_states(
    study: StudySpec, out_dir: str | Path, shard: tuple[int, int] = (0, 1)
) -> list[tuple[Run, str, list[str]]]:
    """``(run, state, changes)`` for each run of a shard: what a launch would do with it.

    ``state`` is ``"finished"`` (skipped), ``"to run"``, or ``"stale"`` (made or started with
    other settings or distribution contents: a launch refuses it, ``--overwrite`` redoes it);
    ``changes`` says what changed (stale runs only). A sweep is expanded first
    (``expand_study``: its points' distribution files are written under ``<out>/specs``, as a
    launch would write them).
    """
    study = expand_study(study, out_dir)
    return [(run, *run_state(out_dir, study, run)) for run in shard_runs(plan_runs(study), *shard)]


def _refuse_stale(study: StudySpec, out_dir, states) -> None:
    stale = [(run, changes) for run, state, changes in states if state == STALE]
    if not stale:
        return
    listed = "; ".join(f"{run.id} ({', '.join(changes)})" for run, changes in stale[:5])
    more = f"; and {len(stale) - 5} more" if len(stale) > 5 else ""
    raise StudyError(
        f"{len(stale)} run(s) in {str(out_dir)!r} were made with other settings than the study "
        f"{study.name!r} now asks for: {listed}{more}. Nothing was run. Use another --out, or "
        "--overwrite to redo them."
    )


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; refuses one that exists and is not a directory."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise StudyError(
            f"Output directory {str(path)!r} exists and is not a directory. Give a directory "
            "(it is created if missing)."
        )
    return path


# Errors of the disk rather than of a run: every later run would fail the same way.
_ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def release_session() -> None:
    """Frees what Keras keeps between models (its graph, layer names, cached functions).

    Without it every run of a study leaves its models in Keras' global state. Measured over 8
    smoke runs (2-core CPU, 2026-12-01): resident memory grew about 28 MB per run without it and
    about 17 MB per run with it, peak 1362 MB vs 1297 MB; the rest is held outside Keras.
    """
    if "keras" in sys.modules:  # nothing to free if no run has used Keras
        sys.modules["keras"].backend.clear_session()
    gc.collect()


def write_study_file(out_dir: str | Path, study: StudySpec) -> Path:
    """Writes the validated study to ``<out>/study.json`` (what --aggregate_only reads)."""
    return write_json_atomic(Path(out_dir) / STUDY_FILE, study.to_dict())


def run_study(
    study: StudySpec,
    out_dir: str | Path,
    *,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    train_fn: Callable | None = None,
    sensitivity_fn: Callable | None = None,
    encoding_fn: Any = None,
    runs_per_process: int | None = RUNS_PER_PROCESS,
) -> list[RunOutcome]:
    """Runs the unfinished runs of one shard of a validated study, logging a progress line each.

    Args:
        study: a study that went through ``validate_study``.
        out_dir: output directory (shared by every shard).
        shard: ``(i, n)``: run every n-th run of the id-sorted list, starting at the i-th.
        overwrite: redo finished runs too.
        train_fn, sensitivity_fn, encoding_fn: see ``execute_run`` (tests replace them). Runs
            with one of them given run in this process.
        runs_per_process: the runs run in a child process, a fresh one every that many runs
            (``nodulelearn.study.worker``: the memory of a long study stays flat); None: in this
            process.

    Returns:
        One ``RunOutcome`` per run of the shard, in run order. A run that raises is logged and
        reported as ``"failed"``; the others still run (``KeyboardInterrupt`` stops the study,
        and so does a full or read-only disk: the ``OSError`` is raised).

    Raises:
        StudyError: ``out_dir`` is not a directory; or (without ``overwrite``) some runs were
            made or started with other settings or distribution contents (nothing is run).
        LockedError: another process is running the same shard of the study in ``out_dir``.
            (Other shards may run at once; two shardings that overlap meet at the lock of each
            run directory: the second process reports that run as failed and goes on.)
    """
    check_out_dir(out_dir)
    lock_dir = Path(out_dir) / LOCKS_DIR / f"shard-{shard[0]}-of-{shard[1]}"
    with hold_lock(lock_dir, what=f"shard {shard[0]}/{shard[1]} of the study in {out_dir}: lock"):
        fns = {"train_fn": train_fn, "sensitivity_fn": sensitivity_fn, "encoding_fn": encoding_fn}
        if any(fn is not None for fn in fns.values()):
            runs_per_process = None
        with (RunWorker(runs_per_process) if runs_per_process is not None
              else contextlib.nullcontext()) as w:
            return _run_shard(study, out_dir, shard, overwrite, fns, w)


def _run_shard(study, out_dir, shard, overwrite, fns, worker) -> list[RunOutcome]:
    study = expand_study(study, out_dir)  # a sweep's points, each with its spec files
    for note in low_availability_notes(study):
        log.warning(note)
    runs: Sequence[Run] = shard_runs(plan_runs(study), *shard)
    if overwrite:
        pending = {r.id for r in runs}
    else:
        states = run_states(study, out_dir, shard)
        _refuse_stale(study, out_dir, states)
        pending = {run.id for run, state, _ in states if state != FINISHED}
    # Only now: a study refused for clashing with finished runs leaves study.json as it was.
    write_study_file(out_dir, study)
    log.info(
        "Study %r, shard %d/%d: %d run(s), %d already finished, %d to run; output in %s",
        study.name, shard[0], shard[1], len(runs), len(runs) - len(pending), len(pending), out_dir,
    )  # fmt: skip
    outcomes: list[RunOutcome] = []
    started = time.monotonic()
    ran_seconds: list[float] = []
    for k, run in enumerate(runs, start=1):
        if run.id not in pending:
            outcomes.append(RunOutcome(run.id, "skipped", 0.0))
            log.info("[%d/%d] %s: skipped (already finished)", k, len(runs), run.id)
            continue
        run_start = time.monotonic()
        try:
            if worker is None:
                release_session()  # what the previous run left in Keras' global state
                record = execute_run(study, run, out_dir, overwrite=overwrite, **fns)
                peak = peak_memory_bytes()
            else:
                record, peak = worker.run(_execute_and_measure, study, run, out_dir, overwrite)
        except LockedError as err:  # another process runs it (an overlapping sharding)
            outcomes.append(RunOutcome(run.id, "failed", 0.0, str(err)))
            log.error("[%d/%d] %s: not run: %s", k, len(runs), run.id, err)
            continue
        except Exception as err:  # e.g. a diverged run: the other runs of the study still run
            if isinstance(err, OSError) and err.errno in _ENVIRONMENT_ERRNOS:
                log.error(
                    "[%d/%d] %s: stopped, the study cannot write its output (%s); relaunch "
                    "when fixed: finished stages are kept", k, len(runs), run.id, err,
                )  # fmt: skip
                raise
            ran_seconds.append(time.monotonic() - run_start)
            outcomes.append(RunOutcome(run.id, "failed", ran_seconds[-1], f"{err!r}"))
            log.exception("[%d/%d] %s: FAILED; the study goes on without it", k, len(runs), run.id)
            continue
        ran_seconds.append(time.monotonic() - run_start)
        outcomes.append(RunOutcome(run.id, "ran", ran_seconds[-1]))
        left = len(pending) - len(ran_seconds)
        estimate = left * sum(ran_seconds) / len(ran_seconds)
        log.info(
            "[%d/%d] %s: done in %s (train %s, sensitivity %s, encoding %s); peak memory %s; "
            "elapsed %s, about %s remaining (%d run(s) left)",
            k, len(runs), run.id, _format_duration(ran_seconds[-1]),
            _format_duration(record["seconds"]["train"]),
            _format_duration(record["seconds"]["sensitivity"]),
            _format_duration(record["seconds"]["encoding"]), _format_memory(peak),
            _format_duration(time.monotonic() - started), _format_duration(estimate), left,
        )  # fmt: skip
    if worker is None:
        release_session()
    failed = [o.run_id for o in outcomes if o.status == "failed"]
    if failed:
        log.error("%d run(s) failed (relaunch to retry them): %s", len(failed), ", ".join(failed))
    return outcomes
