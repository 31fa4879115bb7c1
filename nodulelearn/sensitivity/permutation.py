"""Permutation sensitivity: how much a classifier's predictions depend on each mode of variation.

For each mode, the mode's values are permuted across the test samples while the labels, every
other mode and every sample's noise seed stay as they are; the images are re-rendered and the
model predicts again. Rendering is a pure function of (factor values, noise seed), so the new
images differ from the old ones only through the permuted mode: a clean counterfactual.
Samples whose value the permutation happens to leave unchanged (frequent for categorical modes)
get bit-identical images, so their baseline prediction is reused instead of being recomputed.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from nodulelearn.datasets import MODE_NAMES, get_mode, load_spec, sample_factors
from nodulelearn.model_io import check_model
from nodulelearn.sensitivity import intervals, metrics
from nodulelearn.sensitivity.prediction import Predictor

RECORD_METRICS = (*intervals.EFFECTS, "reliance")


def mode_varies(values: np.ndarray) -> bool:
    """Whether a mode takes more than one value in the test set (else permuting it is a no-op)."""
    values = np.asarray(values)
    return values.size > 1 and bool(np.any(values != values[0]))


def permutation_indices(n: int, seed: int, mode: str, repeat: int) -> np.ndarray:
    """The permutation of ``n`` samples used for ``mode`` in ``repeat``: fixed by the seed."""
    rng = np.random.default_rng([seed, MODE_NAMES.index(mode), repeat])
    return rng.permutation(n)


def permuted_predictions(predictor, factors, base_probs, mode, perm) -> tuple[np.ndarray, int]:
    """P(malignant) after permuting ``mode``'s values by ``perm``.

    Only the samples whose value changes are re-rendered and predicted; the others keep their
    baseline prediction (their image is unchanged, bit for bit).

    Returns:
        ``(probs [n], number of samples re-rendered)``.
    """
    old = factors.values[mode]
    new = old[perm]
    changed = np.flatnonzero(new != old)
    probs = np.array(base_probs, dtype=np.float64, copy=True)
    if changed.size:
        counterfactual = factors.replace_values(mode, new).subset(changed)
        probs[changed] = predictor.predict(counterfactual)
    return probs, int(changed.size)


def _record(mode, varies, point, draws_ci, n, repeats) -> dict:
    record = {"mode": mode, "kind": get_mode(mode).kind, "varies": varies}
    for name in RECORD_METRICS:
        low, high = draws_ci.get(name, (None, None))
        record[name] = point.get(name)
        record[f"{name}_ci_low"] = low
        record[f"{name}_ci_high"] = high
    record["n"] = n
    record["repeats"] = repeats
    return record


def _add_reliance(records: list[dict], draws: dict[str, dict]) -> None:
    """Each varying mode's share of the summed mean |dP| over varying modes (point and CI)."""
    varying = [r["mode"] for r in records if r["varies"]]
    if not varying:
        return
    total_point = sum(r["mean_abs_delta_p"] for r in records if r["varies"])
    total_draws = np.sum([draws[m]["mean_abs_delta_p"] for m in varying], axis=0)
    for record in records:
        if not record["varies"]:
            continue
        mode = record["mode"]
        if total_point > 0:
            record["reliance"] = record["mean_abs_delta_p"] / total_point
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(
                total_draws > 0, draws[mode]["mean_abs_delta_p"] / total_draws, np.nan
            )
        record["reliance_ci_low"], record["reliance_ci_high"] = intervals.interval(shares)


def permutation_sensitivity(
    model,
    spec,
    *,
    n: int,
    repeats: int,
    seed: int,
    outputs: str = "probability",
    batch_size: int = 256,
    bootstrap: int = 200,
    modes=None,
    factors=None,
    predictor=None,
) -> dict:
    """Permutation sensitivity of ``model`` to every mode of ``spec``'s test distribution.

    Args:
        model: Keras classifier, images ``[B, H, W, 1]`` -> P(malignant) ``[B, 1]`` (or logits).
        spec: a ``DistributionSpec``, a preset name or a path to a TOML spec.
        n: number of test samples.
        repeats: permutations per mode.
        seed: fixes the test samples, the permutations and the bootstrap.
        outputs: ``"probability"`` or ``"logit"`` (a sigmoid is applied).
        batch_size: images rendered and predicted at once.
        bootstrap: bootstrap draws for the 95% intervals.
        modes: the modes to analyse (default: all eight).
        factors: the test samples, if already drawn (default ``sample_factors(spec, n, seed)``).
        predictor: a ``Predictor`` of ``model`` for ``spec`` to reuse (default: a new one).

    Returns:
        ``{"distribution", "image_size", "n", "repeats", "seed", "outputs",
        "baseline": {accuracy, auc, ...},
        "modes": [record per mode], "images_predicted", "seconds"}``. A record holds ``mode``,
        ``kind``, ``varies`` and, for each of ``delta_accuracy``, ``delta_auc``, ``flip_rate``,
        ``mean_abs_delta_p``, ``reliance``: the value and ``<name>_ci_low`` / ``<name>_ci_high``.
        Effects of a mode that does not vary in the test set are ``None``.
    """
    if repeats < 1 or n < 2:
        raise ValueError(f"Expected n >= 2 and repeats >= 1. Received: n={n}, repeats={repeats}")
    spec = load_spec(spec)  # a preset name, a TOML path (str or Path) or a spec
    modes = tuple(MODE_NAMES if modes is None else modes)
    for mode in modes:
        get_mode(mode)  # raises, listing the valid modes
    check_model(model, spec.image_size)
    started = time.perf_counter()
    if factors is None:
        factors = sample_factors(spec, n, seed)
    n = len(factors)
    if predictor is None:
        predictor = Predictor(
            model,
            image_size=spec.image_size,
            pixel_spacing_mm=spec.pixel_spacing_mm,
            outputs=outputs,
            batch_size=batch_size,
        )
    calls_before = predictor.calls
    base_probs = predictor.predict(factors)
    plan = intervals.bootstrap_plan(n, repeats, bootstrap, seed)
    estimator = intervals.EffectEstimator(factors.labels, base_probs, plan)

    records, draws = [], {}
    for mode in modes:
        varies = mode_varies(factors.values[mode])
        if not varies:
            records.append(_record(mode, False, {}, {}, n, repeats))
            continue
        perm_probs = np.empty((repeats, n))
        for repeat in range(repeats):
            perm = permutation_indices(n, seed, mode, repeat)
            perm_probs[repeat], _ = permuted_predictions(
                predictor, factors, base_probs, mode, perm
            )
        point, draws[mode] = estimator.estimate(perm_probs)
        cis = {name: intervals.interval(values) for name, values in draws[mode].items()}
        records.append(_record(mode, True, point, cis, n, repeats))
        logging.info("permutation of %s: mean |dP| %.4f", mode, point["mean_abs_delta_p"])
    _add_reliance(records, draws)
    return {
        "distribution": spec.name,
        "image_size": spec.image_size,
        "n": n,
        "repeats": repeats,
        "seed": seed,
        "outputs": outputs,
        "baseline": metrics.baseline_metrics(factors.labels, base_probs),
        "modes": records,
        "images_predicted": predictor.calls - calls_before,
        "seconds": time.perf_counter() - started,
    }
