"""Distribution specs: which modes predict the label, and how strongly.

A spec is a TOML file (or the name of a preset in the top-level ``datasets/`` folder)::

    name = "margin_size"
    description = "Margin and size both perfectly predictive."
    image_size = 64            # pixels, default 64
    pixel_spacing_mm = 0.75    # default 0.75: a 64-pixel patch covers 48 mm
    malignant_fraction = 0.5   # P(label = 1), default 0.5
    ood_companions = ["margin_size_decorrelated", "margin_size_reversed"]

    [modes.margin]
    alignment = 1.0            # in [-1, 1], default 0
    [modes.texture]
    fixed = "solid"            # pin the mode to one value (category name or number)
    [modes.size]
    alignment = 0.5
    malignant = [20.0, 28.0]   # override a class's look: category names or [low, high]
    visibility = 0.5           # how visible the benign/malignant difference is, default 1

Alignment a: the mode's value is drawn from the look of the sample's own class with probability
(1 + a) / 2, else from the other class's look (1: perfectly predictive, 0: independent of the
label, -1: reversed). Visibility v (0 to the mode's ``visibility_max``, default 1) sets how
visible the difference between the two looks is: 1 as the looks are, 0 identical looks; for the
numeric modes it scales the gap between the looks (see ``DistributionSpec.look``), for margin,
texture and calcification the renderer applies it (see ``nodulelearn.datasets.modes``). Inside a
``DistributionSpec`` every value uses the package's float encoding
(a category's index for categorical modes); ``to_dict`` writes category names back.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
import numbers
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodulelearn.datasets.modes import MODE_NAMES, MODES, RENDER_VISIBILITY_MODES, Mode

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_IMAGE_SIZE = 64
DEFAULT_PIXEL_SPACING_MM = 0.75  # 64 pixels x 0.75 mm = 48 mm, room for a 30 mm nodule off-centre.
DEFAULT_MALIGNANT_FRACTION = 0.5
IMAGE_SIZE_RANGE = (8, 1024)
# Physical bounds of a pixel. Clinical CT pixels are 0.3 to 1 mm; the smallest image (8 px) of a
# 48 mm field is 6 mm a pixel. Outside these bounds the renderer's float32 coordinates and its
# texture filters lose meaning (1e300 mm gives NaN images, 1e-300 mm overflows).
PIXEL_SPACING_RANGE_MM = (0.01, 10.0)
_TOP_KEYS = (
    "name", "description", "image_size", "pixel_spacing_mm", "malignant_fraction",
    "ood_companions", "modes",
)
_MODE_KEYS = ("alignment", "fixed", "benign", "malignant", "visibility")


class SpecError(ValueError):
    """An invalid distribution spec; the message says what was expected and what was received."""


@dataclasses.dataclass(frozen=True)
class ModeSpec:
    """How one mode is drawn. Values use the internal float encoding (category index).

    Attributes:
        alignment: a in [-1, 1]; the own class's look is used with probability (1 + a) / 2.
        fixed: if set, every sample takes this value and ``alignment`` is ignored.
        benign: override of the benign look: category indices, or ``(low, high)``.
        malignant: override of the malignant look, likewise.
        visibility: how visible the benign/malignant difference is, in [0, the mode's
            ``visibility_max``]; 1 (default) renders the looks as they are, 0 makes them
            identical. See ``nodulelearn.datasets.modes`` for what it changes per mode.
    """

    alignment: float = 0.0
    fixed: float | None = None
    benign: tuple | None = None
    malignant: tuple | None = None
    visibility: float = 1.0


@dataclasses.dataclass(frozen=True)
class DistributionSpec:
    """A distribution of labelled nodule patches (see the module docstring)."""

    name: str
    description: str = ""
    image_size: int = DEFAULT_IMAGE_SIZE
    pixel_spacing_mm: float = DEFAULT_PIXEL_SPACING_MM
    malignant_fraction: float = DEFAULT_MALIGNANT_FRACTION
    modes: Mapping[str, ModeSpec] = dataclasses.field(
        default_factory=lambda: {name: ModeSpec() for name in MODE_NAMES}
    )
    ood_companions: tuple[str, ...] = ()

    def look(self, mode: str, label: int) -> tuple:
        """The look of class ``label`` (0 benign, 1 malignant) for ``mode``, internal encoding.

        For a numeric mode with visibility v != 1, each end of the look is moved towards the mean
        of the two looks' ends: ``end' = mean + v (end - mean)``, rounded for a count (v = 0: both
        classes get the same look). Categorical looks are returned as given (the renderer applies
        their visibility).

        Returns:
            category indices (floats) for a categorical mode, else ``(low, high)``.
        """
        look = self._given_look(mode, label)
        info, visibility = MODES[mode], self.modes[mode].visibility
        if info.visibility_acts_on != "looks" or visibility == 1.0:
            return look
        other = self._given_look(mode, 1 - label)
        ends = []
        for own, theirs in zip(look, other, strict=True):
            mean = (own + theirs) / 2.0
            end = mean + visibility * (own - mean)
            ends.append(float(math.floor(end + 0.5)) if info.kind == "count" else end)
        return tuple(ends)

    def render_visibility(self) -> dict[str, float]:
        """The visibility of the modes the renderer applies it to (``RENDER_VISIBILITY_MODES``)."""
        return {m: float(self.modes[m].visibility) for m in RENDER_VISIBILITY_MODES}

    def _given_look(self, mode: str, label: int) -> tuple:
        """The look as written (override or the mode's default), before visibility."""
        override = getattr(self.modes[mode], "malignant" if label else "benign")
        if override is not None:
            return override
        info = MODES[mode]
        look = info.malignant if label else info.benign
        if info.is_categorical:
            return tuple(float(info.category_index(c)) for c in look)
        return tuple(float(v) for v in look)

    def to_dict(self) -> dict[str, Any]:
        """JSON- and TOML-shaped dict (category names, not indices); ``spec_from_dict`` inverts it."""
        modes = {}
        for name, mode_spec in self.modes.items():
            info = MODES[name]
            entry: dict[str, Any] = {}
            if mode_spec.fixed is not None:
                entry["fixed"] = _encode_value(info, mode_spec.fixed)
            else:
                entry["alignment"] = mode_spec.alignment
            for label_name in ("benign", "malignant"):
                look = getattr(mode_spec, label_name)
                if look is not None:
                    entry[label_name] = _encode_look(info, look)
            if mode_spec.visibility != 1.0:  # written only when set: older dicts stay unchanged
                entry["visibility"] = mode_spec.visibility
            modes[name] = entry
        return {
            "name": self.name,
            "description": self.description,
            "image_size": self.image_size,
            "pixel_spacing_mm": self.pixel_spacing_mm,
            "malignant_fraction": self.malignant_fraction,
            "ood_companions": list(self.ood_companions),
            "modes": modes,
        }


def _encode_value(info: Mode, value: float) -> str | float:
    return info.categories[int(value)] if info.is_categorical else float(value)


def _encode_look(info: Mode, look: tuple) -> list:
    if info.is_categorical:
        return [info.categories[int(v)] for v in look]
    return [float(v) for v in look]


def presets_dir() -> Path:
    """The folder holding the preset TOML files (installed copy or repository checkout)."""
    installed = importlib.resources.files("nodulelearn") / "presets"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parents[2] / "datasets"


def preset_names() -> list[str]:
    """Sorted names of the presets (``datasets/<name>.toml``)."""
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load_spec(name_or_path: str | os.PathLike | DistributionSpec) -> DistributionSpec:
    """Loads a spec from a preset name or a path to a ``.toml`` file.

    Args:
        name_or_path: a preset name (see ``preset_names()``), a path to a TOML file, or a
            ``DistributionSpec`` (returned unchanged).

    Returns:
        The validated ``DistributionSpec``.

    Raises:
        SpecError: unknown preset (the message lists the presets), malformed TOML (file and line),
            or an invalid spec.
    """
    if isinstance(name_or_path, DistributionSpec):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text)
    if not (text.endswith(".toml") or os.sep in text or "/" in text):
        if text not in preset_names():
            raise SpecError(
                f"Unknown distribution preset {text!r} (and no such .toml file). "
                f"Known presets: {', '.join(preset_names())}."
            )
        path = presets_dir() / f"{text}.toml"
    if not path.is_file():
        raise SpecError(
            f"Distribution spec file {str(path)!r} does not exist. Give a path to a .toml file or "
            f"one of the presets: {', '.join(preset_names())}."
        )
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"Malformed TOML in {path}: {err}") from None
    return spec_from_dict(data, default_name=path.stem, source=str(path))


