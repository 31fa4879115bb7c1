"""Permutation sensitivity: how much a classifier's predictions depend on each mode of variation.

For each mode, the mode's values are permuted across the test samples while the labels, every
other mode and every sample's noise seed stay as they are; the images are re-rendered and the
model predicts again. Rendering is a pure function of (factor values, noise seed), so the new
images differ from the old ones only through the permuted mode: a clean counterfactual.

The pseudo-mode ``nuisance`` re-renders the same factors with other noise seeds (fresh ones in
every repeat): it measures how much the model depends on what no mode describes (the lung
texture, vessel paths, scanner-noise pattern of each image). Reliance shares are taken over the
modes and ``nuisance`` together, so a model driven by the noise pattern shows it.
Samples whose value the permutation happens to leave unchanged (frequent for categorical modes)
get bit-identical images, so their baseline prediction is reused instead of being recomputed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np

from nodulelearn.datasets import MODE_NAMES, get_mode, load_spec, sample_factors, spec_at_image_size
from nodulelearn.model_adapter import adapter_record, as_adapter
from nodulelearn.model_io import check_model, model_image_size
from nodulelearn.sensitivity import intervals, metrics
from nodulelearn.sensitivity.prediction import Predictor

logger = logging.getLogger(__name__)

RECORD_METRICS = (*intervals.EFFECTS, "reliance")
NUISANCE = "nuisance"
# What the analysis permutes by default: the eight modes, then the noise seeds.
ANALYSED_MODES = (*MODE_NAMES, NUISANCE)


def check_analysed_mode(mode: str) -> None:
    """Raises a ``ValueError`` listing the valid names unless ``mode`` is a mode or nuisance."""
    if mode not in ANALYSED_MODES:
        raise ValueError(f"Unknown mode {mode!r}. Valid modes: {', '.join(ANALYSED_MODES)}.")


def as_keras_model(model, what: str = "model"):
    """``model`` itself if it is a Keras model, the model of a loaded run (``load_run``).

    Raises:
        TypeError: anything else (a path, a SavedModel, ...), saying what to pass instead.
    """
    import keras

    from nodulelearn.run_dir import TrainedRun

    if isinstance(model, TrainedRun):
        return model.model
    if isinstance(model, keras.Model):
        return model
    shown = f" {model!r}" if isinstance(model, (str, os.PathLike)) else ""
    raise TypeError(
        f"Expected {what} to be a Keras model (keras.Model) or a loaded run "
        f"(nodulelearn.load_run(run_dir)). Received: {type(model).__name__}{shown}. Load a .keras "
        "file with nodulelearn.sensitivity.load_keras_model(path), a run directory with "
        "nodulelearn.load_run(path).")


def check_integer(name: str, value, minimum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``.

    Raises:
        TypeError: not an integer; ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Invalid value for argument `{name}`. Expected an integer. Received: "
                        f"{name}={value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"Invalid value for argument `{name}`. Expected an integer >= {minimum}."
                         f" Received: {name}={value!r}")
    return int(value)


def check_spec_argument(spec, name: str = "spec") -> None:
    """Raises a ``TypeError`` unless ``spec`` is a preset name, a TOML path or a spec."""
    from nodulelearn.datasets import DistributionSpec

    if not isinstance(spec, (str, os.PathLike, DistributionSpec)):
        raise TypeError(f"Expected {name} to be a preset name, a .toml path or a "
                        f"DistributionSpec. Received: {type(spec).__name__} {spec!r}"[:300])


def mode_kind(mode: str) -> str:
    """A mode's kind ("categorical", "continuous", "count"), or "nuisance"."""
    return NUISANCE if mode == NUISANCE else get_mode(mode).kind


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


def fresh_noise_seeds(n: int, seed: int, repeat: int) -> np.ndarray:
    """int32 ``[n, 2]`` noise seeds for the ``nuisance`` re-render of ``repeat``: fixed by the seed,
    independent of the test samples' own seeds."""
    rng = np.random.default_rng([seed, 0x1015E, repeat])
    return rng.integers(np.iinfo(np.int32).min, np.iinfo(np.int32).max, size=(n, 2),
                        dtype=np.int64, endpoint=True).astype(np.int32)


def nuisance_predictions(predictor, factors, seed: int, repeat: int) -> np.ndarray:
    """P(malignant) of the same factors rendered with fresh noise seeds (every sample changes)."""
    reseeded = dataclasses.replace(factors, noise_seeds=fresh_noise_seeds(len(factors), seed,
                                                                          repeat))
    return predictor.predict(reseeded)


