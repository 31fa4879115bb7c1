"""The training configuration: one plain, JSON-able record whose fields are named like the flags.

``TrainConfig`` holds what the user asked for (``None`` = "choose for me"); ``resolve_config``
fills in every default (which depend on the loss' protocol and on ``smoke``), checks the values
and returns the fully resolved config that is written to ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

from nodulelearn.determinism import SEED_RANGE
from nodulelearn.params import parse_params

__all__ = ["DEFAULT_AUGMENT", "SEED_RANGE", "SMOKE_DEFAULTS", "STRATEGIES", "TrainConfig",
           "check_field", "check_fields", "parse_params", "resolve_config"]

STRATEGIES = ("default", "mirrored", "multi_worker")

#: The default view pipeline (``nodulelearn.training.augment``; order matters: geometry first,
#: then intensities). Here, so that the config and ``--help`` need no TensorFlow.
DEFAULT_AUGMENT = ("flip", "rot90", "translate", "intensity", "noise")

#: ``--smoke``: a seconds-long run for tests and first tries (explicit values still win); each
#: protocol adds its own (``Protocol.smoke_defaults``).
#: How error messages name a phase.
_PHASE_NAMES = {"probe": "linear-probe"}

SMOKE_DEFAULTS: dict[str, Any] = dict(n_train=64, n_val=32, n_test=64, epochs=1, batch_size=32,
                                      image_size=32)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Field names are ``bin/train``'s flag names; None = default.

    ``model_params`` (encoder hyperparameters such as ``width``), ``augment`` (the view pipeline,
    see ``nodulelearn.training.augment``) and ``image_size`` (None = the spec's) have no flag.
    """

    loss: str = "supcon"
    loss_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    loss_module: str | None = None
    train_dist: str = "clinical"
    test_dists: tuple[str, ...] | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    epochs: int | None = None
    probe_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    model: str = "compact_cnn"
    model_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    augment: tuple[str, ...] = DEFAULT_AUGMENT
    image_size: int | None = None
    seed: int = 0
    deterministic: bool = False
    strategy: str = "default"
    smoke: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict, every field under its (flag) name."""
        d = dataclasses.asdict(self)
        d["loss_params"] = dict(self.loss_params)
        d["model_params"] = dict(self.model_params)
        d["augment"] = list(self.augment)
        d["test_dists"] = None if self.test_dists is None else list(self.test_dists)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys (e.g. ``out_dir``) are ignored.

        Values are not checked here (``resolve_config`` does, with ``check_field``): a list
        becomes a tuple, anything else (``"margin_size"``, ``5``) is kept for the check to name.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"Expected a mapping of TrainConfig fields. Received: "
                            f"{type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        for key in ("test_dists", "augment"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _positive_int(name: str, value: Any) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
           f"Invalid value for `{name}`. Expected a positive integer. Received: {name}={value!r}")



_COUNT_FIELDS = ("n_train", "n_val", "n_test", "epochs", "probe_epochs", "batch_size")
_NAME_FIELDS = ("loss", "train_dist", "model", "strategy")
_NAME_LIST_FIELDS = {"test_dists": "distribution names (presets or .toml paths)",
                     "augment": "augmentation entries (name or name:key=value;...)"}
_EXAMPLES = {"test_dists": "['margin_size']", "augment": "['flip', 'rot90']"}


def _invalid(name: str, expected: str, value: Any, error: type[Exception] = ValueError) -> Exception:
    return error(f"Invalid value for `{name}`. Expected {expected}. Received: {name}={value!r} "
                 f"({type(value).__name__})")


def check_field(name: str, value: Any) -> Any:
    """Checks the type (strictly) and range of one ``TrainConfig`` field; returns it normalised.

    The one check of every field's value, for ``resolve_config`` and for a study's ``[budget]``
    table: ``bool`` is not a number, a string is not a bool (``"false"`` is not False), a string
    is not a list of names, NaN and infinity are not learning rates. ``None`` ("the default") is
    accepted wherever the field's default is None. Lists of names come back as tuples, NumPy
    integers and floats as Python ones, paths of distributions (``pathlib.Path``) as strings.

    Raises:
        TypeError: a value of the wrong type (the message says what was expected and received).
        ValueError: an out-of-range value, or ``name`` is not a field (listing the fields).
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise ValueError(f"Unknown TrainConfig field {name!r}. Valid fields: "
                         f"{', '.join(sorted(fields))}.")
    if value is None and fields[name].default is None:
        return None
    if name in _COUNT_FIELDS or name == "seed":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _invalid(name, "an integer" if name == "seed" else "a positive integer",
                           value, TypeError)
        # Epochs may be 0 here (a resolved config has 0 for a phase its protocol lacks);
        # resolve_config requires the protocol's own phases to have at least one.
        low, high = SEED_RANGE if name == "seed" else (0 if "epochs" in name else 1, None)
        if value < low or (high is not None and value > high):
            expected = (f"an integer in [{low}, {high}]" if high is not None
                        else "a non-negative integer" if low == 0 else "a positive integer")
            raise _invalid(name, expected, value)
        return int(value)
    if name == "image_size":
        from nodulelearn.datasets.spec import IMAGE_SIZE_RANGE

        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _invalid(name, "an integer number of pixels (None: the spec's)", value, TypeError)
        low, high = IMAGE_SIZE_RANGE
        if not low <= value <= high:
            raise _invalid(name, f"an integer in [{low}, {high}] (None: the spec's)", value)
        return int(value)
    if name == "learning_rate":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _invalid(name, "a positive float", value, TypeError)
        if not (math.isfinite(value) and value > 0):
            raise _invalid(name, "a positive, finite float", value)
        return float(value)
    if name in ("deterministic", "smoke"):
        if not isinstance(value, bool):  # also numpy.bool_: JSON cannot hold it
            raise _invalid(name, "a boolean, True or False (true or false in TOML)", value,
                           TypeError)
        return value
    if name == "train_dist" and isinstance(value, os.PathLike):
        value = os.fspath(value)  # a path to a .toml spec; config.json holds it as a string
    if name in _NAME_FIELDS or name == "loss_module":
        if not isinstance(value, str) or not value.strip():
            raise _invalid(name, "a non-empty string", value, TypeError)
        return value
    if name in _NAME_LIST_FIELDS:
        what = _NAME_LIST_FIELDS[name]
        if isinstance(value, str):
            raise _invalid(name, f"a list of {what}, e.g. {_EXAMPLES[name]}; a string is not a "
                           "list", value, TypeError)
        if not isinstance(value, (list, tuple)):
            raise _invalid(name, f"a list of {what}", value, TypeError)
        if name == "test_dists":
            value = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise _invalid(name, f"a list of {what}, each a non-empty string", value,
                               TypeError)
        return tuple(value)
    # loss_params, model_params: a table of hyperparameters (their keys are the registry's).
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _invalid(name, "a mapping of hyperparameter names to values, e.g. "
                       "{'temperature': 0.1}", value, TypeError)
    return dict(value)


