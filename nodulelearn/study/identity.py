"""A run's identity: its directory, its fingerprint, and whether it is finished, to run or stale.

Every executor uses these, so a run is one directory whoever runs it, and a relaunch (by any
executor) skips what is finished and refuses what was made with other settings:

    <out>/runs/<run id>/identity.json      the run's fingerprint, written before its first stage
    <out>/runs/<run id>/record.json        written last: the run is finished
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from nodulelearn.atomic_files import to_jsonable
from nodulelearn.study import records
from nodulelearn.study.plan import Run, plan_runs, shard_runs, train_config_fields
from nodulelearn.study.spec import StudyError, StudySpec, is_spec_path
from nodulelearn.study.sweep import expand_study

IDENTITY_FILE = "identity.json"
FINISHED, TO_RUN, STALE = "finished", "to run", "stale"


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


def run_state(out_dir: str | Path, study: StudySpec, run: Run) -> tuple[str, list[str]]:
    """Whether a run is finished, still to run, or stale; and, if stale, what changed.

    A run is stale when its record, or (unfinished) the identity it was started with, was made
    with other settings or distribution contents than the study now has. A finished run whose
    encoding was measured with another read-out (``readout.measured_otherwise``) is to run
    again: its stages' files are reused but for the encoding, so a study never mixes read-outs.

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
        # Imported here: the sensitivity package imports TensorFlow, which `nodulelearn study
        # --help` and the runner's usage errors must not.
        from nodulelearn.sensitivity.readout import READOUT, measured_otherwise

        if record is not None and measured_otherwise(record.get("encoding")):
            # Training and sensitivity stay valid: the relaunch re-measures the encoding only.
            return TO_RUN, [f"its encoding was measured with another read-out than {READOUT}"]
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


def refuse_stale(study: StudySpec, out_dir, states) -> None:
    """Raises ``StudyError`` naming the stale runs among ``run_states``' answer, if any."""
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
