"""The model-level analyses of a probe: encoding (with its untrained reference and, layer by
layer, its change from initialisation) and recoverability (with the untrained encoder's), each
written to its files. ``probe_dists`` runs them once per model with an encoder.
"""

from __future__ import annotations

import os

import numpy as np

from nodulelearn.datasets import load_spec, sample_factors, spec_at_image_size
from nodulelearn.model_adapter import adapter_record
from nodulelearn.model_io import check_input_shape, model_image_size
from nodulelearn.sensitivity import figures, report
from nodulelearn.sensitivity.encoding import (
    ENCODING_SEED_OFFSET,
    encoding_sample_size,
    measure_encoding,
)
from nodulelearn.sensitivity.layers import (
    ENCODING_LAYERS_CSV,
    ENCODING_LAYERS_PNG,
    LAYER_FIELDS,
    PooledApply,
    layer_encoding,
    layer_rows,
    pooled_model,
    resolve_layers,
)
from nodulelearn.sensitivity.retraining import (
    FIT_N,
    FIT_SEED_OFFSET,
    TEST_SEED_OFFSET,
    recoverability,
)
from nodulelearn.sensitivity.untrained import (
    BASELINE_INITS,
    activations,
    add_change,
    check_inits,
    recoverability_reference,
    sample_images,
)


def _renderers(model, encoder, outputs, batch_size):
    from nodulelearn.sensitivity.probe import _Renderers  # the probe's, shared with it

    return _Renderers(model, encoder, outputs, batch_size)


def embedding_width(encoder, renderers, spec) -> int:
    """``D`` of an encoder ``[B, H, W, 1] -> [B, D]``: declared, else from one rendered image."""
    outputs = getattr(encoder, "outputs", None)
    if outputs and len(outputs) == 1 and all(d is not None for d in outputs[0].shape[1:]):
        return int(np.prod(outputs[0].shape[1:]))
    one = renderers.embeddings(spec, sample_factors(spec, 1, 0))
    return int(np.prod(one.shape[1:]))


def probe_encoding(encoder, spec, out_dir: str, *, seed: int, n: int | None = None,
                   batch_size: int = 256, label: str | None = None, renderers=None,
                   baseline_inits: int = BASELINE_INITS, encoding_layers=None,
                   baseline_cache_dir=None) -> dict:
    """Encoding of every mode on ``spec`` (as given), with its change from the untrained
    reference, written to decodability.json and encoding.png in ``out_dir``; layer by layer to
    encoding_layers.csv / .png.

    Args:
        encoder: Keras model, images -> embeddings ``[B, D]``.
        spec: the distribution to measure on (usually ``encoding_distribution(train_dist)``),
            at the encoder's image size.
        seed: see ``measure_encoding``.
        n: samples (default ``encoding_sample_size(D)``).
        baseline_inits: ``K`` re-initialisations in the untrained reference (0: none).
        encoding_layers: layers read layer by layer (``layers.resolve_layers``); ``None``:
            every pooling layer and the embedding; ``()``: the embedding only, no
            encoding_layers.csv.
        baseline_cache_dir: folder of the reference's on-disk cache (``None``: memory only).

    Returns:
        The content of decodability.json (see ``measure_encoding``; each record with
        ``untrained.CHANGE_FIELDS``), plus ``"model"``, ``"baseline_inits"``, ``"baseline"``
        (how the reference and the interval are made) and ``"layers"`` (the rows of
        encoding_layers.csv, ``[]`` without them).
    """
    spec = spec_at_image_size(load_spec(spec), model_image_size(encoder))
    check_input_shape(encoder, spec.image_size)
    inits = check_inits(baseline_inits)
    renderers = renderers or _renderers(None, encoder, "probability", batch_size)
    width = embedding_width(encoder, renderers, spec)
    wanted = read_layers(encoder, encoding_layers, inits)
    if not wanted:
        result = measure_encoding(lambda f: renderers.embeddings(spec, f), spec, seed=seed,
                                  embedding_dim=width, n=n)
        reference, by_layer = None, {}
    else:  # one rendered sample for every layer and every init
        size = encoding_sample_size(width) if n is None else int(n)
        factors = sample_factors(spec, size, seed + ENCODING_SEED_OFFSET)
        images = sample_images(spec, factors, lambda: renderers.images(spec, factors))
        # With a reference, through the architecture's host clone (traced once per process).
        pooled = activations(encoder, wanted, images, encoder.get_weights(), batch_size) \
            if inits else PooledApply(pooled_model(encoder, wanted), batch_size)(images)
        result = measure_encoding(lambda f: pooled[-1], spec, seed=seed, embedding_dim=width,
                                  n=size)
        by_layer, reference = layer_encoding(
            encoder, spec, factors, images, seed=seed, layers=wanted, inits=inits,
            pooled=pooled, known={wanted[-1]: result["modes"]}, batch_size=batch_size,
            cache_dir=baseline_cache_dir)
    if not by_layer:
        add_change(result["modes"], None)
    result["model"] = label
    result["adapter"] = adapter_record(encoder)
    result["baseline_inits"] = inits
    result["baseline"] = BASELINE_DESCRIPTION if inits else None
    result["baseline_seconds"] = reference.get("seconds") if reference else None
    asked = encoding_layers is None or len(encoding_layers) > 0
    result["layers"] = layer_rows(by_layer) if asked and by_layer else []
    report.write_json(os.path.join(out_dir, report.DECODABILITY_JSON), result)
    title = f"{label + ': ' if label else ''}encoding on {spec.name}"
    report.save_figure(os.path.join(out_dir, report.ENCODING_PNG),
                       figures.encoding_figure(result, title))
    if result["layers"]:
        report.write_csv(os.path.join(out_dir, ENCODING_LAYERS_CSV), result["layers"],
                         list(LAYER_FIELDS))
        report.save_figure(os.path.join(out_dir, ENCODING_LAYERS_PNG),
                           figures.encoding_layers_figure(result["layers"], title + ", by layer"))
    return result


