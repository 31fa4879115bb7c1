"""Checks a study against what the package knows: losses, dataset presets and TrainConfig fields.

Run before any training, so that a typo fails in a second with the list of valid names instead of
an hour into a study.
"""

from __future__ import annotations

import dataclasses

from nodulelearn.study.availability import check_availability_study
from nodulelearn.study.spec import RUN_FIELDS, StudyError, StudySpec, TrainEntry
from nodulelearn.study.sweep import check_sweeps, without_sweeps


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


def _check_budget(study: StudySpec) -> None:
    from nodulelearn.training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(study.budget) - fields)
    if unknown:
        raise StudyError(
            f"Study {study.source!r}: unknown [budget] key(s) {', '.join(unknown)}. "
            f"Valid keys (TrainConfig fields): {', '.join(sorted(fields - set(RUN_FIELDS)))}."
        )


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
    _check_losses(study)
    _check_budget(study)
    train = tuple(_resolve_train(study, entry) for entry in study.train)
    study = dataclasses.replace(study, train=train)
    check_sweeps(study)  # every sweep point's distributions, before any training
    check_availability_study(study)
    _check_run_configs(without_sweeps(study))
    return study
