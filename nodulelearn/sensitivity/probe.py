"""The whole analysis of one model on one distribution (``probe_model``) or several
(``probe_dists``), of a ``bin/train`` run (``probe_run``) and of several runs at once
(``probe_runs``, with a comparison), writing every output file."""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import tensorflow as tf

from nodulelearn.datasets import load_spec, sample_factors, spec_at_image_size
from nodulelearn.sensitivity import comparison, figures, report
from nodulelearn.sensitivity.decodability import decodability
from nodulelearn.sensitivity.model_loading import ModelLoadError, check_input_shape, load_run
from nodulelearn.sensitivity.partial_dependence import partial_dependence
from nodulelearn.sensitivity.permutation import permutation_sensitivity
from nodulelearn.sensitivity.prediction import BatchedRenderer, Predictor
from nodulelearn.sensitivity.saliency import saliency


class _Renderers:
    """Render-and-apply functions of one model (and encoder), one per image geometry.

    Each holds a traced ``tf.function``; reusing them across the distributions of a probe (all
    presets share one geometry) traces the model once instead of once per distribution.
    """

    def __init__(self, model, encoder, outputs: str, batch_size: int):
        self._model, self._encoder = model, encoder
        self._outputs, self._batch_size = outputs, batch_size
        self._cache = {}

    def _get(self, kind: str, spec):
        key = (kind, spec.image_size, spec.pixel_spacing_mm)
        if key not in self._cache:
            geometry = dict(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm,
                            batch_size=self._batch_size)
            if kind == "predictor":
                self._cache[key] = Predictor(self._model, outputs=self._outputs, **geometry)
            elif kind == "encoder":
                encoder = self._encoder
                self._cache[key] = BatchedRenderer(
                    fn=lambda images: encoder(images, training=False), **geometry)
            else:
                self._cache[key] = BatchedRenderer(fn=tf.identity, **geometry)
        return self._cache[key]

    def predictor(self, spec) -> Predictor:
        return self._get("predictor", spec)

    def embeddings(self, spec, factors) -> np.ndarray:
        return self._get("encoder", spec).apply(factors)

    def images(self, spec, factors) -> np.ndarray:
        return self._get("images", spec).apply(factors)


