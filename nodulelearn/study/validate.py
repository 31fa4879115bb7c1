"""Checks a study against what the package knows: losses, dataset presets and TrainConfig fields.

Run before any training, so that a typo fails in a second with the list of valid names instead of
an hour into a study.
"""

from __future__ import annotations

import dataclasses

from nodulelearn.determinism import SEED_RANGE
from nodulelearn.study.availability import check_availability_study
from nodulelearn.study.names import safe_path_component
from nodulelearn.study.primary import check_comparisons
from nodulelearn.study.spec import RUN_FIELDS, StudyError, StudySpec, TrainEntry
from nodulelearn.study.sweep import check_sweeps, point_entries, without_sweeps

#: Every stage's seed stays within ``determinism.SEED_RANGE`` (below 2^32: NumPy's legacy seeding
#: and scikit-learn's ``random_state`` take no more).
SEED_LIMIT = SEED_RANGE[1] + 1


def largest_seed_offset() -> int:
    """The most any stage adds to a run's seed: the analysis seed (run seed + the runner's
    offset) plus the largest offset the encoding and recoverability read-outs add to it."""
    from nodulelearn.sensitivity.encoding import ENCODING_SEED_OFFSET
    from nodulelearn.sensitivity.retraining import FIT_SEED_OFFSET, TEST_SEED_OFFSET
    from nodulelearn.study.stages import SENSITIVITY_SEED_OFFSET

    return SENSITIVITY_SEED_OFFSET + max(ENCODING_SEED_OFFSET, FIT_SEED_OFFSET, TEST_SEED_OFFSET)


def max_seed() -> int:
    """The largest seed a study accepts: every stage's seed stays below ``SEED_LIMIT``."""
    return SEED_LIMIT - 1 - largest_seed_offset()


def _check_seeds(study: StudySpec) -> None:
    largest = max_seed()
    too_large = [s for s in study.seeds if s > largest]
    if too_large:
        raise StudyError(
            f"Study {study.source!r}: `seeds` must be integers from 0 to {largest} (the later "
            f"stages draw with the seed plus offsets up to {largest_seed_offset()}, and seeds "
            f"must stay below 2^32). Received: {', '.join(map(str, too_large))}."
        )


def _import_loss_module(study: StudySpec) -> None:
    """Imports ``[budget] loss_module`` first, so that the losses it registers can be checked."""
    from nodulelearn import losses

    module = study.budget.get("loss_module")
    if module is None:
        return
    if isinstance(module, str) and module and not all(
            part.isidentifier() for part in module.split(".")):  # e.g. a relative '..x'
        raise StudyError(
            f"Study {study.source!r}: [budget] loss_module must be an absolute importable module "
            f"name such as 'my_losses' or 'my_project.my_losses'. Received: {module!r}"
        )
    try:
        losses.import_loss_module(module)
    except Exception as err:  # ImportError, or whatever the user's module raised on import
        message = str(err) if isinstance(err, ImportError) else f"{type(err).__name__}: {err}"
        raise StudyError(
            f"Study {study.source!r}: [budget] loss_module = {module!r} cannot be imported: "
            f"{message}"
        ) from None


def _check_losses(study: StudySpec) -> None:
    from nodulelearn import losses

    valid = losses.names()
    for entry in study.losses:
        if entry.loss not in valid:
            raise StudyError(
                f"Study {study.source!r}: [losses.{entry.id}] names unknown loss {entry.loss!r}. "
                f"Valid losses: {', '.join(valid)}."
            )
        try:  # the registry's wording for unknown hyperparameters; the loss checks its values
            losses.get(entry.loss, **entry.params)
        except (TypeError, ValueError) as err:
            raise StudyError(f"Study {study.source!r}: [losses.{entry.id}]: {err}") from None


def _load_dist(study: StudySpec, ref: str, where: str):
    from nodulelearn.datasets import load_spec, preset_names

    try:
        return load_spec(ref)
    except Exception as err:  # SpecError, FileNotFoundError, UnknownNameError, ...
        raise StudyError(
            f"Study {study.source!r}: {where} names distribution {ref!r}, which cannot be loaded "
            f"({err}). Expected a dataset preset ({', '.join(preset_names())}) or a path to a "
            "distribution .toml file."
        ) from None


def _resolve_train(study: StudySpec, entry: TrainEntry) -> TrainEntry:
    spec = _load_dist(study, entry.dist, f"[train.{entry.id}]")
    ood = entry.ood
    if ood is None:
        ood = tuple(getattr(spec, "ood_companions", ()) or ())
    for ref in ood:
        _load_dist(study, ref, f"[train.{entry.id}] ood")
    return dataclasses.replace(entry, ood=tuple(ood))


def _fail(study: StudySpec, message: str) -> StudyError:
    return StudyError(f"Study {study.source!r}: {message}")


def _point_where(entry: TrainEntry, point: TrainEntry) -> str:
    if not point.point:
        return f"[train.{entry.id}]"
    values = ", ".join(f"{path} = {value!r}" for path, value in point.point)
    return f"[train.{entry.id}.sweep] point {values}"


def _refuse_twice(study: StudySpec, named: list[tuple[str, str]], what: str, why: str) -> None:
    """Ids equal ignoring case name one folder on macOS' and Windows' file systems: refused."""
    seen: dict[str, tuple[int, str, str]] = {}
    for k, (key, where) in enumerate(named):
        first, other, other_key = seen.setdefault(key.casefold(), (k, where, key))
        if first != k:
            named_as = (f"the {what} {key!r}" if key == other_key else
                        f"the {what}s {other_key!r} and {key!r} (equal up to case: one folder "
                        "on macOS and Windows)")
            raise _fail(study, f"{other} and {where} both give {named_as}; {why}")