def spec_from_dict(
    data: Mapping[str, Any], *, default_name: str = "custom", source: str = "<dict>"
) -> DistributionSpec:
    """Validates a TOML-shaped dict (as written by ``DistributionSpec.to_dict``) into a spec.

    Args:
        data: the spec's keys (see the module docstring).
        default_name: the name used when ``data`` has no ``name``.
        source: where ``data`` came from, quoted in error messages.

    Returns:
        The ``DistributionSpec``; every one of the eight modes is present.

    Raises:
        SpecError: on any unknown key, mode or category, or a value out of its domain.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a spec must be a table/dict. Received: {type(data).__name__}")
    _check_keys(data, _TOP_KEYS, f"{source}: unknown top-level key")
    name = data.get("name", default_name)
    _check_type(name, str, f"{source}: `name`", "a string")
    description = data.get("description", "")
    _check_type(description, str, f"{source}: `description`", "a string")
    image_size = check_image_size(data.get("image_size", DEFAULT_IMAGE_SIZE), source)
    spacing = _number(data.get("pixel_spacing_mm", DEFAULT_PIXEL_SPACING_MM),
                      f"{source}: `pixel_spacing_mm`")
    check_pixel_spacing(spacing, source)
    fraction = _number(data.get("malignant_fraction", DEFAULT_MALIGNANT_FRACTION),
                       f"{source}: `malignant_fraction`")
    if not 0.0 <= fraction <= 1.0:
        raise SpecError(f"{source}: Invalid value for `malignant_fraction`. Expected a number in "
                        f"[0, 1]. Received: malignant_fraction={fraction!r}")
    companions = data.get("ood_companions", [])
    if not isinstance(companions, (list, tuple)) or not all(isinstance(c, str) for c in companions):
        raise SpecError(f"{source}: invalid `ood_companions`. Expected a list of preset names. "
                        f"Received: {companions!r}")
    known = preset_names()
    for companion in companions:
        if companion not in known and not companion.endswith(".toml"):
            raise SpecError(f"{source}: unknown preset {companion!r} in `ood_companions`. "
                            f"Known presets: {', '.join(known)}.")
    mode_tables = data.get("modes", {})
    _check_type(mode_tables, Mapping, f"{source}: `modes`", "a table of [modes.<mode>] tables")
    for mode in mode_tables:
        if mode not in MODES:
            raise SpecError(f"{source}: unknown mode {mode!r} in `modes`. "
                            f"Valid modes: {', '.join(MODE_NAMES)}.")
    modes = {
        mode: _mode_spec(MODES[mode], mode_tables.get(mode, {}), f"{source}: [modes.{mode}]")
        for mode in MODE_NAMES
    }
    return DistributionSpec(
        name=name, description=description, image_size=image_size, pixel_spacing_mm=spacing,
        malignant_fraction=fraction, modes=modes, ood_companions=tuple(companions),
    )


def _mode_spec(info: Mode, table: Any, where: str) -> ModeSpec:
    _check_type(table, Mapping, where, "a table")
    _check_keys(table, _MODE_KEYS, f"{where}: unknown key")
    visibility = _visibility(info, table.get("visibility", 1.0), where)
    if "fixed" in table:
        for other in ("alignment", "benign", "malignant"):
            if other in table:
                raise SpecError(f"{where}: `fixed` cannot be combined with `{other}` (a fixed "
                                f"mode takes one value whatever the label). Remove one of them.")
        if "visibility" in table and info.visibility_acts_on == "looks":
            raise SpecError(f"{where}: `fixed` cannot be combined with `visibility` for mode "
                            f"{info.name!r}: its visibility scales the gap between its looks, "
                            "and a fixed mode has none. Remove one of them.")
        return ModeSpec(fixed=_value(info, table["fixed"], f"{where} `fixed`"),
                        visibility=visibility)
    alignment = _number(table.get("alignment", 0.0), f"{where} `alignment`")
    if not -1.0 <= alignment <= 1.0:
        raise SpecError(f"{where}: Invalid value for `alignment`. Expected a number in [-1, 1]. "
                        f"Received: alignment={alignment!r}")
    looks = {key: _look(info, table[key], f"{where} `{key}`")
             for key in ("benign", "malignant") if key in table}
    return ModeSpec(alignment=alignment, visibility=visibility, **looks)


def _visibility(info: Mode, value: Any, where: str) -> float:
    high = info.visibility_max
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and 0.0 <= value <= high):
        raise SpecError(f"{where}: Invalid value for `visibility`. Expected a number in "
                        f"[0, {high:g}] ({info.visibility_effect}). Received: visibility={value!r}")
    return float(value)


def check_pixel_spacing(spacing: Any, source: str = "spec") -> float:
    """``spacing`` as a float if it is a finite pixel size in ``PIXEL_SPACING_RANGE_MM``.

    Raises:
        SpecError: otherwise (the Keras template message).
    """
    low, high = PIXEL_SPACING_RANGE_MM
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not (
            math.isfinite(spacing) and low <= spacing <= high):
        raise SpecError(f"{source}: Invalid value for `pixel_spacing_mm`. Expected a positive "
                        f"number of mm in [{low:g}, {high:g}]. Received: pixel_spacing_mm={spacing!r}")
    return float(spacing)


def check_image_size(image_size: Any, source: str = "spec") -> int:
    """``image_size`` as an int if it is an integer in the supported range (8 to 1024 pixels).

    Raises:
        SpecError: otherwise (the Keras template message).
    """
    lo, hi = IMAGE_SIZE_RANGE
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or not (
            lo <= image_size <= hi):
        raise SpecError(f"{source}: Invalid value for `image_size`. Expected an integer in "
                        f"[{lo}, {hi}]. Received: image_size={image_size!r}")
    return int(image_size)


def _value(info: Mode, value: Any, where: str) -> float:
    """One value of ``info`` (category name or number) in the internal float encoding."""
    if info.is_categorical:
        if isinstance(value, str):
            if value not in info.categories:
                raise SpecError(f"{where}: unknown category {value!r} for mode {info.name!r}. "
                                f"Valid categories: {', '.join(info.categories)}.")
            return float(info.categories.index(value))
        if isinstance(value, bool) or not isinstance(value, int) or not (
                0 <= value < len(info.categories)):
            raise SpecError(f"{where}: expected a category name ({', '.join(info.categories)}) "
                            f"or its index 0..{len(info.categories) - 1}. Received: {value!r}")
        return float(value)
    number = _number(value, where)
    low, high = info.domain
    if not low <= number <= high:
        raise SpecError(f"{where}: {number!r} is outside the domain of mode {info.name!r}: "
                        f"expected a number in [{low:g}, {high:g}] {info.unit}.")
    if info.kind == "count" and number != int(number):
        raise SpecError(f"{where}: mode {info.name!r} is a count. Expected an integer. "
                        f"Received: {number!r}")
    return number


def _look(info: Mode, look: Any, where: str) -> tuple:
    """A look override: category list (categorical) or ``[low, high]`` (numeric)."""
    if info.is_categorical:
        if not isinstance(look, (list, tuple)) or not look:
            raise SpecError(f"{where}: expected a non-empty list of categories of mode "
                            f"{info.name!r} ({', '.join(info.categories)}). Received: {look!r}")
        indices = [_value(info, v, where) for v in look]
        if len(set(indices)) != len(indices):
            raise SpecError(f"{where}: categories repeat in {look!r}.")
        return tuple(indices)
    if not isinstance(look, (list, tuple)) or len(look) != 2:
        raise SpecError(f"{where}: expected [low, high] for mode {info.name!r}. "
                        f"Received: {look!r}")
    low, high = (_value(info, v, where) for v in look)
    if low > high:
        raise SpecError(f"{where}: expected low <= high. Received: {list(look)!r}")
    return (low, high)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{where}: expected a finite number. Received: {value!r}")
    return float(value)


def _check_type(value: Any, expected: type, where: str, description: str) -> None:
    if not isinstance(value, expected):
        raise SpecError(f"{where}: expected {description}. Received: {value!r}")


def _check_keys(table: Mapping, valid: tuple[str, ...], message: str) -> None:
    for key in table:
        if key not in valid:
            raise SpecError(f"{message} {key!r}. Valid keys: {', '.join(valid)}.")


def spec_at_image_size(name_or_spec, image_size: int | None = None) -> DistributionSpec:
    """``load_spec(name_or_spec)``, rendered at ``image_size`` pixels when given.

    The pixel spacing is scaled so that the field of view (in mm) stays the spec's: a smoke run
    at 32 pixels, and every evaluation or analysis of it, sees the same patch at a coarser
    resolution.
    """
    spec = load_spec(name_or_spec)
    if image_size is None:
        return spec
    image_size = check_image_size(image_size, f"spec {spec.name!r} at another image size")
    if image_size == spec.image_size:
        return spec
    spacing = spec.pixel_spacing_mm * spec.image_size / image_size
    check_pixel_spacing(spacing, f"spec {spec.name!r} at image_size {image_size}")
    return dataclasses.replace(spec, image_size=image_size, pixel_spacing_mm=spacing)
