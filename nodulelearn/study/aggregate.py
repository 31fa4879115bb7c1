"""Merges the finished runs of a study (from every shard) into its tables, summary and figures.

Aggregation reads only ``<out>/runs/*/record.json``, so it can run while shards are still
running, and again when they are done; it says which runs are missing. Of ``<out>`` itself it
reads only the files it writes (``ALL_OUTPUTS``): a hidden or foreign file there (macOS'
``._heatmap.png``, a user's notes) is ignored, and the temporaries an interrupted aggregation
left (``.<output>.XXXXXXXX.<ext>``) are removed when the next one starts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from nodulelearn import html_report
from nodulelearn.atomic_files import remove_temporaries, write_csv_atomic, write_text_atomic
from nodulelearn.locks import hold_lock
from nodulelearn.study import availability, initial_advantage, records, sweep_outputs
from nodulelearn.study.availability import (
    availability_notes_markdown,
    write_availability_outputs,
)
from nodulelearn.study.figures import ood_accuracy_plot, reliance_heatmap
from nodulelearn.study.plan import plan_runs
from nodulelearn.study.primary import check_comparisons, primary_section
from nodulelearn.study.runner import FINISHED, LOCKS_DIR, STALE, STUDY_FILE, run_dir, run_state
from nodulelearn.study.spec import StudyError, StudySpec, study_from_dict
from nodulelearn.study.summary import summary_markdown
from nodulelearn.study.sweep import expand_study, point_columns
from nodulelearn.study.sweep_outputs import sweep_summary_markdown, write_sweep_outputs
from nodulelearn.study.validate import check_names

log = logging.getLogger(__name__)

OUTPUTS = (
    "results.csv", "sensitivity.csv", "encoding.csv", "encoding_layers.csv", "summary.md",
    "heatmap.png", "ood.png", "report.html",
)  # fmt: skip
#: Every file aggregation may write into ``<out>``; the only ones it reads back (report.html).
ALL_OUTPUTS = (OUTPUTS + sweep_outputs.OUTPUTS + availability.OUTPUTS
               + initial_advantage.OUTPUTS)
AGGREGATE_LOCK = "aggregate"  # <out>/.locks/aggregate/: one aggregation of a folder at a time


@dataclasses.dataclass
class Aggregate:
    """The merged state of a study.

    Attributes:
        records: the records of the finished runs, in run-id order.
        missing: ids of runs without a record.
        stale: ids of runs whose record was made with other settings (left out, like missing).
        result_rows: rows of results.csv.
        sensitivity_rows: rows of sensitivity.csv.
        encoding_rows: rows of encoding.csv (encoding of each mode, per run).
        summary: the text of summary.md.
        written: the paths written.
    """

    records: list[dict[str, Any]]
    missing: list[str]
    stale: list[str]
    result_rows: list[dict[str, Any]]
    sensitivity_rows: list[dict[str, Any]]
    encoding_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    summary: str = ""
    written: list[Path] = dataclasses.field(default_factory=list)


def read_study_file(out_dir: str | Path) -> StudySpec:
    """The study an output directory was run with (``<out>/study.json``).

    Raises:
        StudyError: the directory holds no study.json.
    """
    path = Path(out_dir) / STUDY_FILE
    if not path.is_file():
        raise StudyError(
            f"{str(out_dir)!r} holds no {STUDY_FILE}: it is not the output directory of a "
            "study (run bin/run_study without --aggregate_only first, or pass --study)."
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StudyError(
            f"{str(path)!r} cannot be read ({err}); pass the study with --study."
        ) from None
    if not isinstance(data, dict):
        raise StudyError(f"{str(path)!r} is not a JSON object; pass the study with --study.")
    study = study_from_dict(data, source=str(path))
    check_names(study)  # e.g. --dry_run of a study.json written by an older nodulelearn
    check_comparisons(study)
    return study


def collect(study: StudySpec, out_dir: str | Path) -> Aggregate:
    """Reads the records of every run of the study; builds the CSV rows of the finished ones."""
    study = expand_study(study, out_dir)  # a sweep's points, as the runner ran them
    found, missing, stale = [], [], []
    for run in plan_runs(study):
        state, _ = run_state(out_dir, study, run)
        if state == FINISHED:
            found.append(records.read_record(run_dir(out_dir, run)))
        elif state == STALE:
            stale.append(run.id)
        else:
            missing.append(run.id)
    return Aggregate(
        records=found,
        missing=missing,
        stale=stale,
        result_rows=point_columns(study, [row for r in found for row in records.result_rows(r)]),
        sensitivity_rows=point_columns(
            study, [row for r in found for row in records.sensitivity_rows(r)]
        ),
        encoding_rows=point_columns(
            study, [row for r in found for row in records.encoding_rows(r)]
        ),
    )


def aggregate_study(study: StudySpec, out_dir: str | Path) -> Aggregate:
    """Writes results.csv, sensitivity.csv, encoding.csv, summary.md, heatmap.png, ood.png (and a
    sweep's or availability study's own outputs, and initial_advantage.csv where the study trains
    on redundant pairs), then report.html embedding them.

    Args:
        study: the validated study.
        out_dir: its output directory.

    Returns:
        The ``Aggregate`` (``written`` lists the files written; figures are skipped while no run
        has finished).

    Raises:
        StudyError: some runs were made with other settings or distribution contents (stale);
            nothing is written.
        LockedError: another process is aggregating the same folder.
    """
    out_dir = Path(out_dir)
    lock = out_dir / LOCKS_DIR / AGGREGATE_LOCK
    with hold_lock(lock, what=f"aggregation of the study in {out_dir}: lock"):
        # Under the lock no other aggregation writes here: a temporary of ours is an orphan.
        removed = [p for name in ALL_OUTPUTS for p in remove_temporaries(out_dir / name)]
        if removed:
            log.info("Removed %d temporary file(s) an interrupted aggregation left: %s",
                     len(removed), ", ".join(p.name for p in removed))
        return _aggregate(study, out_dir)


def _aggregate(study: StudySpec, out_dir: Path) -> Aggregate:
    study = expand_study(study, out_dir)
    agg = collect(study, out_dir)
    if agg.stale:
        # Writing the tables without them would replace the results of the study they were made
        # with by a partial (often empty) table of one that has not run.
        shown = ", ".join(agg.stale[:5])
        if len(agg.stale) > 5:
            shown += f" and {len(agg.stale) - 5} more"
        raise StudyError(
            f"{len(agg.stale)} run(s) in {str(out_dir)!r} were made with other settings or "
            f"distribution contents than the study {study.name!r} now asks for ({shown}); "
            "nothing was written. Aggregate with the study they were made with "
            f"(--aggregate_only without --study reads {STUDY_FILE}), or rerun them with "
            "--overwrite."
        )
    if agg.missing:
        log.warning("%d run(s) not finished yet: %s", len(agg.missing), ", ".join(agg.missing))
    written = [
        write_csv_atomic(
            out_dir / "results.csv",
            agg.result_rows,
            records.columns(agg.result_rows, records.RESULT_KEYS),
        ),
        write_csv_atomic(
            out_dir / "sensitivity.csv",
            agg.sensitivity_rows,
            records.columns(agg.sensitivity_rows, records.SENSITIVITY_KEYS),
        ),
        write_csv_atomic(
            out_dir / "encoding.csv",
            agg.encoding_rows,
            records.columns(agg.encoding_rows, records.ENCODING_KEYS),
        ),
    ]
    # Layer by layer: encoding and its change from initialisation, one row per run/layer/mode.
    layer_rows = point_columns(study, [row for r in agg.records
                                       for row in records.encoding_layer_rows(r)])
    written.append(write_csv_atomic(
        out_dir / "encoding_layers.csv", layer_rows,
        records.columns(layer_rows, records.ENCODING_KEYS[:-1] + ("layer", "depth", "mode")),
    ))
    agg.summary = summary_markdown(
        study,
        agg.result_rows,
        agg.sensitivity_rows,
        finished=len(agg.records),
        missing=agg.missing,
        encoding_rows=agg.encoding_rows,
        primary=primary_section(study, agg.records),
        layer_rows=layer_rows,
    )
    agg.summary += sweep_summary_markdown(study, agg.records)
    advantage_rows = initial_advantage.initial_advantage_rows(study, agg.records, out_dir)
    agg.summary += initial_advantage.initial_advantage_markdown(study, advantage_rows)
    agg.summary += availability_notes_markdown(study)
    written.append(write_text_atomic(out_dir / "summary.md", agg.summary))
    for figure in (
        reliance_heatmap(
            study, agg.sensitivity_rows, out_dir / "heatmap.png", encoding_rows=agg.encoding_rows
        ),
        ood_accuracy_plot(study, agg.result_rows, out_dir / "ood.png"),
    ):
        if figure is not None:
            written.append(figure)
    written += write_sweep_outputs(study, agg.records, out_dir)
    written += write_availability_outputs(study, agg.records, out_dir)
    written += initial_advantage.write_initial_advantage(advantage_rows, out_dir)
    states = [(run_id, "finished") for run_id in (r["run_id"] for r in agg.records)]
    states += [(run_id, "not finished") for run_id in agg.missing]
    try:  # last: it embeds everything above, and only that
        written.append(html_report.study_report(
            out_dir, files=[p for p in written if p.suffix in (".png", ".csv")],
            runs=sorted(states),
        ))  # fmt: skip
    except html_report.ReportError as err:  # e.g. study.json damaged from outside
        raise StudyError(f"report.html was not written: {err} The tables, summary.md and "
                         "figures were.") from None
    agg.written = written
    log.info(
        "Aggregated %d of %d run(s) into %s",
        len(agg.records), len(agg.records) + len(agg.missing), out_dir,
    )  # fmt: skip
    return agg