def check_fields(config: TrainConfig) -> TrainConfig:
    """``config`` with every field through ``check_field`` (the first bad field raises)."""
    if not isinstance(config, TrainConfig):
        hint = " Build one with TrainConfig(**d) or TrainConfig.from_dict(d)." if isinstance(
            config, Mapping) else ""
        raise TypeError(f"Expected a TrainConfig. Received: {type(config).__name__}.{hint}")
    return dataclasses.replace(config, **{
        f.name: check_field(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)})


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fills in every default and validates ``config``.

    Raises:
        TypeError: ``config`` is not a ``TrainConfig``, or a field has the wrong type (see
            ``check_field``).
        UnknownNameError: unknown loss, model or distribution (the message lists valid names).
        ValueError: protocol mismatch (e.g. ``probe_epochs`` for an end-to-end loss), invalid loss
            or model hyperparameters (naming the valid ones), out-of-range values.
    """
    from nodulelearn import losses, models
    from nodulelearn.datasets import load_spec
    from nodulelearn.training.augment import build_augment
    from nodulelearn.training.protocols import PROTOCOLS, losses_of, protocol_for

    config = check_fields(config)  # types first: nothing below reads "false" or "flip" as valid
    if config.loss_module:
        losses.import_loss_module(config.loss_module)
    protocol = protocol_for(config.loss)  # unknown loss, or one no protocol can train, fails
    losses.get(config.loss, **dict(config.loss_params))  # Bad hyperparameters fail here, early.
    _check(config.strategy in STRATEGIES, f"Unknown strategy {config.strategy!r}. "
           f"Valid names: {', '.join(STRATEGIES)}.")
    models.ENCODERS.check_params(config.model, dict(config.model_params))
    phase_fields = {f for p in PROTOCOLS for f in PROTOCOLS.get(p).epochs.values()}
    for field in sorted(phase_fields - set(protocol.epochs.values())):
        if getattr(config, field):
            users = [p for p in PROTOCOLS if PROTOCOLS.get(p).uses(field)]
            phase = next(ph for ph, f in PROTOCOLS.get(users[0]).epochs.items() if f == field)
            raise ValueError(
                f"The loss {config.loss!r} trains under protocol {protocol.name}, which has no "
                f"{_PHASE_NAMES.get(phase, phase)} phase (its phases: "
                f"{', '.join(protocol.phases)}); {field} applies only to losses of protocol "
                f"{' or '.join(users)}. Received: {field}={getattr(config, field)}. Drop "
                f"--{field} or choose one of the losses "
                f"{', '.join(n for p in users for n in losses_of(p))}.")
    defaults = dict(protocol.defaults)
    if config.smoke:
        defaults.update({k: v for k, v in SMOKE_DEFAULTS.items() if k in defaults})
        defaults.update(protocol.smoke_defaults)
    filled = {k: (getattr(config, k) if getattr(config, k) is not None else v)
              for k, v in defaults.items()}
    image_size = config.image_size
    if image_size is None and config.smoke:
        image_size = SMOKE_DEFAULTS["image_size"]
    if image_size is None:
        image_size = load_spec(config.train_dist).image_size
    test_dists = config.test_dists
    if test_dists is None:
        spec = load_spec(config.train_dist)
        test_dists = (config.train_dist,) + tuple(
            d for d in spec.ood_companions if d != config.train_dist)
    else:
        load_spec(config.train_dist)
    for dist in test_dists:
        load_spec(dist)
    _check(len(test_dists) > 0, "Expected at least one test distribution. Received none.")
    for name in ("n_train", "n_val", "n_test", "batch_size"):
        _positive_int(name, filled[name])
    _positive_int("image_size", image_size)
    for field in protocol.epochs.values():
        _positive_int(field, filled[field])
    lr = filled["learning_rate"]
    _check(isinstance(lr, (int, float)) and lr > 0,
           f"Invalid value for `learning_rate`. Expected a positive float. Received: {lr!r}")
    build_augment(config.augment)  # Unknown augmentation op / parameter fails here.
    return dataclasses.replace(
        config, test_dists=tuple(test_dists), image_size=image_size,
        loss_params=dict(config.loss_params), model_params=dict(config.model_params),
        learning_rate=float(lr), **{k: v for k, v in filled.items() if k != "learning_rate"})
