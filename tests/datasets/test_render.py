"""Tests of the renderer: contract, purity (counterfactuals, batch independence) and looks."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn.datasets import (
    BatchRenderer,
    load_spec,
    mode_grid,
    render,
    render_factors,
    sample_factors,
    set_spec_field,
    spec_at_image_size,
    spec_from_dict,
)
from nodulelearn.datasets.modes import MODE_NAMES, MODES, RENDER_VISIBILITY_MODES
from nodulelearn.datasets.render import (
    BLUR_RADIUS_PX,
    WINDOW_LEVEL_HU,
    WINDOW_WIDTH_HU,
    nodule_region,
)

SIZE = 32
SPACING = 1.5  # 48 mm field: a 30 mm nodule 12 mm off-centre still mostly fits
B = 8  # one batch size for most tests, so one compiled graph serves them
GEOMETRY = dict(image_size=SIZE, pixel_spacing_mm=SPACING)
TOL = 1e-6  # float rounding; bit-identical on the development machine


def _values(**overrides):
    """``B`` samples of a central, solid, smooth 14 mm nodule; overrides set whole columns."""
    base = dict(
        margin=0.0,
        size=14.0,
        texture=0.0,
        calcification=0.0,
        contrast=40.0,
        position=0.0,
        noise=15.0,
        vessels=3.0,
    )
    base.update(overrides)
    return {m: np.broadcast_to(np.float32(base[m]), (B,)).copy() for m in MODE_NAMES}


def _random_values(seed):
    rng = np.random.default_rng(seed)
    values = {}
    for name, mode in MODES.items():
        low, high = mode.domain
        if mode.kind == "continuous":
            values[name] = rng.uniform(low, high, B).astype(np.float32)
        else:
            values[name] = rng.integers(int(low), int(high) + 1, B).astype(np.float32)
    return values


def _seeds(seed=0):
    return np.random.default_rng(seed).integers(-(2**31), 2**31 - 1, (B, 2)).astype(np.int32)


def _render(values, seeds):
    return render(values, seeds, **GEOMETRY).numpy()


def _region(values, seeds):
    return nodule_region(values, seeds, **GEOMETRY).numpy()


def test_shape_dtype_range():
    images = render(_random_values(0), _seeds(), **GEOMETRY)
    assert images.shape == (B, SIZE, SIZE, 1)
    assert images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    assert float(tf.math.reduce_std(images)) > 0.02  # not a blank image


def test_deterministic_and_same_in_tf_function_and_dataset_map():
    values, seeds = _random_values(1), _seeds(1)
    eager = _render(values, seeds)
    assert np.array_equal(eager, _render(values, seeds))
    in_function = tf.function(lambda v, s: render(v, s, **GEOMETRY))(values, seeds).numpy()
    ds = tf.data.Dataset.from_tensors((values, seeds)).map(lambda v, s: render(v, s, **GEOMETRY))
    in_dataset = ds.get_single_element().numpy()
    np.testing.assert_allclose(in_function, eager, rtol=0, atol=TOL)
    np.testing.assert_allclose(in_dataset, eager, rtol=0, atol=TOL)


def test_first_use_inside_dataset_map_then_eagerly():
    """The compiled renderer is cached per geometry; its first caller may be a tf.data graph."""
    geometry = dict(image_size=24, pixel_spacing_mm=2.0)  # a geometry no other test uses
    values, seeds = _random_values(10), _seeds(10)
    ds = tf.data.Dataset.from_tensors((values, seeds)).map(lambda v, s: render(v, s, **geometry))
    in_dataset = ds.get_single_element().numpy()
    np.testing.assert_allclose(render(values, seeds, **geometry).numpy(), in_dataset, atol=TOL)
    assert nodule_region(values, seeds, **geometry).shape == (B, 24, 24, 1)


def test_sample_renders_the_same_in_any_batch():
    values, seeds = _random_values(2), _seeds(2)
    images = _render(values, seeds)
    order = np.random.default_rng(0).permutation(B)
    shuffled = _render({m: v[order] for m, v in values.items()}, seeds[order])
    np.testing.assert_allclose(shuffled, images[order], rtol=0, atol=TOL)
    # Other neighbours: every other sample replaced by different factors and seeds.
    others, other_seeds = _random_values(3), _seeds(3)
    mixed = {m: np.where(np.arange(B) % 2 == 0, values[m], others[m]) for m in MODE_NAMES}
    mixed_seeds = np.where((np.arange(B) % 2 == 0)[:, None], seeds, other_seeds)
    np.testing.assert_allclose(_render(mixed, mixed_seeds)[::2], images[::2], rtol=0, atol=TOL)
    # A batch of another size.
    small = render({m: v[:3] for m, v in values.items()}, seeds[:3], **GEOMETRY).numpy()
    np.testing.assert_allclose(small, images[:3], rtol=0, atol=TOL)


def test_seed_changes_every_nuisance_but_not_the_modes():
    values = _values()
    a, b = _render(values, _seeds(4)), _render(values, _seeds(5))
    assert np.abs(a - b).mean() > 0.005  # different texture, vessels, noise


# Old and new value of each nodule-local mode, applied to random samples.
NODULE_LOCAL_CHANGES = {
    "margin": [(0, 2), (0, 1), (1, 2)],
    "size": [(6, 24), (20, 10)],
    "texture": [(0, 2), (0, 1), (1, 2)],
    "calcification": [(0, 1)],
    "contrast": [(-200, 120)],
    "position": [(0, 10), (3, 8)],
}


@pytest.mark.parametrize("mode", sorted(NODULE_LOCAL_CHANGES))
def test_nodule_local_mode_changes_only_the_nodule_regions(mode):
    """Counterfactual purity: the difference image lies inside the union of both regions."""
    seeds = _seeds(6)
    for old, new in NODULE_LOCAL_CHANGES[mode]:
        # A fixed seed per case (str hashes change between processes, so hash() is not one).
        values = _random_values(1000 * sorted(NODULE_LOCAL_CHANGES).index(mode) + abs(int(old)))
        before = dict(values, **{mode: np.full(B, old, np.float32)})
        after = dict(values, **{mode: np.full(B, new, np.float32)})
        diff = np.abs(_render(after, seeds) - _render(before, seeds))
        union = _region(before, seeds) | _region(after, seeds)
        assert diff[~union].max(initial=0.0) <= TOL, f"{mode} {old}->{new} leaks outside"
        changed = (diff > 1e-3).reshape(B, -1).any(axis=1)
        assert changed.all(), f"{mode} {old}->{new} left some images unchanged"
        assert union.mean() < 0.9  # the region is a real restriction, not the whole image


def test_noise_mode_scales_a_fixed_noise_field():
    """Changing ``noise`` adds (new - old) x the same field: the rest of the image is unchanged."""
    seeds = _seeds(7)
    images = [_render(_values(noise=sigma), seeds) for sigma in (0.0, 20.0, 40.0)]
    step1, step2 = images[1] - images[0], images[2] - images[1]
    inside = (images[0] > 0.05) & (images[2] < 0.95) & (images[0] < 0.95) & (images[2] > 0.05)
    np.testing.assert_allclose(step1[inside], step2[inside], atol=2e-5)
    # The field has the stated standard deviation in HU (20 HU per step).
    assert step1[inside].std() * WINDOW_WIDTH_HU == pytest.approx(20.0, rel=0.1)


def test_vessels_add_tubes_without_touching_the_rest():
    """More tubes only brighten, tubes are drawn in a fixed order, a solid nodule hides them."""
    values, seeds = _values(size=16.0), _seeds(8)
    images = [_render(dict(values, vessels=np.full(B, k, np.float32)), seeds) for k in range(7)]
    region = _region(values, seeds)
    for fewer, more in zip(images[:-1], images[1:], strict=True):
        assert (more - fewer).min() >= -TOL  # monotone: tubes are added, none moves
    # The solid nodule hides the tubes: its opaque interior (the region less the blur radius,
    # the 1 px edge ramp and the blur again) does not change with the tube count.
    erosion = 2 * BLUR_RADIUS_PX + 1
    outside = tf.constant(~region, tf.float32)
    interior = tf.nn.max_pool2d(outside, 2 * erosion + 1, 1, "SAME").numpy() == 0
    assert interior.any()
    assert np.abs(images[6] - images[0])[interior].max() <= TOL
    assert (np.abs(images[6] - images[0]) > 0.05).mean() > 0.02  # the tubes show


def _inside_mean(images, region):
    return np.array([img[r].mean() for img, r in zip(images, region, strict=True)])


def test_looks_of_the_modes():
    seeds = _seeds(9)
    # Calcification is the brightest thing in the patch (it saturates the window).
    calc = _values(calcification=1.0, contrast=150.0, noise=60.0, vessels=6.0)
    plain = dict(calc, calcification=np.zeros(B, np.float32))
    calc_images, plain_images = _render(calc, seeds), _render(plain, seeds)
    assert np.all(calc_images.reshape(B, -1).max(axis=1) == 1.0)
    assert np.all(plain_images.reshape(B, -1).max(axis=1) < 1.0)
    # Texture: ground glass is faint, part-solid between it and solid.
    region = _region(_values(), seeds)
    means = [_inside_mean(_render(_values(texture=t), seeds), region) for t in (0.0, 1.0, 2.0)]
    assert np.all(means[0] > means[1]) and np.all(means[1] > means[2])
    ground_glass_hu = means[2] * WINDOW_WIDTH_HU + WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2
    assert np.all((ground_glass_hu > -750) & (ground_glass_hu < -450))
    # Contrast: brighter with higher attenuation.
    dim, bright = (_inside_mean(_render(_values(contrast=c), seeds), region) for c in (-200, 120))
    assert np.all(bright - dim > 0.1)
    # Spicules reach well beyond the round outline; lobulation stays close to it.
    areas = [_region(_values(margin=m), seeds).sum(axis=(1, 2, 3)) for m in (0.0, 1.0, 2.0)]
    assert np.all(areas[2] > 1.3 * areas[0])
    assert np.all(np.abs(areas[1] - areas[0]) < 0.5 * areas[0])
    # Size and position move and grow the region as stated.
    small, large = (_region(_values(size=s), seeds).sum(axis=(1, 2, 3)) for s in (6.0, 24.0))
    assert np.all(large > 5 * small)  # (8 + 1.5)^2 / (2 + 1.5)^2 px, with edge and blur
    shifted = _region(_values(position=9.0), seeds)[..., 0]
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    offset_px = [np.hypot(yy[r].mean(), xx[r].mean()) for r in shifted]
    np.testing.assert_allclose(offset_px, 9.0 / SPACING, atol=0.5)


def test_render_factors_matches_render_and_pads_the_last_batch():
    spec = dataclasses.replace(load_spec("clinical"), **GEOMETRY)
    factors = sample_factors(spec, 11, seed=3)
    images = render_factors(factors, spec, batch_size=B)
    assert images.shape == (11, SIZE, SIZE, 1) and images.dtype == np.float32
    direct = _render({m: factors.values[m][:B] for m in MODE_NAMES}, factors.noise_seeds[:B])
    np.testing.assert_allclose(images[:B], direct, rtol=0, atol=TOL)
    alone = render_factors(factors.subset([9]), spec, batch_size=B)
    np.testing.assert_allclose(alone[0], images[9], rtol=0, atol=TOL)


def test_bad_input_is_named():
    values, seeds = _values(), _seeds()
    with pytest.raises(ValueError, match="missing: margin.*Expected modes"):
        render({m: v for m, v in values.items() if m != "margin"}, seeds, **GEOMETRY)
    with pytest.raises(ValueError, match="image_size"):
        render(values, seeds, image_size=4, pixel_spacing_mm=1.0)
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        render(values, seeds, image_size=SIZE, pixel_spacing_mm=0.0)
    with pytest.raises(ValueError, match=r"noise_seeds must have shape \[B, 2\]"):
        render(values, seeds[:, :1], **GEOMETRY)
    with pytest.raises(ValueError, match=r"Invalid value for argument `pixel_spacing_mm`.*1e\+300"):
        render(values, seeds, image_size=SIZE, pixel_spacing_mm=1e300)
    with pytest.raises(ValueError, match=r"Invalid value for argument `pixel_spacing_mm`.*1e-300"):
        render(values, seeds, image_size=SIZE, pixel_spacing_mm=1e-300)
    with pytest.raises(ValueError, match=r"Invalid value for argument `image_size`.*100000"):
        render(values, seeds, image_size=100000, pixel_spacing_mm=1.0)
    with pytest.raises(ValueError, match=r"`visibility`.*margin, texture, calcification"):
        render(values, seeds, visibility={"noise": 0.5}, **GEOMETRY)
    with pytest.raises(ValueError, match=r"`visibility`. Expected 'margin' in \[0, 2\]"):
        render(values, seeds, visibility={"margin": 2.5}, **GEOMETRY)


# --- visibility ------------------------------------------------------------------------------

REFERENCE = Path(__file__).with_name("fixtures") / "render_reference.npz"
REFERENCE_PRESETS = sorted({key.split("/")[0] for key in np.load(REFERENCE).files})


def test_the_reference_holds_the_presets_of_its_time():
    assert len(REFERENCE_PRESETS) == 31 and {"clinical", "margin_size"} <= set(REFERENCE_PRESETS)


@pytest.mark.parametrize("name", REFERENCE_PRESETS)
def test_default_visibility_reproduces_the_reference_renders(name):
    """Renders of every preset made before visibility existed (fixtures/make_render_reference.py,
    with the specs of that time) are reproduced by the default visibility, also when it is
    passed explicitly as 1."""
    reference = np.load(REFERENCE)
    spec = spec_from_dict(json.loads(str(reference[f"{name}/spec"])))
    assert all(m.visibility == 1.0 for m in spec.modes.values())
    spec = spec_at_image_size(spec, SIZE)
    factors = sample_factors(spec, 3, 7)
    np.testing.assert_array_equal(factors.labels, reference[f"{name}/labels"])
    for mode in MODE_NAMES:
        np.testing.assert_array_equal(factors.values[mode], reference[f"{name}/{mode}"])
    images = render_factors(factors, spec, batch_size=3)
    np.testing.assert_allclose(images, reference[f"{name}/images"], rtol=0, atol=TOL)
    ones = {m: 1.0 for m in RENDER_VISIBILITY_MODES}
    explicit = render({m: factors.values[m] for m in MODE_NAMES}, factors.noise_seeds,
                      image_size=SIZE, pixel_spacing_mm=spec.pixel_spacing_mm, visibility=ones)
    np.testing.assert_array_equal(explicit.numpy(), images)


@pytest.mark.parametrize("mode", RENDER_VISIBILITY_MODES)
def test_render_visibility_changes_only_its_modes_pixels(mode):
    """Counterfactual purity of the visibility of margin, texture and calcification: it changes
    pixels only inside the nodule regions, only of samples whose category it acts on, and at 0
    such a sample renders as the benign-looking category does at the default."""
    seeds = _seeds(11)
    plain = 0.0  # smooth, solid, not calcified: the category every visibility leaves alone
    for category in range(1, len(MODES[mode].categories)):
        values = dict(_random_values(20 + category), **{mode: np.full(B, category, np.float32)})
        default = _render(values, seeds)
        for v in (0.0, 2.0 if MODES[mode].visibility_max > 1 else 0.5):
            changed = render(values, seeds, visibility={mode: v}, **GEOMETRY).numpy()
            region = _region(values, seeds) | nodule_region(
                values, seeds, visibility={mode: v}, **GEOMETRY).numpy()
            diff = np.abs(changed - default)
            assert diff[~region].max(initial=0.0) <= TOL, f"{mode}={category} v={v} leaks"
            assert (diff > 1e-3).reshape(B, -1).any(axis=1).all(), f"{mode}={category} v={v}"
        invisible = render(values, seeds, visibility={mode: 0.0}, **GEOMETRY).numpy()
        as_plain = _render(dict(values, **{mode: np.full(B, plain, np.float32)}), seeds)
        np.testing.assert_allclose(invisible, as_plain, rtol=0, atol=1e-5)
    values = dict(_random_values(30), **{mode: np.full(B, plain, np.float32)})
    for v in (0.0, 2.0 if MODES[mode].visibility_max > 1 else 0.5):
        np.testing.assert_array_equal(
            render(values, seeds, visibility={mode: v}, **GEOMETRY).numpy(), _render(values, seeds))


def test_margin_visibility_scales_the_outline_deviation():
    """Spicules reach further as margin visibility grows, and the smooth outline is the floor."""
    seeds = _seeds(12)
    values = _values(margin=2.0, size=12.0)
    areas = [nodule_region(values, seeds, visibility={"margin": v}, **GEOMETRY).numpy().sum()
             for v in (0.0, 1.0, 2.0)]
    assert areas[0] < areas[1] < areas[2]


def test_render_factors_uses_the_factors_visibility():
    spec = dataclasses.replace(load_spec("clinical"), **GEOMETRY)
    spec = set_spec_field(spec, "modes.margin.visibility", 0.0)
    factors = sample_factors(spec, B, seed=4)
    assert factors.visibility == {"margin": 0.0, "texture": 1.0, "calcification": 1.0}
    smooth = factors.replace_values("margin", np.zeros(B, np.float32))
    np.testing.assert_allclose(render_factors(factors, spec, batch_size=B),
                               render_factors(smooth, spec, batch_size=B), rtol=0, atol=1e-5)
    assert factors.subset([0, 1]).visibility == factors.visibility


def test_batch_renderer_pads_to_few_shapes_and_applies_fn():
    spec = dataclasses.replace(load_spec("clinical"), **GEOMETRY)
    factors = sample_factors(spec, 11, seed=3)
    renderer = BatchRenderer.for_spec(spec, batch_size=B)
    assert [renderer.padded_size(k) for k in (1, 3, 8)] == [B, B, B]
    assert [BatchRenderer(batch_size=256, **GEOMETRY).padded_size(k) for k in (1, 65, 200)] == [
        64, 128, 256]
    images = renderer.apply(factors)
    np.testing.assert_array_equal(images, render_factors(factors, spec, batch_size=B))
    means = BatchRenderer.for_spec(spec, batch_size=B, fn=lambda x: tf.reduce_mean(
        x, axis=[1, 2, 3])).apply(factors)
    np.testing.assert_allclose(means, images.mean(axis=(1, 2, 3)), rtol=1e-5)
    assert renderer.apply(factors.subset([])).shape == (0, SIZE, SIZE, 1)
    with pytest.raises(ValueError, match=r"`batch_size`.*Received: batch_size=0"):
        BatchRenderer(batch_size=0, **GEOMETRY)


def test_mode_grid_covers_each_domain():
    assert mode_grid("margin").tolist() == [0.0, 1.0, 2.0]
    assert mode_grid("calcification").tolist() == [0.0, 1.0]
    assert mode_grid("vessels").tolist() == [float(k) for k in range(7)]
    size = mode_grid("size", 6)
    assert size.dtype == np.float32 and len(size) == 6
    assert (size[0], size[-1]) == MODES["size"].domain
    with pytest.raises(ValueError, match="Valid modes"):
        mode_grid("shape")
    with pytest.raises(ValueError, match="`points`"):
        mode_grid("size", 1)