def _record(mode, varies, point, draws_ci, n, repeats) -> dict:
    record = {"mode": mode, "kind": mode_kind(mode), "varies": varies}
    for name in RECORD_METRICS:
        low, high = draws_ci.get(name, (None, None))
        record[name] = point.get(name)
        record[f"{name}_ci_low"] = low
        record[f"{name}_ci_high"] = high
    record["n"] = n
    record["repeats"] = repeats
    return record


def _add_reliance(records: list[dict], draws: dict[str, dict]) -> None:
    """Each varying mode's share of the summed mean |dP| over the varying modes and ``nuisance``
    (point and CI)."""
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
    adapter=None,
) -> dict:
    """Permutation sensitivity of ``model`` to every mode of ``spec``'s test distribution.

    Args:
        model: Keras classifier (or a loaded run), read through ``adapter``; without one,
            images ``[B, H, W, 1]`` -> P(malignant) ``[B, 1]`` (or logits).
        spec: a ``DistributionSpec``, a preset name or a path to a TOML spec. It is rendered
            at the model's declared input size (``spec_at_image_size``: same field of view),
            as evaluation does, so a 32-pixel model is analysed on any preset.
        n: number of test samples.
        repeats: permutations per mode.
        seed: fixes the test samples, the permutations and the bootstrap.
        outputs: ``"probability"`` or ``"logit"`` (a sigmoid is applied).
        batch_size: images rendered and predicted at once.
        bootstrap: bootstrap draws for the 95% intervals.
        modes: the modes to analyse (default ``ANALYSED_MODES``: all eight, then ``nuisance``).
        factors: the test samples, if already drawn (default ``sample_factors(spec, n, seed)``).
        predictor: a ``Predictor`` of the adapted ``model`` for ``spec`` to reuse (default: a
            new one).
        adapter: a ``nodulelearn.model_adapter.ModelAdapter`` (the model's channels, input
            intensity and outputs); default: our [0, 1] patches and ``outputs``.

    Returns:
        ``{"distribution", "image_size", "n", "repeats", "seed", "outputs", "adapter",
        "baseline": {accuracy, auc, ...},
        "modes": [record per mode], "images_predicted", "seconds"}``. A record holds ``mode``,
        ``kind`` ("nuisance" for the noise seeds), ``varies`` and, for each of ``delta_accuracy``, ``delta_auc``, ``flip_rate``,
        ``mean_abs_delta_p``, ``reliance``: the value and ``<name>_ci_low`` / ``<name>_ci_high``.
        Effects of a mode that does not vary in the test set are ``None``.
    """
    model = as_keras_model(model)
    n, repeats = check_integer("n", n, 2), check_integer("repeats", repeats, 1)
    seed, batch_size = check_integer("seed", seed, 0), check_integer("batch_size", batch_size, 1)
    bootstrap = check_integer("bootstrap", bootstrap, 1)
    if isinstance(modes, str):
        raise TypeError(f"Expected modes to be a list of mode names. Received the string "
                        f"{modes!r}; pass [{modes!r}].")
    check_spec_argument(spec)
    adapter = as_adapter(adapter, outputs)
    record = adapter_record(model, adapter)
    model, outputs = adapter.adapt(model), adapter.output_kind
    # A preset name, a TOML path (str or Path) or a spec, at the model's size.
    spec = spec_at_image_size(load_spec(spec), model_image_size(model))
    modes = tuple(ANALYSED_MODES if modes is None else modes)
    for mode in modes:
        check_analysed_mode(mode)
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
        varies = True if mode == NUISANCE else mode_varies(factors.values[mode])
        if not varies:
            records.append(_record(mode, False, {}, {}, n, repeats))
            continue
        perm_probs = np.empty((repeats, n))
        for repeat in range(repeats):
            if mode == NUISANCE:
                perm_probs[repeat] = nuisance_predictions(predictor, factors, seed, repeat)
                continue
            perm = permutation_indices(n, seed, mode, repeat)
            perm_probs[repeat], _ = permuted_predictions(
                predictor, factors, base_probs, mode, perm
            )
        point, draws[mode] = estimator.estimate(perm_probs)
        cis = {name: intervals.interval(values) for name, values in draws[mode].items()}
        records.append(_record(mode, True, point, cis, n, repeats))
        logger.info("permutation of %s: mean |dP| %.4f", mode, point["mean_abs_delta_p"])
    _add_reliance(records, draws)
    return {
        "distribution": spec.name,
        "image_size": spec.image_size,
        "n": n,
        "repeats": repeats,
        "seed": seed,
        "outputs": record["outputs"],
        "adapter": record,
        "baseline": metrics.baseline_metrics(factors.labels, base_probs),
        "modes": records,
        "images_predicted": predictor.calls - calls_before,
        "seconds": time.perf_counter() - started,
    }
