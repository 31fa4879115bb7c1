"""What every nodulelearn loss class shares: hyperparameter checks, config, label handling."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from nodulelearn.losses.registry import hparam_defaults


def _invalid(arg: str, expected: str, value: Any) -> ValueError:
    return ValueError(
        f"Invalid value for argument `{arg}`. Expected {expected}. Received: {arg}={value!r}"
    )


def _is_real(value: Any) -> bool:
    # numbers.Real admits numpy scalars too; bools are rejected although they are ints.
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def positive_float(arg: str, value: Any) -> float:
    """Returns ``float(value)`` if it is a finite number > 0, else raises the Keras-worded error."""
    if not _is_real(value) or value <= 0:
        raise _invalid(arg, "a positive float", value)
    return float(value)


def non_negative_float(arg: str, value: Any) -> float:
    """Returns ``float(value)`` if it is a finite number >= 0, else raises."""
    if not _is_real(value) or value < 0:
        raise _invalid(arg, "a non-negative float", value)
    return float(value)


def unit_interval_float(arg: str, value: Any, *, allow_none: bool = False) -> float | None:
    """Returns ``float(value)`` if it lies in [0, 1] (or is None when allowed), else raises."""
    if value is None and allow_none:
        return None
    if not _is_real(value) or not 0 <= value <= 1:
        raise _invalid(arg, "a float in [0, 1]" + (" or None" if allow_none else ""), value)
    return float(value)


def bounded_float(arg: str, value: Any, low: float, high: float) -> float:
    """Returns ``float(value)`` if it lies in [low, high], else raises."""
    if not _is_real(value) or not low <= value <= high:
        raise _invalid(arg, f"a float in [{low:g}, {high:g}]", value)
    return float(value)


def one_of(arg: str, value: Any, choices: Sequence[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``, else raises."""
    if isinstance(value, bool) or value not in choices:
        raise _invalid(arg, f"one of {tuple(choices)}", value)
    return value


def boolean(arg: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _invalid(arg, "a bool", value)
    return value


def check_rank(loss_name: str, y_pred, rank: int, expected: str) -> None:
    """Raises a ValueError naming the expected shape if ``y_pred`` does not have ``rank`` axes."""
    if len(y_pred.shape) != rank:
        raise ValueError(
            f"Loss {loss_name!r} expects y_pred of shape {expected}. "
            f"Received: shape={tuple(y_pred.shape)}"
        )


def logits_2d(y_pred):
    """Logits as [B, 1]: a model whose output was squeezed to [B] is accepted too."""
    return y_pred[:, None] if len(y_pred.shape) == 1 else y_pred


def labels_1d(y_true):
    """Integer labels [B] from y_true as Keras hands it over ([B] or [B, 1], any dtype)."""
    return ops.cast(ops.reshape(y_true, (-1,)), "int32")


class NoduleLoss(keras.losses.Loss):
    """Base of the nodulelearn losses: a thin ``keras.losses.Loss`` around a pure function.

    Subclasses take their hyperparameters as keyword arguments with defaults, validate them and
    store each under the attribute of the same name; ``get_config`` is derived from that.
    ``call`` returns per-example values whose mean is the loss of the batch, so Keras' reduction,
    ``sample_weight`` and distribution scaling apply as for any Keras loss.
    """

    def __init__(self, name: str | None = None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({key: getattr(self, key) for key in hparam_defaults(type(self))})
        return config
