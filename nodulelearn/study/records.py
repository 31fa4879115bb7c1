"""The record of one finished run, and the CSV rows it contributes.

A run is finished when ``<out>/runs/<run id>/record.json`` exists: it is written last and
atomically, and holds everything aggregation needs (metrics per test distribution, sensitivity per
test distribution, the settings it was run with), so aggregation reads nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nodulelearn.study.plan import EvalDist, Run
from nodulelearn.study.spec import StudyError

RECORD_FILE = "record.json"
RECORD_VERSION = 1
# Leading columns of results.csv / sensitivity.csv; metric columns follow in first-seen order.
RESULT_KEYS = (
    "run_id", "loss", "loss_name", "loss_params", "train_dist", "seed", "test_dist", "role",
)
SENSITIVITY_KEYS = RESULT_KEYS + ("mode",)
# encoding.csv: test_dist is the distribution encoding was measured on, role "encoding".
ENCODING_KEYS = SENSITIVITY_KEYS
ENCODING_ROLE = "encoding"
# Prefix of the recoverability columns of results.csv (OOD rows of runs that measured it).
RECOVERABILITY_PREFIX = "recoverability_"


def record_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RECORD_FILE


def read_json(path: str | Path, *, what: str) -> Any:
    """The JSON content of ``path``, or ``None`` if there is no such file.

    Raises:
        StudyError: the file cannot be read or is not valid JSON (the message names it; it is
            written atomically, so it was damaged from outside).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StudyError(
            f"The {what} {str(path)!r} cannot be read ({err}). It was damaged (e.g. truncated); "
            "delete it to redo the run."
        ) from None


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's record, or ``None`` if the run has not finished.

    Raises:
        StudyError: the record is unreadable (names the file).
    """
    record = read_json(record_path(run_dir), what="run record")
    if record is not None and not isinstance(record, dict):
        raise StudyError(
            f"The run record {str(record_path(run_dir))!r} holds {type(record).__name__}, not a "
            "JSON object; delete it to redo the run."
        )
    return record


def match_metrics(metrics: Mapping[str, Any], dist: EvalDist, spec_name: str | None) -> dict:
    """The metrics of ``dist`` in a run's ``metrics.json``, whichever name training keyed it by.

    Raises:
        KeyError: none of the test distribution's names is in ``metrics``.
    """
    for key in (dist.ref, dist.label, spec_name):
        if key is not None and key in metrics:
            return dict(metrics[key])
    raise KeyError(
        f"metrics.json has no entry for test distribution {dist.label!r} (looked for "
        f"{dist.ref!r}, {dist.label!r}, {spec_name!r}). Keys present: {', '.join(metrics)}."
    )


def build_record(
    run: Run,
    fingerprint: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, Any]],
    sensitivity: Mapping[str, Mapping[str, Any]],
    seconds: Mapping[str, float],
    encoding: Mapping[str, Any] | None = None,
    recoverability: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON record of a finished run.

    Args:
        run: the run.
        fingerprint: the settings it ran with (see runner.run_fingerprint).
        metrics: test distribution label -> metric dict (accuracy, auc, ...).
        sensitivity: test distribution label -> permutation_sensitivity result.
        seconds: wall time of its stages ("train", "sensitivity", "encoding").
        encoding: the ``measure_encoding`` result (``distribution``, ``modes`` records with
            ``normalized`` and its interval), measured on the decorrelated training distribution.
        recoverability: OOD test distribution label -> ``recoverability`` record.
    """
    return {
        "version": RECORD_VERSION,
        "run_id": run.id,
        "loss": run.loss.id,
        "loss_name": run.loss.loss,
        "loss_params": dict(run.loss.params),
        "train_dist": run.train.id,
        "seed": run.seed,
        "tests": [{"label": t.label, "ref": t.ref, "role": t.role} for t in run.tests],
        "fingerprint": dict(fingerprint),
        "metrics": {k: dict(v) for k, v in metrics.items()},
        "sensitivity": {k: dict(v) for k, v in sensitivity.items()},
        "encoding": dict(encoding) if encoding is not None else None,
        "recoverability": {k: dict(v) for k, v in (recoverability or {}).items()},
        "seconds": dict(seconds),
    }


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested metric values into CSV cells.

    Nested dicts become ``<key>_<sub>``; a pair ``[lo, hi]`` (an interval) becomes ``<key>_lo`` and
    ``<key>_hi``; other lists are kept as JSON text.
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}_"))
        elif isinstance(value, (list, tuple)):
            if len(value) == 2 and all(isinstance(v, (int, float)) or v is None for v in value):
                flat[f"{name}_lo"], flat[f"{name}_hi"] = value
            else:
                flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _run_keys(record: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "run_id": record["run_id"],
        "loss": record["loss"],
        "loss_name": record["loss_name"],
        "loss_params": json.dumps(record["loss_params"], sort_keys=True),
        "train_dist": record["train_dist"],
        "seed": record["seed"],
        "test_dist": test["label"],
        "role": test["role"],
    }


def result_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per test distribution of the run: the run's keys, every metric, then (OOD sets
    of runs that measured it) the recoverability columns ``recoverability_<field>``."""
    recover = record.get("recoverability") or {}
    rows = []
    for test in record["tests"]:
        row = {**_run_keys(record, test), **flatten(record["metrics"][test["label"]])}
        fields = recover.get(test["label"])
        if fields:
            row.update(flatten(
                {k: v for k, v in fields.items() if k != "distribution"},
                prefix=RECOVERABILITY_PREFIX,
            ))  # fmt: skip
        rows.append(row)
    return rows


def encoding_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per mode of the run's encoding (none for a record without one)."""
    encoding = record.get("encoding")
    if not encoding:
        return []
    test = {"label": encoding.get("distribution", ""), "role": ENCODING_ROLE}
    return [
        {**_run_keys(record, test), "mode": mode["mode"],
         **flatten({k: v for k, v in mode.items() if k != "mode"})}
        for mode in encoding.get("modes", [])
    ]  # fmt: skip


def encoding_layer_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (layer, varying mode) of the run's layer-wise encoding and its change from
    initialisation (``probe_encoding``'s ``layers``; none for a record without them)."""
    encoding = record.get("encoding")
    if not encoding:
        return []
    test = {"label": encoding.get("distribution", ""), "role": ENCODING_ROLE}
    return [{**_run_keys(record, test), **row} for row in encoding.get("layers") or []]


def sensitivity_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (analysed test distribution, mode): the run's keys, the mode, every field."""
    rows = []
    for test in record["tests"]:
        result = record["sensitivity"].get(test["label"])
        if result is None:  # sensitivity.on = "id": the OOD sets were not analysed
            continue
        baseline = flatten(result.get("baseline", {}), prefix="baseline_")
        for mode in result["modes"]:
            fields = {k: v for k, v in mode.items() if k != "mode"}
            rows.append(
                {**_run_keys(record, test), "mode": mode["mode"], **flatten(fields), **baseline}
            )
    return rows


def columns(rows: Iterable[Mapping[str, Any]], leading: tuple[str, ...]) -> list[str]:
    """``leading`` then every other key of ``rows`` in first-seen order."""
    seen = dict.fromkeys(leading)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)
