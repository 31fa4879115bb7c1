"""Sweeps: one run per point of a 1-D or 2-D grid of spec fields of a training distribution.

A training distribution of a study may sweep fields of its spec, named by their path in the spec
(``nodulelearn.datasets.sweepable_paths()``: ``modes.<mode>.alignment`` (predictivity),
``modes.<mode>.visibility`` (availability) and ``malignant_fraction``)::

    [train.margin_noise]
    ood = ["margin_noise_decorrelated", "margin_noise_reversed"]
    [train.margin_noise.sweep]
    "modes.noise.alignment" = [0.0, 0.5, 1.0]

Each point of the grid (the product of the lists, in file order) is a training distribution of
its own, with id ``<id>@<path>=<value>[,<path>=<value>]``; each point x loss x seed is a run, so
sharding, resume and the refusal to mix settings work as for any study.

Which test sets follow a point: the in-distribution test set is the point itself. An OOD set
takes every swept field except alignments and ``malignant_fraction``: those are what an OOD set
sets on purpose (``margin_noise_decorrelated`` sets the noise alignment to 0 whatever the
training set's), while a visibility sets how a mode looks, which must stay the same at test
time.

``expand_study`` writes each point's specs to ``<out>/specs/<point id>/<test label>.toml`` and
returns a study whose entries are the points (the runner and the aggregation call it; it is
idempotent). ``check_sweeps`` builds every point in memory, so a bad path or value fails at
validation, before any training.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nodulelearn.study.spec import StudyError, StudySpec, TrainEntry

SPECS_DIR = "specs"
#: Spec paths ending so apply to the training distribution only, not to its OOD sets.
_TRAIN_ONLY_KEYS = ("alignment", "malignant_fraction")


def format_value(value: Any) -> str:
    """A swept value as it appears in point ids: ``0.25``, ``1``, ``spiculated``, ``[20,28]``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return json.dumps(value, separators=(",", ":"))


def grid(sweep: Sequence[tuple[str, Sequence[Any]]]) -> list[tuple[tuple[str, Any], ...]]:
    """Every point of a sweep: the product of its value lists, the first field varying slowest."""
    if not sweep:
        return []
    paths = [path for path, _ in sweep]
    return [
        tuple(zip(paths, values, strict=True))
        for values in itertools.product(*(values for _, values in sweep))
    ]


def point_id(base: str, point: Sequence[tuple[str, Any]]) -> str:
    """``<base>@<path>=<value>[,<path>=<value>]``: the id of a point (names its runs)."""
    return f"{base}@" + ",".join(f"{path}={format_value(value)}" for path, value in point)


def follows_ood(path: str) -> bool:
    """Whether a swept field is applied to the OOD test sets too (availability controls: yes;
    alignments and the class balance, which an OOD set sets itself: no)."""
    return path.split(".")[-1] not in _TRAIN_ONLY_KEYS


def point_entries(entry: TrainEntry) -> list[TrainEntry]:
    """The points of a swept entry, referring to the base entry's specs (not materialised).

    An entry without a sweep is returned as is, in a one-element list.
    """
    if not entry.sweep:
        return [entry]
    return [
        dataclasses.replace(
            entry, id=point_id(entry.id, point), sweep=(), point=point, base=entry.id
        )
        for point in grid(entry.sweep)
    ]


def point_spec(ref: str, point: Sequence[tuple[str, Any]], *, role: str, where: str = ""):
    """The ``DistributionSpec`` of test set ``ref`` at a sweep point.

    Args:
        ref: the base distribution (preset name or path).
        point: ``((path, value), ...)``; paths as ``nodulelearn.datasets.sweepable_paths()``.
        role: ``"id"`` (every field applies) or ``"ood"`` (alignments and the class balance do
            not: ``follows_ood``).
        where: context for error messages.

    Raises:
        StudyError: an unknown path or a value the spec rejects (the message lists the paths).
    """
    from nodulelearn.datasets import load_spec, set_spec_field

    spec = load_spec(ref)
    try:
        for path, value in point:
            if role == "id" or follows_ood(path):
                spec = set_spec_field(spec, path, value)
    except ValueError as err:
        raise StudyError(f"{where}, test set {ref!r}: {err}") from None
    return spec


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold a non-finite number: {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"Cannot write {value!r} ({type(value).__name__}) to a spec TOML file.")


