"""Visibility in specs, dotted spec paths (sweeps) and the decorrelated distribution."""

import dataclasses
import json
import sys

import numpy as np
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from nodulelearn.datasets import (
    MODE_NAMES,
    MODES,
    RENDER_VISIBILITY_MODES,
    SpecError,
    decorrelated,
    get_spec_field,
    load_spec,
    preset_names,
    sample_factors,
    set_spec_field,
    spec_from_dict,
    sweepable_paths,
)
from nodulelearn.datasets.spec import presets_dir

NUMERIC = [m for m in MODE_NAMES if m not in RENDER_VISIBILITY_MODES]


def test_default_visibility_is_left_out_of_the_dict():
    """Specs without visibility keep the dicts (and so the fingerprints) they had before."""
    for name in preset_names():
        spec = load_spec(name)
        for mode, entry in spec.to_dict()["modes"].items():
            assert ("visibility" in entry) == (spec.modes[mode].visibility != 1.0)


def _visibility_in_file(name):
    """{mode: visibility} as the preset's own TOML file sets it (calibrated presets set some)."""
    text = (presets_dir() / f"{name}.toml").read_text(encoding="utf-8")
    modes = tomllib.loads(text).get("modes", {})
    return {mode: entry["visibility"] for mode, entry in modes.items() if "visibility" in entry}


def test_presets_have_default_visibility_unless_their_file_sets_one():
    """The presets that set no visibility keep visibility 1 and dicts without it (old pixels)."""
    uncalibrated = []
    for name in preset_names():
        spec, declared = load_spec(name), _visibility_in_file(name)
        assert {m: spec.modes[m].visibility for m in declared} == declared, name
        for mode, entry in spec.to_dict()["modes"].items():
            if mode not in declared:
                assert spec.modes[mode].visibility == 1.0, (name, mode)
                assert "visibility" not in entry, (name, mode)
        if not declared:
            uncalibrated.append(name)
    assert "clinical" in uncalibrated and "clinical_other_site" in uncalibrated


