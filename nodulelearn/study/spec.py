"""The study file: which losses, training distributions, seeds and budget a study runs.

A study is a TOML file (or the name of a packaged preset, ``nodulelearn/study/presets/*.toml``)::

    name = "quick"
    description = "..."
    seeds = [0]

    [budget]            # TrainConfig fields shared by every run (n_train, epochs, batch_size, ...)
    n_train = 768
    epochs = 3

    [sensitivity]       # the permutation analysis run on the test distributions of every run
    n = 256
    repeats = 2
    on = "all"          # "all": every test distribution; "id": the training distribution only

    [losses.ce]         # one table per loss; the key names the loss in tables and run ids
    [losses.supcon]
    temperature = 0.1   # every other key is a hyperparameter of the loss
    [losses.supcon_t05] # a second variant of the same loss: name it with `loss = "..."`
    loss = "supcon"
    temperature = 0.5

    [train.margin_size] # one table per training distribution (key: preset name, or set `dist`)
    ood = ["margin_size_decorrelated", "size_margin_decorrelated"]  # its OOD test sets

    [train.margin_noise]
    core = "margin"     # optional: the pair's core and shortcut modes (sweep figures, bias)
    shortcut = "noise"
    [train.margin_noise.sweep]    # optional: one run per point of the grid (1 or 2 fields)
    "modes.noise.alignment" = [0.0, 0.5, 1.0]

    [[compare]]         # optional: a primary comparison the study exists for (primary.py)
    a = "supcon"
    b = "ce"
    metric = "accuracy"
    train = "margin_size"
    test = "margin_size_decorrelated"
    delta = 0.03

A training distribution's in-distribution test set is the distribution itself (a fresh sample);
``ood`` defaults to the preset's ``ood_companions``. ``dist`` and ``ood`` entries are dataset preset
names or paths to distribution TOML files (relative paths are relative to the study file).

This module only parses and checks the file's shape; ``validate_study`` (validate.py) checks the
names against the loss registry, the dataset presets and TrainConfig; sweep.py expands sweeps.

``kind = "availability"`` (top level) marks a study of single-mode distributions whose
aggregation also writes availability.csv and availability.png (availability.py).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodulelearn.study.names import safe_path_component
from nodulelearn.study.primary import Comparison, parse_comparisons

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

# Fields of TrainConfig that the study sets per run; a [budget] table may not set them.
RUN_FIELDS = ("loss", "loss_params", "train_dist", "test_dists", "seed")
SENSITIVITY_ON = ("all", "id")
_TOP_KEYS = (
    "name", "description", "kind", "seeds", "budget", "sensitivity", "losses", "train", "compare",
)
_TRAIN_KEYS = ("dist", "ood", "core", "shortcut", "sweep")
STUDY_KINDS = ("compare", "availability")
#: At most this many spec fields swept at once (a 1-D curve or a 2-D grid).
MAX_SWEPT_FIELDS = 2
_SENSITIVITY_KEYS = ("n", "repeats", "on", "batch_size")


class StudyError(ValueError):
    """A study file that cannot be run; the message says what was expected and what was found."""


@dataclasses.dataclass(frozen=True)
class LossEntry:
    """One loss of the study.

    Attributes:
        id: the key of its ``[losses.<id>]`` table; names the loss in run ids and tables.
        loss: the registered loss name (``losses.names()``).
        params: its hyperparameters (passed to ``losses.get(loss, **params)``).
    """

    id: str
    loss: str
    params: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainEntry:
    """One training distribution and its test distributions.

    Attributes:
        id: the key of its ``[train.<id>]`` table; names it in run ids and tables.
        dist: dataset preset name or absolute path of a distribution TOML.
        ood: its out-of-distribution test sets (preset names or absolute paths); ``None`` means
            "the preset's ``ood_companions``", resolved by ``validate_study``.
        core, shortcut: the pair's core and shortcut modes, or ``None`` (sweep.py infers them).
        sweep: ``((spec path, (value, ...)), ...)``: the swept fields in file order (empty: no
            sweep). A study with sweeps runs one run per grid point (see sweep.py).
        point: ``((spec path, value), ...)``: the grid point of an entry expanded from a sweep.
        base: the id of the entry a point was expanded from (``None`` if not a point).
        materialised: whether ``dist`` and ``ood`` of a point are the point's own spec files
            (``sweep.expand_study``) rather than the base entry's references.
    """

    id: str
    dist: str
    ood: tuple[str, ...] | None
    core: str | None = None
    shortcut: str | None = None
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    point: tuple[tuple[str, Any], ...] = ()
    base: str | None = None
    materialised: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ``[train.<id>]`` table (points are not written: their sweep is)."""
        table: dict[str, Any] = {"dist": self.dist}
        if self.ood is not None:
            table["ood"] = list(self.ood)
        for key in ("core", "shortcut"):
            if getattr(self, key) is not None:
                table[key] = getattr(self, key)
        if self.sweep:
            table["sweep"] = {path: list(values) for path, values in self.sweep}
        return table