def spec_toml(spec) -> str:
    """The TOML text of a ``DistributionSpec`` (``load_spec`` reads it back to an equal spec)."""
    data = spec.to_dict()
    modes = data.pop("modes")
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items()]
    for mode, table in modes.items():
        lines += ["", f"[modes.{mode}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def check_sweeps(study: StudySpec) -> None:
    """Builds every point's specs in memory: a bad path, value or point id fails now.

    Raises:
        StudyError: naming the entry, the point and what is wrong.
    """
    from nodulelearn.datasets import MODE_NAMES

    for entry in study.train:
        for key in ("core", "shortcut"):
            mode = getattr(entry, key)
            if mode is not None and mode not in MODE_NAMES:
                raise StudyError(
                    f"Study {study.source!r}: [train.{entry.id}] {key} = {mode!r} is not a mode. "
                    f"Valid modes: {', '.join(MODE_NAMES)}."
                )
        for point in point_entries(entry) if entry.sweep else ():
            if "__" in point.id:  # the run id's separator (file-name safety: check_names)
                raise StudyError(
                    f"Study {study.source!r}: sweep point id {point.id!r} may not contain '__' "
                    "(run ids); choose other values."
                )
            where = f"study {study.source!r}, [train.{entry.id}.sweep] point {point.id!r}"
            for k, ref in enumerate([entry.dist, *(entry.ood or ())]):
                point_spec(ref, point.point, role="id" if k == 0 else "ood", where=where)


def without_sweeps(study: StudySpec) -> StudySpec:
    """The study with every sweep table dropped (its base entries), e.g. to check budgets."""
    return dataclasses.replace(
        study, train=tuple(dataclasses.replace(e, sweep=()) for e in study.train)
    )


def _label(ref: str) -> str:
    from nodulelearn.study.plan import dist_label

    return dist_label(ref)


def _write_if_changed(path: Path, text: str) -> None:
    from nodulelearn.atomic_files import write_text_atomic

    if not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text)


def expand_study(study: StudySpec, out_dir: str | Path) -> StudySpec:
    """The study with each swept entry replaced by its points, their specs written to disk.

    Each point's test sets are written to ``<out>/specs/<point id>/<label>.toml`` (the label of
    the base test set, so tables name a point's test sets like the base entry's). Files already
    holding the same text are left alone, so shards can expand concurrently. A study without
    sweeps, or one already expanded, is returned unchanged.

    Args:
        study: a validated study.
        out_dir: its output directory.

    Returns:
        A study without sweep tables whose ``unexpanded`` is the study as written.
    """
    if not any(e.sweep for e in study.train):
        return study
    train = []
    for entry in study.train:
        if not entry.sweep:
            train.append(entry)
            continue
        for point in point_entries(entry):
            folder = Path(out_dir) / SPECS_DIR / point.id
            where = f"study {study.source!r}, point {point.id!r}"
            refs = []
            for k, ref in enumerate([entry.dist, *(entry.ood or ())]):
                spec = point_spec(ref, point.point, role="id" if k == 0 else "ood", where=where)
                path = (folder / f"{_label(ref)}.toml").resolve()
                if str(path) in refs:  # check_names refuses such a study; never overwrite the ID set
                    raise StudyError(
                        f"{where}: two test sets are labelled {_label(ref)!r}; their specs would "
                        f"share {str(path)!r}. Rename one of the files."
                    )
                _write_if_changed(path, spec_toml(spec))
                refs.append(str(path))
            train.append(
                dataclasses.replace(
                    point, dist=refs[0], ood=tuple(refs[1:]), materialised=True
                )
            )
    return dataclasses.replace(study, train=tuple(train), unexpanded=study)


def swept_paths(study: StudySpec) -> list[str]:
    """Every swept spec path of the study, in file order (the extra columns of its tables)."""
    paths: dict[str, None] = {}
    for entry in study.train:
        for path, _ in entry.sweep or entry.point:
            paths[path] = None
    return list(paths)


def point_columns(study: StudySpec, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of results.csv / sensitivity.csv with one column per swept path, after ``train_dist``.

    A row of a training distribution that is not a point of that path gets an empty cell.
    """
    paths = swept_paths(study)
    if not paths:
        return [dict(r) for r in rows]
    points = {}
    for entry in study.train:
        for point in point_entries(entry) if entry.sweep else [entry]:
            points[point.id] = (point.base or point.id, dict(point.point))
    out = []
    for row in rows:
        base, values = points.get(row.get("train_dist"), (row.get("train_dist"), {}))
        new: dict[str, Any] = {}
        for key, value in row.items():
            new[key] = value
            if key == "train_dist":
                new["train_base"] = base
                new.update({path: values.get(path, "") for path in paths})
        out.append(new)
    return out
