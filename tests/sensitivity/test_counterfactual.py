"""The permutation is a clean counterfactual.

Proof: for a categorical mode, a permutation often hands a sample a value equal to its own
(same category from another sample). Such a sample's re-rendered image must then be
bit-identical to its baseline image, and so must the model's prediction: this holds only if the
analysis re-renders with the *same* noise seed, the *same* values of every other mode, and
rendering is a pure function of them. Re-seeding the noise, shuffling another mode along, or a
renderer whose output depends on the batch would all break it. Samples whose value did change
must get a different image (the permutation does something).
"""

import numpy as np
import pytest

from nodulelearn.datasets import load_spec, sample_factors
from nodulelearn.sensitivity import permutation_sensitivity
from nodulelearn.sensitivity.permutation import permutation_indices, permuted_predictions
from nodulelearn.sensitivity.prediction import BatchedRenderer, Predictor


@pytest.mark.parametrize("mode", ["margin", "calcification"])
def test_unchanged_samples_get_bit_identical_images_and_predictions(spec_path, make_tiny_cnn, mode):
    spec = load_spec(spec_path)
    factors = sample_factors(spec, 64, seed=3)
    model = make_tiny_cnn()
    perm = permutation_indices(len(factors), seed=3, mode=mode, repeat=0)
    counterfactual = factors.replace_values(mode, factors.values[mode][perm])
    same = counterfactual.values[mode] == factors.values[mode]
    assert 0 < same.sum() < len(factors)  # both cases occur

    renderer = BatchedRenderer(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                               fn=lambda images: images, batch_size=64)
    before, after = renderer.apply(factors), renderer.apply(counterfactual)
    np.testing.assert_array_equal(after[same], before[same])
    changed = np.abs(after[~same] - before[~same]).reshape((~same).sum(), -1).max(axis=1)
    assert (changed > 0).all()

    predictor = Predictor(model, image_size=spec.image_size,
                          pixel_spacing_mm=spec.pixel_spacing_mm, batch_size=64)
    p_before, p_after = predictor.predict(factors), predictor.predict(counterfactual)
    np.testing.assert_array_equal(p_after[same], p_before[same])

    # The analysis re-renders only the changed samples; the result equals a full re-render.
    shortcut, rendered = permuted_predictions(predictor, factors, p_before, mode, perm)
    assert rendered == (~same).sum()
    np.testing.assert_allclose(shortcut, p_after, atol=1e-6)


def test_mode_that_does_not_vary_is_reported_as_such(fixed_noise_spec_path, make_tiny_cnn):
    result = permutation_sensitivity(make_tiny_cnn(), fixed_noise_spec_path, n=32, repeats=2,
                                     seed=0, bootstrap=20)
    records = {r["mode"]: r for r in result["modes"]}
    noise = records.pop("noise")
    assert noise["varies"] is False
    for name in ("delta_accuracy", "delta_auc", "flip_rate", "mean_abs_delta_p", "reliance"):
        assert noise[name] is None and noise[f"{name}_ci_low"] is None
    assert all(r["varies"] for r in records.values())
    shares = [r["reliance"] for r in records.values()]
    assert sum(shares) == pytest.approx(1.0)
    assert result["baseline"]["n"] == 32
