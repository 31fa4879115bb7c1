"""Spec fields addressed by dotted paths, for sweeps and calibration.

A path names one scalar field of a ``DistributionSpec`` as it is written in TOML:
``"malignant_fraction"``, ``"modes.<mode>.alignment"`` (predictivity) or
``"modes.<mode>.visibility"`` (how visible the mode's benign/malignant difference is, the
data-side control of its availability). ``sweepable_paths()`` lists them all::

    spec = set_spec_field(load_spec("margin_noise"), "modes.noise.alignment", 0.5)
    spec = set_spec_field(spec, "modes.margin.visibility", 1.5)
    get_spec_field(spec, "modes.noise.alignment")  # 0.5

``decorrelated(spec)`` is the distribution in which every mode is independent of the label
(alignment 0) with the looks, pinned modes and visibility kept: where a mode's encoding in an
embedding is measured without the other modes leaking into it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nodulelearn.datasets.modes import MODE_NAMES
from nodulelearn.datasets.spec import DistributionSpec, SpecError, spec_from_dict

MODE_FIELDS = ("alignment", "visibility")
TOP_FIELDS = ("malignant_fraction",)


def sweepable_paths() -> list[str]:
    """Every path ``set_spec_field`` accepts: top-level fields, then each mode's fields."""
    return list(TOP_FIELDS) + [f"modes.{m}.{f}" for m in MODE_NAMES for f in MODE_FIELDS]


def _split(path: Any) -> tuple[str, ...]:
    if not isinstance(path, str) or path not in sweepable_paths():
        raise SpecError(
            f"Invalid value for argument `path`. Expected a sweepable spec path: "
            f"{', '.join(sweepable_paths())}. Received: path={path!r}"
        )
    return tuple(path.split("."))


def get_spec_field(spec: DistributionSpec, path: str) -> float | None:
    """The value of a sweepable field (see ``sweepable_paths``); a fixed mode's alignment is None."""
    parts = _split(path)
    if len(parts) == 1:
        return getattr(spec, parts[0])
    mode_spec = spec.modes[parts[1]]
    if parts[2] == "alignment" and mode_spec.fixed is not None:
        return None
    return getattr(mode_spec, parts[2])


def set_spec_field(spec: DistributionSpec, path: str, value: Any) -> DistributionSpec:
    """A copy of ``spec`` with the field at ``path`` set to ``value``, validated like a TOML spec.

    Args:
        spec: the distribution.
        path: one of ``sweepable_paths()``, e.g. ``"modes.noise.alignment"``,
            ``"modes.margin.visibility"``, ``"malignant_fraction"``.
        value: the new value (a number).

    Returns:
        The new ``DistributionSpec``; its name and every other field are ``spec``'s.

    Raises:
        SpecError: an unknown path (the message lists the valid ones), a value out of the
            field's range (the message says which range), or the alignment or a numeric mode's
            visibility of a mode that the spec pins with ``fixed``.
    """
    parts = _split(path)
    data = spec.to_dict()
    if len(parts) == 1:
        data[parts[0]] = value
    else:
        entry = data["modes"][parts[1]]
        if "fixed" in entry and parts[2] == "alignment":
            raise SpecError(
                f"Cannot set `{path}`: spec {spec.name!r} pins mode {parts[1]!r} to "
                f"{entry['fixed']!r} (`fixed`), so it has no alignment. Remove `fixed` first."
            )
        entry[parts[2]] = value
    data["ood_companions"] = []  # checked already; not re-resolved against the presets
    new = spec_from_dict(data, source=f"spec {spec.name!r} with {path} = {value!r}")
    return dataclasses.replace(new, ood_companions=spec.ood_companions)


def decorrelated(spec: DistributionSpec) -> DistributionSpec:
    """``spec`` with every mode independent of the label: every alignment set to 0.

    Looks, pinned (``fixed``) modes, visibility, geometry and ``malignant_fraction`` are kept,
    so each mode varies exactly as in ``spec`` but predicts nothing, and no mode is correlated
    with another through the label. Named ``<name>_independent``; no OOD companions.
    """
    modes = {
        name: mode_spec if mode_spec.fixed is not None
        else dataclasses.replace(mode_spec, alignment=0.0)
        for name, mode_spec in spec.modes.items()
    }
    return dataclasses.replace(
        spec,
        name=f"{spec.name}_independent",
        description=f"{spec.name} with every mode independent of the label (alignment 0).",
        modes=modes,
        ood_companions=(),
    )
