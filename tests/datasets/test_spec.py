"""Distribution specs: presets, TOML keys, round trips and clear errors."""

import json

import pytest

from nodulelearn.datasets import (
    MODE_NAMES,
    DistributionSpec,
    ModeSpec,
    SpecError,
    load_spec,
    preset_names,
    sample_factors,
    spec_from_dict,
)

TRAINING_PRESETS = ["clinical", "margin_size", "margin_noise", "margin_position", "texture_contrast"]


def write_toml(tmp_path, text, name="custom.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_round_trips_and_samples(name):
    spec = load_spec(name)
    assert spec.name == name
    assert set(spec.modes) == set(MODE_NAMES)
    assert spec.description
    as_json = json.loads(json.dumps(spec.to_dict()))
    assert spec_from_dict(as_json) == spec
    for companion in spec.ood_companions:
        assert companion in preset_names()
    factors = sample_factors(spec, 64, seed=0)
    assert len(factors) == 64


def test_expected_presets_exist_with_their_ood_companions():
    names = preset_names()
    for mode in ("margin", "size", "texture", "calcification", "contrast", "noise", "vessels"):
        only = load_spec(f"{mode}_only")
        assert only.modes[mode].alignment == 1.0
        assert all(only.modes[m].alignment == 0.0 for m in MODE_NAMES if m != mode)
    for name in TRAINING_PRESETS:
        assert load_spec(name).ood_companions, name
    spec = load_spec("margin_size")
    assert spec.modes["margin"].alignment == spec.modes["size"].alignment == 1.0
    assert set(spec.ood_companions) == {
        "margin_size_decorrelated", "margin_size_reversed",
        "size_margin_decorrelated", "size_margin_reversed"}
    reversed_ = load_spec("margin_size_reversed")
    assert (reversed_.modes["margin"].alignment, reversed_.modes["size"].alignment) == (1.0, -1.0)
    decorrelated = load_spec("size_margin_decorrelated")
    assert (decorrelated.modes["size"].alignment, decorrelated.modes["margin"].alignment) == (
        1.0, 0.0)
    assert "unpredictive" in names


def test_defaults_and_patch_coverage():
    spec = spec_from_dict({"name": "d"})
    assert spec.image_size == 64 and spec.malignant_fraction == 0.5
    assert 44.0 <= spec.image_size * spec.pixel_spacing_mm <= 52.0
    assert all(m == ModeSpec() for m in spec.modes.values())
    assert spec == DistributionSpec(name="d")


def test_toml_file_with_every_key(tmp_path):
    path = write_toml(tmp_path, """
name = "mine"
description = "test"
image_size = 32
pixel_spacing_mm = 1.5
malignant_fraction = 0.25
ood_companions = ["clinical"]
[modes.margin]
alignment = -0.5
[modes.texture]
fixed = "ground_glass"
[modes.vessels]
fixed = 3
[modes.size]
malignant = [20, 28.5]
[modes.calcification]
alignment = 1
benign = ["none", "calcified"]
""")
    spec = load_spec(path)
    assert (spec.name, spec.image_size, spec.pixel_spacing_mm) == ("mine", 32, 1.5)
    assert spec.malignant_fraction == 0.25 and spec.ood_companions == ("clinical",)
    assert spec.modes["margin"] == ModeSpec(alignment=-0.5)
    assert spec.modes["texture"].fixed == 2.0
    assert spec.modes["vessels"].fixed == 3.0
    assert spec.modes["size"].malignant == (20.0, 28.5)
    assert spec.look("size", 1) == (20.0, 28.5) and spec.look("size", 0) == (4.0, 10.0)
    assert spec.look("calcification", 0) == (0.0, 1.0)
    assert spec_from_dict(spec.to_dict()) == spec
    assert load_spec(str(path)) == spec


@pytest.mark.parametrize(
    "text, expected",
    [
        ("colour = 1", r"unknown top-level key 'colour'.*Valid keys: name"),
        ("[modes.shape]\nalignment = 1", r"unknown mode 'shape'.*Valid modes: margin, size"),
        ("[modes.margin]\nalignment = 1.5", r"alignment.*Expected a number in \[-1, 1\].*1.5"),
        ("[modes.margin]\nalignment = -1.01", r"Expected a number in \[-1, 1\]"),
        ("[modes.margin]\nalignment = 'high'", r"expected a finite number.*'high'"),
        ("[modes.margin]\nfixed = 'smooth'\nalignment = 0.5", r"`fixed` cannot be combined"),
        ("[modes.margin]\nfixed = 'jagged'", r"unknown category 'jagged'.*smooth, lobulated, spic"),
        ("[modes.texture]\nmalignant = ['solid', 'fuzzy']", r"Valid categories: solid, part_"),
        ("[modes.size]\nfixed = 100", r"outside the domain of mode 'size'.*\[4, 30\] mm"),
        ("[modes.size]\nbenign = [12, 5]", r"low <= high"),
        ("[modes.size]\nbenign = [5]", r"expected \[low, high\]"),
        ("[modes.vessels]\nfixed = 2.5", r"is a count. Expected an integer"),
        ("[modes.margin]\nweight = 2", r"unknown key 'weight'.*alignment, fixed"),
        ("image_size = 0", r"image_size.*Expected an integer"),
        ("malignant_fraction = 1.5", r"malignant_fraction.*\[0, 1\]"),
        ("pixel_spacing_mm = -1", r"pixel_spacing_mm.*positive"),
        ("ood_companions = ['nowhere']", r"unknown preset 'nowhere'.*Known presets: .*clinical"),
    ],
)
def test_invalid_specs_raise_clear_errors(tmp_path, text, expected):
    path = write_toml(tmp_path, text)
    with pytest.raises(SpecError, match=expected):
        load_spec(path)


def test_unknown_preset_lists_known_presets():
    with pytest.raises(SpecError, match=r"Unknown distribution preset 'clinicl'.*clinical"):
        load_spec("clinicl")
    with pytest.raises(ValueError, match="does not exist"):
        load_spec("no/such/file.toml")


def test_malformed_toml_names_file_and_line(tmp_path):
    path = write_toml(tmp_path, 'name = "x"\n\n[modes.margin\nalignment = 1\n', name="broken.toml")
    with pytest.raises(SpecError, match=r"broken\.toml.*line 3"):
        load_spec(path)