def test_visibility_in_toml_round_trips(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text("[modes.margin]\nalignment = 1\nvisibility = 1.5\n"
                    "[modes.texture]\nfixed = 'ground_glass'\nvisibility = 0.25\n"
                    "[modes.noise]\nvisibility = 0\n")
    spec = load_spec(path)
    assert spec.modes["margin"].visibility == 1.5
    assert spec.modes["texture"].visibility == 0.25 and spec.modes["texture"].fixed == 2.0
    assert spec.render_visibility() == {"margin": 1.5, "texture": 0.25, "calcification": 1.0}
    again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


@pytest.mark.parametrize("text, expected", [
    ("[modes.margin]\nvisibility = 2.5", r"Invalid value for `visibility`. Expected a number in "
     r"\[0, 2\].*Received: visibility=2.5"),
    ("[modes.noise]\nvisibility = 1.5", r"\[0, 1\].*Received: visibility=1.5"),
    ("[modes.size]\nvisibility = -0.1", r"Received: visibility=-0.1"),
    ("[modes.size]\nvisibility = 'high'", r"Received: visibility='high'"),
    ("[modes.size]\nvisibility = nan", r"Received: visibility=nan"),
    ("[modes.size]\nvisibility = true", r"Received: visibility=True"),
    ("[modes.size]\nfixed = 10\nvisibility = 0.5", r"`fixed` cannot be combined with `visibility`"),
    ("pixel_spacing_mm = 1e300", r"Invalid value for `pixel_spacing_mm`.*\[0.01, 10\]"),
    ("pixel_spacing_mm = 1e-300", r"Received: pixel_spacing_mm=1e-300"),
    ("image_size = 100000", r"Invalid value for `image_size`.*\[8, 1024\].*100000"),
])
def test_invalid_visibility_and_bounds(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=expected):
        load_spec(path)


@pytest.mark.parametrize("mode", NUMERIC)
def test_numeric_visibility_scales_the_gap_between_the_looks(mode):
    """End by end, the malignant look minus the benign look is scaled by the visibility."""
    spec = load_spec("clinical")
    benign, malignant = np.array(spec.look(mode, 0)), np.array(spec.look(mode, 1))
    half = set_spec_field(spec, f"modes.{mode}.visibility", 0.5)
    gap = np.array(half.look(mode, 1)) - np.array(half.look(mode, 0))
    tolerance = 1.0 if MODES[mode].kind == "count" else 1e-9  # counts are rounded
    np.testing.assert_allclose(gap, 0.5 * (malignant - benign), atol=tolerance)
    mean = (benign + malignant) / 2
    np.testing.assert_allclose(np.array(half.look(mode, 0)), mean - gap / 2, atol=tolerance)
    none = set_spec_field(spec, f"modes.{mode}.visibility", 0.0)
    assert none.look(mode, 0) == none.look(mode, 1)
    low, high = MODES[mode].domain
    for look in (half.look(mode, 0), half.look(mode, 1), none.look(mode, 0)):
        assert low <= look[0] <= look[1] <= high


@pytest.mark.parametrize("mode", NUMERIC)
def test_numeric_visibility_changes_only_its_modes_values(mode):
    """Counterfactual purity at sampling: labels, seeds and every other mode stay."""
    spec = load_spec("clinical")  # every mode varies
    other = set_spec_field(spec, f"modes.{mode}.visibility", 0.0)
    a, b = sample_factors(spec, 200, seed=3), sample_factors(other, 200, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.noise_seeds, b.noise_seeds)
    for m in MODE_NAMES:
        if m != mode:
            np.testing.assert_array_equal(a.values[m], b.values[m])
    assert not np.array_equal(a.values[mode], b.values[mode])
    assert a.visibility == b.visibility  # not a render-level mode


def test_visibility_zero_makes_an_aligned_mode_unpredictive():
    spec = set_spec_field(load_spec("noise_only"), "modes.noise.visibility", 0.0)
    factors = sample_factors(spec, 4000, seed=0)
    noise, labels = factors.values["noise"], factors.labels
    assert abs(noise[labels == 1].mean() - noise[labels == 0].mean()) < 1.0
    full = sample_factors(load_spec("noise_only"), 4000, seed=0)
    assert full.values["noise"][labels == 1].min() > full.values["noise"][labels == 0].max()


def test_sweepable_paths_and_set_get():
    paths = sweepable_paths()
    assert "modes.noise.alignment" in paths and "modes.margin.visibility" in paths
    assert len(paths) == 1 + 2 * len(MODE_NAMES) and len(set(paths)) == len(paths)
    spec = load_spec("clinical")  # no mode pinned
    for path in paths:
        value = 0.25
        new = set_spec_field(spec, path, value)
        assert get_spec_field(new, path) == value
        assert new.name == spec.name and new.ood_companions == spec.ood_companions
        changed = [p for p in paths if get_spec_field(new, p) != get_spec_field(spec, p)]
        assert changed == ([path] if get_spec_field(spec, path) != value else [])
    assert spec == load_spec("clinical")  # the original is untouched


@pytest.mark.parametrize("path, value, match", [
    ("modes.noise.aligment", 0.5, r"Expected a sweepable spec path: malignant_fraction, "
     r"modes.margin.alignment.*Received: path='modes.noise.aligment'"),
    ("modes.colour.alignment", 0.5, r"Received: path='modes.colour.alignment'"),
    (3, 0.5, r"Received: path=3"),
    ("modes.noise.alignment", 1.5, r"with modes.noise.alignment = 1.5.*Invalid value for "
     r"`alignment`. Expected a number in \[-1, 1\]. Received: alignment=1.5"),
    ("modes.margin.visibility", 3, r"Expected a number in \[0, 2\].*Received: visibility=3"),
    ("malignant_fraction", -1, r"Invalid value for `malignant_fraction`"),
])
def test_set_spec_field_errors(path, value, match):
    with pytest.raises(SpecError, match=match):
        set_spec_field(load_spec("margin_noise"), path, value)


def test_set_spec_field_on_a_fixed_mode():
    spec = load_spec("clinical")
    pinned = dataclasses.replace(spec, modes=dict(spec.modes, size=dataclasses.replace(
        spec.modes["size"], fixed=18.0)))
    with pytest.raises(SpecError, match=r"pins mode 'size'.*Remove `fixed`"):
        set_spec_field(pinned, "modes.size.alignment", 0.5)
    with pytest.raises(SpecError, match=r"`fixed` cannot be combined with `visibility`"):
        set_spec_field(pinned, "modes.size.visibility", 0.5)
    assert get_spec_field(pinned, "modes.size.alignment") is None


def test_decorrelated_keeps_everything_but_the_alignments(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text("ood_companions = ['clinical']\n[modes.margin]\nalignment = 1\n"
                    "visibility = 1.5\n[modes.size]\nfixed = 18\n[modes.noise]\nalignment = -0.5\n"
                    "benign = [5, 10]\nvisibility = 0.5\n")
    spec = load_spec(path)
    free = decorrelated(spec)
    assert free.name == "mixed_independent" and free.ood_companions == ()
    for mode in MODE_NAMES:
        assert free.modes[mode] == dataclasses.replace(
            spec.modes[mode], alignment=0.0 if spec.modes[mode].fixed is None else
            spec.modes[mode].alignment)
    assert free.modes["size"].fixed == 18.0 and free.modes["margin"].visibility == 1.5
    assert free.look("noise", 0) == spec.look("noise", 0)
    factors = sample_factors(free, 4000, seed=1)
    for mode in ("margin", "noise"):
        values, labels = factors.values[mode], factors.labels
        assert abs(values[labels == 1].mean() - values[labels == 0].mean()) < 0.1 * values.std()
    assert (factors.values["size"] == 18.0).all()