BASELINE_DESCRIPTION = (
    "untrained reference: the same architecture re-initialised K times with its layers' own "
    "initialisers, same sample, folds and read-out; change = normalized - mean over inits; "
    "interval: t prediction interval (K - 1 df) from the inits' spread, plus the trained score's "
    "bootstrap variance, Bonferroni over the varying modes (95% jointly)")


def read_layers(encoder, names, inits: int) -> list[str]:
    """The layers to read: ``resolve_layers`` (the embedding last); ``[]`` where neither the
    reference nor layers are asked for. An encoder that is not a functional model is read at its
    output only, and gets a reference only if it can be cloned."""
    if names == () or names == []:
        return resolve_layers(encoder)[-1:] if inits else []
    wanted = resolve_layers(encoder, names)
    output = resolve_layers(encoder)[-1]
    return [name for name in wanted if name != output] + [output]


def probe_recoverability(model, encoder, dists, out_dir: str, *, seed: int, n_test: int,
                         n_fit: int = FIT_N, outputs: str = "probability",
                         batch_size: int = 256, label: str | None = None,
                         renderers=None, baseline_inits: int = BASELINE_INITS,
                         baseline_cache_dir=None) -> list[dict]:
    """Recoverability (last-layer retraining) on each of ``dists``, written to
    recoverability.json / .csv in ``out_dir``; with ``baseline_inits`` (``K``) the same refit
    on ``K`` re-initialisations of the encoder (``untrained.recoverability_reference``).

    Returns:
        One record per distribution (see ``recoverability``).
    """
    inits = check_inits(baseline_inits)
    renderers = renderers or _renderers(model, encoder, outputs, batch_size)
    size = model_image_size(model)
    records = []
    for dist in dists:
        spec = spec_at_image_size(load_spec(dist), size)
        check_input_shape(encoder, spec.image_size)
        predictor = renderers.predictor(spec)
        baseline = None
        if inits:  # the same fitting and test samples as ``recoverability`` draws
            baseline = recoverability_reference(
                encoder, spec, sample_factors(spec, n_fit, seed + FIT_SEED_OFFSET),
                sample_factors(spec, n_test, seed + TEST_SEED_OFFSET),
                lambda f, spec=spec: renderers.images(spec, f), inits=inits, seed=seed,
                batch_size=batch_size, cache_dir=baseline_cache_dir)
        records.append(recoverability(
            predictor.predict, lambda f, spec=spec: renderers.embeddings(spec, f), spec,
            seed=seed, n_test=n_test, n_fit=n_fit, baseline_accuracies=baseline,
        ))
    report.write_recoverability(out_dir, {
        "model": label, "adapter": adapter_record(model), "seed": seed, "n_fit": n_fit,
        "n_test": n_test,
        "baseline_inits": inits,
        "intervals": "accuracy: Wilson 95%; AUC: DeLong 95%; gain: paired percentile "
                     "bootstrap 95%; gain over baseline: t prediction interval from the "
                     "untrained inits' spread plus the binomial error, 95%",
        "records": records,
    })
    return records
