"""The runs of a study (loss x training distribution x seed), their configs and their shards.

A swept training distribution contributes one training distribution per point of its sweep
(sweep.py): ``plan_runs`` lists their runs either way, but only the runs of a study expanded by
``sweep.expand_study`` (whose points have their own spec files) have a training config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nodulelearn.study.spec import LossEntry, StudyError, StudySpec, TrainEntry


@dataclasses.dataclass(frozen=True)
class EvalDist:
    """One test distribution of a run.

    Attributes:
        label: its name in tables (a preset's name, or a distribution file's stem).
        ref: what ``load_spec`` is given (preset name or absolute path).
        role: ``"id"`` (the training distribution) or ``"ood"``.
    """

    label: str
    ref: str
    role: str


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a study: one loss, one training distribution, one seed.

    Attributes:
        id: ``<loss id>__<train id>__s<seed>``; names its directory ``<out>/runs/<id>``.
        loss: the loss entry.
        train: the training distribution entry.
        seed: the run's seed (training data, initialisation, sensitivity permutations).
        tests: its test distributions, the in-distribution one first.
    """

    id: str
    loss: LossEntry
    train: TrainEntry
    seed: int
    tests: tuple[EvalDist, ...]


def dist_label(ref: str) -> str:
    """The table name of a distribution reference: a preset name, or a file's stem."""
    return Path(ref).stem if ref.endswith(".toml") else ref


def eval_dists(entry: TrainEntry) -> tuple[EvalDist, ...]:
    """The in-distribution test set (the training distribution) then each OOD one, deduplicated."""
    tests = [EvalDist(label=dist_label(entry.dist), ref=entry.dist, role="id")]
    for ref in entry.ood or ():
        if ref not in [t.ref for t in tests]:
            tests.append(EvalDist(label=dist_label(ref), ref=ref, role="ood"))
    return tuple(tests)


def plan_runs(study: StudySpec) -> list[Run]:
    """Every run of the study, sorted by run id (the order shards are cut from).

    Args:
        study: a validated study (``ood`` resolved).

    Returns:
        ``len(losses) * len(train points) * len(seeds)`` runs sorted by ``Run.id``, where an
        entry without a sweep is one point.
    """
    from nodulelearn.study.sweep import point_entries

    entries = [point for entry in study.train for point in point_entries(entry)]
    runs = [
        Run(
            id=f"{loss.id}__{train.id}__s{seed}",
            loss=loss,
            train=train,
            seed=seed,
            tests=eval_dists(train),
        )
        for loss in study.losses
        for train in entries
        for seed in study.seeds
    ]
    return sorted(runs, key=lambda r: r.id)


def parse_shard(text: str | None) -> tuple[int, int]:
    """Parses ``"i/n"`` (0 <= i < n) into ``(i, n)``; ``None`` or ``""`` means ``(0, 1)``.

    Raises:
        ValueError: text is not two integers ``i/n`` with ``0 <= i < n``.
    """
    if not text:
        return 0, 1
    parts = text.split("/")
    try:
        index, count = (int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"Invalid shard {text!r}. Expected 'i/n' with integers 0 <= i < n, e.g. '0/4'."
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"Invalid shard {text!r}. Expected 'i/n' with 0 <= i < n (shards are numbered from "
            f"0, like a Slurm array --array=0-{max(count, 1) - 1}). Received: i={index}, n={count}."
        )
    return index, count


def shard_runs(runs: Sequence[Run], index: int, count: int) -> list[Run]:
    """The runs of shard ``index`` of ``count``: every ``count``-th run of the id-sorted list.

    Striding (rather than cutting blocks) spreads each loss over the shards, so shards take
    similar time. The shards partition the runs, whatever ``count`` is.
    """
    ordered = sorted(runs, key=lambda r: r.id)
    return ordered[index::count]


def train_config_fields(study: StudySpec, run: Run) -> dict[str, Any]:
    """Keyword arguments of ``TrainConfig`` for one run: the study's budget plus the run's own.

    ``probe_epochs`` is dropped for losses whose protocol has no linear-probe phase (those
    trained in one phase): TrainConfig rejects it for them.

    Raises:
        StudyError: the run is a sweep point of a study not expanded by ``sweep.expand_study``
            (its distributions would be the base entry's, not the point's).
    """
    if run.train.point and not run.train.materialised:
        raise StudyError(
            f"Run {run.id!r} is a point of a sweep, but the study was not expanded: call "
            "nodulelearn.study.sweep.expand_study(study, out_dir) first, which writes the "
            "point's distributions."
        )
    budget = dict(study.budget)
    if not _uses_probe_epochs(run.loss.loss):
        budget.pop("probe_epochs", None)
    return {
        **budget,
        "loss": run.loss.loss,
        "loss_params": dict(run.loss.params),
        "train_dist": run.train.dist,
        "test_dists": tuple(t.ref for t in run.tests),
        "seed": run.seed,
    }


def _uses_probe_epochs(loss: str) -> bool:
    """Whether the protocol that trains ``loss`` has a linear-probe phase (``probe_epochs``)."""
    from nodulelearn.training import protocols

    return protocols.protocol_for(loss).uses("probe_epochs")