@dataclasses.dataclass(frozen=True)
class SensitivityBudget:
    """Budget of the permutation sensitivity analysis of one run.

    Attributes:
        n: test samples per distribution.
        repeats: permutations per mode.
        on: ``"all"`` test distributions, or ``"id"`` (the training distribution) only.
        batch_size: prediction batch size.
    """

    n: int = 512
    repeats: int = 3
    on: str = "all"
    batch_size: int = 256


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """A parsed study file.

    Attributes:
        name: the study's name (default: the file's stem).
        description: free text.
        seeds: the seeds every (loss, training distribution) pair is run with.
        budget: TrainConfig fields shared by every run.
        sensitivity: the sensitivity analysis budget.
        losses: the losses, in file order.
        train: the training distributions, in file order.
        source: where the study was read from (preset name or path), for messages.
        kind: ``"compare"`` (default) or ``"availability"`` (see the module docstring).
        compare: the primary comparisons (``[[compare]]`` tables, primary.py), in file order.
        unexpanded: for a study whose sweeps ``sweep.expand_study`` expanded into points, the
            study as written (``to_dict`` writes it, so study.json keeps the sweep tables).
    """

    name: str
    description: str
    seeds: tuple[int, ...]
    budget: Mapping[str, Any]
    sensitivity: SensitivityBudget
    losses: tuple[LossEntry, ...]
    train: tuple[TrainEntry, ...]
    source: str = ""
    kind: str = "compare"
    compare: tuple[Comparison, ...] = ()
    unexpanded: StudySpec | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def has_sweeps(self) -> bool:
        """Whether the study (as written) sweeps any spec field."""
        return any(e.sweep or e.point for e in self.train)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; ``study_from_dict(spec.to_dict())`` gives the spec back."""
        if self.unexpanded is not None:
            return self.unexpanded.to_dict()
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "seeds": list(self.seeds),
            "budget": dict(self.budget),
            "sensitivity": dataclasses.asdict(self.sensitivity),
            "losses": {e.id: {"loss": e.loss, **dict(e.params)} for e in self.losses},
            "train": {e.id: e.to_dict() for e in self.train},
            **({"compare": [c.to_dict() for c in self.compare]} if self.compare else {}),
        }


def _presets_dir():
    return importlib.resources.files("nodulelearn.study") / "presets"


def preset_names() -> list[str]:
    """Names of the packaged study presets, sorted."""
    return sorted(p.name[:-5] for p in _presets_dir().iterdir() if p.name.endswith(".toml"))


def load_study(name_or_path: str | os.PathLike) -> StudySpec:
    """Reads a study from a preset name or a TOML path.

    Args:
        name_or_path: a name of ``preset_names()``, or a path to a ``.toml`` file.

    Returns:
        The parsed ``StudySpec`` (not yet validated against the registries: see validate.py).

    Raises:
        StudyError: unknown preset / missing file / bad TOML / bad shape.
    """
    text = str(name_or_path)
    if text in preset_names():
        resource = _presets_dir() / f"{text}.toml"
        data = _parse_toml(resource.read_text(), text)
        return study_from_dict(data, base_dir=None, default_name=text, source=text)
    path = Path(text)
    if not (path.suffix == ".toml" or os.sep in text or "/" in text):
        raise StudyError(
            f"Unknown study {text!r}: expected a preset name or a path to a .toml file. "
            f"Valid presets: {', '.join(preset_names())}."
        )
    if path.is_dir():
        raise StudyError(f"Study file {str(path)!r} is a folder; expected a .toml file.")
    if not path.is_file():
        raise StudyError(f"Study file {str(path)!r} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise StudyError(
            f"Study file {str(path)!r} is not a text (UTF-8) TOML file: {err.reason} at byte "
            f"{err.start}."
        ) from None
    data = _parse_toml(text, str(path))
    return study_from_dict(
        data, base_dir=path.resolve().parent, default_name=path.stem, source=str(path)
    )


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"Study {where!r} is not valid TOML: {err}") from None


def _fail(source: str, message: str) -> StudyError:
    return StudyError(f"Study {source!r}: {message}")


def _check_keys(source: str, where: str, got: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(got) - set(valid))
    if unknown:
        raise _fail(
            source,
            f"unknown key(s) {', '.join(map(repr, unknown))} in {where}. "
            f"Valid keys: {', '.join(valid)}.",
        )


def _table(source: str, data: Mapping[str, Any], key: str, required: bool) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(source, f"`{key}` must be a table. Received: {value!r}")
    if required and not value:
        raise _fail(source, f"expected at least one [{key}.<name>] table; found none.")
    return value


def is_spec_path(ref: str) -> bool:
    """Whether a distribution reference is a file path (``.toml`` or with a slash), not a preset."""
    return ref.endswith(".toml") or "/" in ref or os.sep in ref


def _resolve_dist(ref: Any, base_dir: Path | None, source: str, where: str) -> str:
    """A dataset preset name stays as is; a path (``.toml`` or with a slash) becomes absolute."""
    if not isinstance(ref, str) or not ref or "\x00" in ref:  # a NUL cannot be in a path
        raise _fail(source, f"{where} must be a preset name or a path. Received: {ref!r}")
    if is_spec_path(ref):
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return str(path.resolve())
    return ref


def _path_component(source: str, text: str, what: str) -> None:
    """Names that become file or folder names: names.safe_path_component, as a StudyError."""
    try:
        safe_path_component(text, what)
    except ValueError as err:
        raise _fail(source, str(err)) from None


def _positive_int(source: str, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(source, f"{where} must be a positive integer. Received: {value!r}")
    return value


def study_from_dict(
    data: Mapping[str, Any],
    *,
    base_dir: Path | None = None,
    default_name: str = "study",
    source: str = "<dict>",
) -> StudySpec:
    """Builds a ``StudySpec`` from the parsed TOML (or ``StudySpec.to_dict()``) dict.

    Args:
        data: the study as nested dicts.
        base_dir: directory relative distribution paths are resolved against (None: the cwd).
        default_name: the study's name when ``data`` has no ``name``.
        source: where the data came from, for error messages.

    Returns:
        The ``StudySpec``.

    Raises:
        StudyError: a missing or malformed key.
    """
    _check_keys(source, "the top level", data, _TOP_KEYS)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise _fail(source, f"`name` must be a non-empty string. Received: {name!r}")
    _path_component(source, name, "the study's `name`")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise _fail(
            source, f"`seeds` must be a non-empty list of integers >= 0. Received: {seeds!r}"
        )
    if len(set(seeds)) != len(seeds):
        raise _fail(source, f"`seeds` has duplicates: {seeds!r}")
    kind = data.get("kind", "compare")
    if kind not in STUDY_KINDS:
        raise _fail(
            source, f"`kind` must be one of {', '.join(STUDY_KINDS)}. Received: {kind!r}"
        )

    budget = _table(source, data, "budget", required=False)
    clash = sorted(set(budget) & set(RUN_FIELDS))
    if clash:
        raise _fail(
            source,
            f"[budget] may not set {', '.join(clash)}: the study sets them per run "
            "(from [losses], [train] and `seeds`).",
        )
    for key, value in budget.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(source, f"[budget] {key} must be finite. Received: {value!r}")

    sens = _table(source, data, "sensitivity", required=False)
    _check_keys(source, "[sensitivity]", sens, _SENSITIVITY_KEYS)
    for key in ("n", "repeats", "batch_size"):
        if key in sens:
            _positive_int(source, f"[sensitivity] {key}", sens[key])
    if sens.get("on", "all") not in SENSITIVITY_ON:
        raise _fail(
            source,
            f"[sensitivity] on must be one of {', '.join(SENSITIVITY_ON)}. "
            f"Received: {sens['on']!r}",
        )

    losses = []
    for loss_id, table in _table(source, data, "losses", required=True).items():
        if not isinstance(table, dict):
            raise _fail(source, f"[losses.{loss_id}] must be a table. Received: {table!r}")
        params = dict(table)
        loss = params.pop("loss", loss_id)
        if not isinstance(loss, str) or not loss:
            raise _fail(source, f"[losses.{loss_id}] loss must be a loss name. Received: {loss!r}")
        losses.append(LossEntry(id=loss_id, loss=loss, params=params))

    train = []
    for dist_id, table in _table(source, data, "train", required=True).items():
        if not isinstance(table, dict):
            raise _fail(source, f"[train.{dist_id}] must be a table. Received: {table!r}")
        _check_keys(source, f"[train.{dist_id}]", table, _TRAIN_KEYS)
        dist = _resolve_dist(
            table.get("dist", dist_id), base_dir, source, f"[train.{dist_id}] dist"
        )
        ood = table.get("ood")
        if ood is not None:
            if not isinstance(ood, list):
                raise _fail(source, f"[train.{dist_id}] ood must be a list. Received: {ood!r}")
            ood = tuple(
                _resolve_dist(o, base_dir, source, f"[train.{dist_id}] ood entry") for o in ood
            )
        pair = {}
        for key in ("core", "shortcut"):
            if key in table and (not isinstance(table[key], str) or not table[key]):
                raise _fail(
                    source, f"[train.{dist_id}] {key} must be a mode name. Received: {table[key]!r}"
                )
            pair[key] = table.get(key)
        sweep = _sweep_table(source, dist_id, table.get("sweep"))
        train.append(TrainEntry(id=dist_id, dist=dist, ood=ood, sweep=sweep, **pair))

    for table, entry_id in [("losses", e.id) for e in losses] + [("train", e.id) for e in train]:
        _path_component(source, entry_id, f"the [{table}.<id>] key")
        if "__" in entry_id:
            raise _fail(source, f"table key {entry_id!r} may not contain '__' (run ids).")

    try:
        compare = parse_comparisons(data.get("compare"))
    except ValueError as err:
        raise _fail(source, str(err)) from None

    return StudySpec(
        name=name,
        kind=kind,
        compare=compare,
        description=str(data.get("description", "")),
        seeds=tuple(seeds),
        budget=dict(budget),
        sensitivity=SensitivityBudget(**sens),
        losses=tuple(losses),
        train=tuple(train),
        source=source,
    )



def _sweep_table(source: str, dist_id: str, table: Any) -> tuple[tuple[str, tuple], ...]:
    """The ``[train.<id>.sweep]`` table: 1 to ``MAX_SWEPT_FIELDS`` spec paths, each a value list.

    Only the shape is checked here; sweep.check_sweeps checks every point against the spec.
    """
    where = f"[train.{dist_id}.sweep]"
    if table is None:
        return ()
    if not isinstance(table, dict) or not table:
        raise _fail(
            source,
            f"{where} must be a table of spec paths, each a list of values, e.g. "
            f'"modes.noise.alignment" = [0.0, 0.5, 1.0]. Received: {table!r}',
        )
    if len(table) > MAX_SWEPT_FIELDS:
        raise _fail(
            source,
            f"{where} sweeps {len(table)} fields ({', '.join(table)}); at most "
            f"{MAX_SWEPT_FIELDS} (a curve or a grid) are supported.",
        )
    sweep = []
    for path, values in table.items():
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            raise _fail(source, f"{where}: {path!r} is not a dotted spec path (e.g. modes.noise.alignment).")
        if not isinstance(values, list) or not values:
            raise _fail(
                source, f"{where} {path!r} must be a non-empty list of values. Received: {values!r}"
            )
        for value in values:
            if isinstance(value, float) and not math.isfinite(value):
                raise _fail(source, f"{where} {path!r}: values must be finite. Received: {value!r}")
        if len({repr(v) for v in values}) != len(values):
            raise _fail(source, f"{where} {path!r} has duplicate values: {values!r}")
        sweep.append((path, tuple(values)))
    return tuple(sweep)