def check_names(study: StudySpec) -> None:
    """Every name that becomes a path, and every run of the study, checked before any training.

    - every training distribution (a ``[train]`` entry or a sweep point) is named once: a sweep
      over ``[1, 1.0]``, or an entry named like a point, would list one run twice;
    - every test set label (a preset's name or a file's stem) names one distribution in the whole
      study: results.csv, sensitivity files and a sweep point's spec files are keyed by it, so
      ``siteA/test.toml`` beside ``siteB/test.toml`` is refused (rename one file) rather than
      letting one set's numbers replace the other's;
    - every label, point id and run id is a plain file name (``names.safe_path_component``; the
      study's name and table keys are checked when the file is read).

    Needs no TensorFlow; ``validate_study`` calls it, and so does aggregation for a study read
    back from study.json.

    Raises:
        StudyError: naming both entries, or the name and what is wrong with it.
    """
    from nodulelearn.study.plan import eval_dists, plan_runs

    _refuse_twice(
        study, [(e.id, f"[losses.{e.id}]") for e in study.losses], "loss id",
        "rename one of the tables.",
    )  # fmt: skip
    points = [(entry, point) for entry in study.train for point in point_entries(entry)]
    for entry, point in points:
        if point.point:
            _safe(study, point.id, f"{_point_where(entry, point)}: the sweep point id")
    _refuse_twice(
        study, [(point.id, _point_where(entry, point)) for entry, point in points],
        "training distribution", "one run would be listed twice. List each swept value once "
        "(1 and 1.0 are one point) and name [train] entries unlike sweep points.",
    )  # fmt: skip
    labels: dict[str, tuple[str, str]] = {}
    for entry in study.train:
        for test in eval_dists(entry):
            where = f"[train.{entry.id}]" + (" ood" if test.role == "ood" else "")
            _safe(study, test.label, f"{where}: the label of test set {test.ref!r}")
            ref, other = labels.setdefault(test.label.casefold(), (test.ref, where))
            if ref != test.ref:
                raise _fail(
                    study, f"test sets {ref!r} ({other}) and {test.ref!r} ({where}) would both "
                    f"be labelled {test.label!r} (a preset's name or a file's stem, up to case), "
                    "and results are keyed by that label. Rename one of the files."
                )
    runs = plan_runs(study)
    for run in runs:
        _safe(study, run.id, "run id (<loss id>__<train id>__s<seed>)")
    _refuse_twice(study, [(run.id, f"run {run.id!r}") for run in runs], "run id",
                  "rename one entry.")


def _safe(study: StudySpec, text: str, what: str) -> None:
    try:
        safe_path_component(text, what)
    except ValueError as err:
        raise _fail(study, str(err)) from None


def _check_budget(study: StudySpec) -> None:
    from nodulelearn.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(study.budget) - fields)
    if unknown:
        raise StudyError(
            f"Study {study.source!r}: unknown [budget] key(s) {', '.join(unknown)}. "
            f"Valid keys (TrainConfig fields): {', '.join(sorted(fields - set(RUN_FIELDS)))}."
        )
    from nodulelearn.training.config import check_field  # the one type check of the fields

    for key, value in study.budget.items():
        try:
            check_field(key, value)
        except (TypeError, ValueError) as err:
            raise StudyError(
                f"Study {study.source!r}: [budget] has an invalid training config value: {err}"
            ) from None


def _check_bounds(study: StudySpec, run_id: str, config) -> None:
    """Image size and sample counts against the supported range and the available memory."""
    from nodulelearn.datasets import check_dataset_fits_memory, spec_at_image_size
    from nodulelearn.training.protocols import protocol_for

    for ref in (config.train_dist, *config.test_dists):  # image size and pixel spacing bounds
        spec_at_image_size(ref, config.image_size)
    check_dataset_fits_memory(
        config.n_train, config.image_size, views=protocol_for(config.loss).views,
        what=f"n_train of run {run_id!r}",
    )  # fmt: skip
    largest = max(config.n_val, config.n_test, study.sensitivity.n)
    check_dataset_fits_memory(
        largest, config.image_size,
        what=f"the largest test set of run {run_id!r} (n_val, n_test, [sensitivity] n)",
    )  # fmt: skip


def _check_run_configs(study: StudySpec) -> None:
    """Resolves the TrainConfig of every run: bad budget values fail now, not mid-study.

    Sizes are checked too: an image size outside the supported range, or a training or test set
    that would not fit in memory, fails here rather than in every run with a MemoryError.
    """
    from nodulelearn.study.plan import plan_runs, train_config_fields
    from nodulelearn.training import TrainConfig, resolve_config

    for run in plan_runs(study):
        try:
            config = resolve_config(TrainConfig(**train_config_fields(study, run)))
            _check_bounds(study, run.id, config)
        except (TypeError, ValueError) as err:
            raise StudyError(
                f"Study {study.source!r}: run {run.id!r} has an invalid training config: {err}"
            ) from None


def validate_study(study: StudySpec) -> StudySpec:
    """Checks every name of a study and resolves each training distribution's OOD sets.

    Args:
        study: a parsed study.

    Returns:
        The same study with every ``TrainEntry.ood`` a tuple (defaults taken from the presets'
        ``ood_companions``).

    Raises:
        StudyError: an unknown loss, hyperparameter, distribution or budget key, listing the
            valid ones.
    """
    _check_seeds(study)
    _import_loss_module(study)
    _check_losses(study)
    _check_budget(study)
    train = tuple(_resolve_train(study, entry) for entry in study.train)
    study = dataclasses.replace(study, train=train)
    check_names(study)
    check_sweeps(study)  # every sweep point's distributions, before any training
    check_availability_study(study)
    check_comparisons(study)
    _check_run_configs(without_sweeps(study))
    return study