def _saliency_samples(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Positions of the first ``per_class`` benign and first ``per_class`` malignant samples."""
    picks = [np.flatnonzero(labels == label)[:per_class] for label in (0, 1)]
    return np.concatenate(picks)


def probe_model(
    model,
    spec,
    out_dir: str,
    *,
    n: int,
    repeats: int,
    seed: int,
    outputs: str = "probability",
    encoder=None,
    batch_size: int = 256,
    bootstrap: int = 200,
    partial_dependence_n: int = 256,
    saliency_per_class: int = 3,
    label: str | None = None,
) -> dict:
    """Permutation sensitivity, partial dependence, decodability and saliency of one model.

    Writes into ``out_dir``: sensitivity.json/.csv/.png, partial_dependence.json/.png,
    decodability.json (only with an ``encoder``), saliency.png (skipped if
    ``saliency_per_class`` is 0).

    Args:
        model: Keras classifier, images ``[B, H, W, 1]`` -> P(malignant) (or logits).
        spec: ``DistributionSpec``, preset name or TOML path of the test distribution.
        out_dir: output directory (created).
        n, repeats, seed, outputs, batch_size, bootstrap: see ``permutation_sensitivity``.
        encoder: optional Keras model, images -> embeddings ``[B, D]``.
        partial_dependence_n: test samples used per partial-dependence grid point (0: skip).
        saliency_per_class: images per class shown in saliency.png (0: skip).
        label: name of the model in titles.

    Returns:
        The permutation result (as in sensitivity.json) plus ``"table"`` (text) and ``"files"``.
    """
    renderers = _Renderers(model, encoder, outputs, batch_size)
    return _probe_spec(
        model, load_spec(spec), out_dir, renderers, n=n, repeats=repeats, seed=seed,
        outputs=outputs, encoder=encoder, batch_size=batch_size, bootstrap=bootstrap,
        partial_dependence_n=partial_dependence_n, saliency_per_class=saliency_per_class,
        label=label,
    )


def _probe_spec(model, spec, out_dir, renderers, *, n, repeats, seed, outputs, encoder,
                batch_size, bootstrap, partial_dependence_n, saliency_per_class, label) -> dict:
    """``probe_model`` with the render-and-apply functions given (see ``_Renderers``)."""
    check_input_shape(model, spec.image_size)
    factors = sample_factors(spec, n, seed)
    predictor = renderers.predictor(spec)
    result = permutation_sensitivity(
        model, spec, n=n, repeats=repeats, seed=seed, outputs=outputs, batch_size=batch_size,
        bootstrap=bootstrap, factors=factors, predictor=predictor,
    )
    result["model"] = label
    title = f"{label + ': ' if label else ''}permutation sensitivity on {spec.name}"
    files = report.write_sensitivity(out_dir, result)
    files.append(report.save_figure(
        os.path.join(out_dir, report.SENSITIVITY_PNG), figures.sensitivity_figure(result)
    ))
    if partial_dependence_n > 0:
        subset = factors.subset(np.arange(min(n, partial_dependence_n)))
        curves = partial_dependence(predictor, subset)
        files.append(report.write_json(
            os.path.join(out_dir, report.PARTIAL_DEPENDENCE_JSON),
            {"distribution": spec.name, "n": min(n, partial_dependence_n), "modes": curves},
        ))
        files.append(report.save_figure(
            os.path.join(out_dir, report.PARTIAL_DEPENDENCE_PNG),
            figures.partial_dependence_figure(curves, f"Partial dependence on {spec.name}"),
        ))
    if encoder is not None:
        check_input_shape(encoder, spec.image_size)
        embeddings = renderers.embeddings(spec, factors)
        files.append(report.write_json(
            os.path.join(out_dir, report.DECODABILITY_JSON),
            {"distribution": spec.name, "embedding_dim": int(np.prod(embeddings.shape[1:])),
             "modes": decodability(embeddings, factors, seed=seed)},
        ))
    chosen = factors.subset(_saliency_samples(factors.labels, saliency_per_class))
    if len(chosen):
        images = renderers.images(spec, chosen)
        maps = saliency(model, images, chosen.labels, predictor.predict(chosen), outputs=outputs)
        result["saliency_message"] = maps["gradcam_message"]
        files.append(report.save_figure(
            os.path.join(out_dir, report.SALIENCY_PNG),
            figures.saliency_figure(maps, f"Saliency (tf-explain) on {spec.name}"),
        ))
    result["table"] = report.format_table(result, title)
    result["files"] = files
    return result


def _dir_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "distribution"


def probe_dists(
    model,
    dists,
    out_dir: str,
    *,
    n: int,
    repeats: int,
    seed: int,
    outputs: str = "probability",
    encoder=None,
    batch_size: int = 256,
    bootstrap: int = 200,
    partial_dependence_n: int = 256,
    saliency_per_class: int = 3,
    label: str | None = None,
    image_size: int | None = None,
) -> dict[str, dict]:
    """``probe_model`` on each of ``dists``: into ``out_dir`` for one, ``out_dir/<name>/`` else.

    Args:
        model: the Keras classifier.
        dists: preset names, TOML paths or ``DistributionSpec`` objects (at least one).
        out_dir: output directory.
        image_size: render every distribution at this size (see ``spec_at_image_size``);
            default: each distribution's own size.
        Other arguments: see ``probe_model``.

    Returns:
        Distribution name -> the result of ``probe_model``.
    """
    specs = [spec_at_image_size(d, image_size) for d in dists]
    if not specs:
        raise ValueError("Expected at least one test distribution. Received none.")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected test distributions with distinct names. Received: {names}")
    renderers = _Renderers(model, encoder, outputs, batch_size)
    results = {}
    for spec in specs:
        target = out_dir if len(specs) == 1 else os.path.join(out_dir, _dir_name(spec.name))
        logging.info("probing %s on %s -> %s", label, spec.name, target)
        results[spec.name] = _probe_spec(
            model, spec, target, renderers, n=n, repeats=repeats, seed=seed, outputs=outputs,
            encoder=encoder, batch_size=batch_size, bootstrap=bootstrap,
            partial_dependence_n=partial_dependence_n, saliency_per_class=saliency_per_class,
            label=label,
        )
    return results


def probe_run(
    run_dir: str,
    out_dir: str,
    *,
    dists=None,
    n: int,
    repeats: int,
    seed: int,
    unsafe_deserialization: bool = False,
    **options,
) -> dict[str, dict]:
    """The whole ``bin/probe_features`` analysis of one ``bin/train`` run directory.

    Args:
        run_dir: a run directory (model.keras; config.json and encoder.keras if present).
        out_dir: outputs go here directly for one distribution, else into ``out_dir/<dist>/``.
        dists: test distributions (preset names, TOML paths or specs); default: the run's
            ``test_dists`` from config.json. They are rendered at the run's ``image_size``
            (config.json) when it records one, keeping each distribution's field of view.
        n, repeats, seed: see ``permutation_sensitivity``.
        unsafe_deserialization: allow model files to run Python code when loaded.
        **options: passed to ``probe_model`` (outputs, batch_size, bootstrap, ...).

    Returns:
        Distribution name -> the result of ``probe_model``.

    Raises:
        ModelLoadError: missing model, refused file, no distribution to test on.
    """
    run = load_run(run_dir, unsafe_deserialization=unsafe_deserialization)
    dists = list(dists or run.test_dists)
    if not dists:
        raise ModelLoadError(
            f"No test distribution: the run {run_dir!r} has no test_dists in its config.json. "
            "Pass --dist=<preset|path.toml> (library: dists=[...])."
        )
    return probe_dists(run.model, dists, out_dir, n=n, repeats=repeats, seed=seed,
                       encoder=run.encoder, label=run.name,
                       image_size=run.config.get("image_size"), **options)


def probe_runs(run_dirs, out_dir: str, *, comparison_metric: str = "reliance", **kwargs) -> dict:
    """``probe_run`` for several runs (into ``out_dir/<run name>/``) plus their comparison.

    Returns:
        ``{"runs": {run name: {dist: result}}, "files": comparison files}``.
    """
    comparison.comparison_matrix({}, comparison_metric)  # validates the metric before any work
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected run directories with distinct names. Received: {run_dirs}")
    runs, rows = {}, {}
    for name, run_dir in zip(names, run_dirs, strict=True):
        runs[name] = probe_run(run_dir, os.path.join(out_dir, _dir_name(name)), **kwargs)
    dists = {d for per_dist in runs.values() for d in per_dist}
    several = len(dists) > 1 or any(len(per_dist) > 1 for per_dist in runs.values())
    for name, per_dist in runs.items():
        for dist, result in per_dist.items():
            rows[f"{name}:{dist}" if several else name] = result
    return {"runs": runs, "files": comparison.write_comparison(out_dir, rows, comparison_metric)}
