"""The whole analysis of one model on one distribution (``probe_model``) or several
(``probe_dists``), of a ``bin/train`` run (``probe_run``) and of several runs at once
(``probe_runs``, with a comparison), writing every output file.

Per test distribution: reliance (permutation sensitivity), partial dependence, saliency. Per
model with an encoder, once: encoding (``decodability.json``, on the decorrelated training
distribution by default) and recoverability (``recoverability.json``, on the OOD test sets by
default).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf

from nodulelearn import run_dir as run_layout
from nodulelearn.datasets import load_spec, sample_factors, spec_at_image_size
from nodulelearn.model_adapter import as_adapter
from nodulelearn.model_io import check_input_shape, model_image_size
from nodulelearn.sensitivity import comparison, figures, report
from nodulelearn.sensitivity.dependence import partial_dependence
from nodulelearn.sensitivity.encoding import encoding_distribution
from nodulelearn.sensitivity.model_loading import ModelLoadError, load_run
from nodulelearn.sensitivity.model_probe import (
    probe_encoding,
    probe_recoverability,
    read_layers,
)
from nodulelearn.sensitivity.permutation import permutation_sensitivity
from nodulelearn.sensitivity.prediction import BatchedRenderer, Predictor
from nodulelearn.sensitivity.retraining import FIT_N
from nodulelearn.sensitivity.saliency_maps import saliency
from nodulelearn.sensitivity.untrained import BASELINE_INITS, check_inits

logger = logging.getLogger(__name__)

# Where a study keeps each run's bin/train directory: <study --out>/runs/<run id>/train
# (nodulelearn/study/runner.py writes it).
STUDY_RUNS = "runs"
STUDY_TRAIN = "train"


class ProbeResults(dict):
    """Test distribution name -> the result of ``probe_model`` on it, plus the model-level
    results: ``encoding`` (the content of decodability.json, or ``None`` without an encoder)
    and ``recoverability`` (its records, or ``None``)."""

    encoding: dict | None = None
    recoverability: list[dict] | None = None

    def to_frame(self):
        """Reliance records of every distribution as one ``pandas.DataFrame``."""
        from nodulelearn.sensitivity.frames import to_dataframe

        return to_dataframe(dict(self))


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
    **model_level,
) -> dict:
    """Reliance, partial dependence and saliency of one model on one distribution; with an
    ``encoder`` also its encoding and recoverability (see ``probe_dists``).

    Writes into ``out_dir``: sensitivity.json/.csv/.png, partial_dependence.json/.png,
    saliency.png (skipped if ``saliency_per_class`` is 0); with an encoder decodability.json,
    encoding.png and, with ``recover_dists``, recoverability.json/.csv.

    Args:
        model: Keras classifier, images ``[B, H, W, 1]`` -> P(malignant) (or logits).
        spec: ``DistributionSpec``, preset name or TOML path of the test distribution.
        out_dir: output directory (created).
        n, repeats, seed, outputs, batch_size, bootstrap: see ``permutation_sensitivity``.
        encoder: optional Keras model, images -> embeddings ``[B, D]``.
        partial_dependence_n: test samples used per partial-dependence grid point (0: skip).
        saliency_per_class: images per class shown in saliency.png (0: skip).
        label: name of the model in titles.
        **model_level: ``encoding_dist``, ``train_dist``, ``encoding_n``, ``recover_dists``,
            ``recover_n`` of ``probe_dists``.

    Returns:
        The permutation result (as in sensitivity.json) plus ``"table"`` (text) and ``"files"``.
    """
    results = probe_dists(
        model, [spec], out_dir, n=n, repeats=repeats, seed=seed, outputs=outputs,
        encoder=encoder, batch_size=batch_size, bootstrap=bootstrap,
        partial_dependence_n=partial_dependence_n, saliency_per_class=saliency_per_class,
        label=label, **model_level,
    )
    return next(iter(results.values()))


def _probe_spec(model, spec, out_dir, renderers, *, n, repeats, seed, outputs, batch_size,
                bootstrap, partial_dependence_n, saliency_per_class, label) -> dict:
    """Reliance, partial dependence and saliency on one distribution (see ``_Renderers``)."""
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
            {"distribution": spec.name, "adapter": result["adapter"],
             "n": min(n, partial_dependence_n), "modes": curves},
        ))
        files.append(report.save_figure(
            os.path.join(out_dir, report.PARTIAL_DEPENDENCE_PNG),
            figures.partial_dependence_figure(curves, f"Partial dependence on {spec.name}"),
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
    adapter=None,
    train_dist=None,
    encoding_dist=None,
    encoding_n: int | None = None,
    recover_dists=(),
    recover_n: int = FIT_N,
    baseline_inits: int = BASELINE_INITS,
    encoding_layers=None,
    baseline_cache_dir=None,
) -> ProbeResults:
    """``probe_model`` on each of ``dists`` (into ``out_dir`` for one, ``out_dir/<name>/``
    else), then, with an ``encoder``, encoding and recoverability into ``out_dir``.

    Args:
        model: the Keras classifier.
        dists: preset names, TOML paths or ``DistributionSpec`` objects (at least one).
        out_dir: output directory.
        image_size: render every distribution at this size (see ``spec_at_image_size``);
            default: the model's declared input size, else each distribution's own size.
        train_dist: the model's training distribution; encoding is measured on its
            decorrelated version (``encoding_distribution``) unless ``encoding_dist`` is given.
            Default: the first of ``dists``.
        encoding_dist: the distribution to measure encoding on, as given (no decorrelation).
        encoding_n: encoding samples (default ``encoding_sample_size(D)``).
        adapter: a ``nodulelearn.model_adapter.ModelAdapter`` for a model (and encoder) that
            takes other channels or intensities, or outputs a softmax (replaces ``outputs``).
        recover_dists: distributions for recoverability (none: skipped).
        recover_n: labelled samples the head is refitted on; ``n`` more test it.
        baseline_inits, encoding_layers, baseline_cache_dir: the untrained reference and the
            layer-wise encoding (see ``probe_encoding``; ``baseline_inits`` also for
            recoverability).
        Other arguments: see ``probe_model``.

    Returns:
        A ``ProbeResults``: distribution name -> result, with ``.encoding`` and
        ``.recoverability``.

    Raises:
        ValueError: no distribution, duplicate names, encoding or recoverability asked for
            without an encoder.
    """
    # From here on the model (and encoder) take our [0, 1] patches and output one column.
    adapter = as_adapter(adapter, outputs)
    model, outputs = adapter.adapt(model), adapter.output_kind
    encoder = None if encoder is None else adapter.adapt_encoder(encoder)
    size = image_size if image_size is not None else model_image_size(model)
    specs = [spec_at_image_size(d, size) for d in dists]
    if not specs:
        raise ValueError("Expected at least one test distribution. Received none.")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Expected test distributions with distinct names. Received: {names}")
    recover_dists = list(recover_dists or ())
    if encoder is None and (encoding_dist is not None or recover_dists):
        raise ModelLoadError(
            "Encoding and recoverability need the model's encoder (images -> embeddings): pass "
            "--encoder=E.keras (library: encoder=...), or a run directory with encoder.keras."
        )
    if encoder is not None:  # check the model-level inputs before the long part
        encoding_spec = (spec_at_image_size(encoding_dist, size) if encoding_dist is not None
                         else encoding_distribution(spec_at_image_size(train_dist or specs[0],
                                                                       size)))
        for spec in [encoding_spec, *(spec_at_image_size(d, size) for d in recover_dists)]:
            check_input_shape(encoder, spec.image_size)
        read_layers(encoder, encoding_layers, check_inits(baseline_inits))
    renderers = _Renderers(model, encoder, outputs, batch_size)
    results = ProbeResults()
    for spec in specs:
        target = out_dir if len(specs) == 1 else os.path.join(out_dir, _dir_name(spec.name))
        logger.info("probing %s on %s -> %s", label, spec.name, target)
        results[spec.name] = _probe_spec(
            model, spec, target, renderers, n=n, repeats=repeats, seed=seed, outputs=outputs,
            batch_size=batch_size, bootstrap=bootstrap,
            partial_dependence_n=partial_dependence_n, saliency_per_class=saliency_per_class,
            label=label,
        )
    if encoder is not None:
        logger.info("encoding of %s on %s", label, encoding_spec.name)
        results.encoding = probe_encoding(
            encoder, encoding_spec, out_dir, seed=seed, n=encoding_n, label=label,
            renderers=renderers, baseline_inits=baseline_inits, encoding_layers=encoding_layers,
            baseline_cache_dir=baseline_cache_dir)
        if recover_dists:
            results.recoverability = probe_recoverability(
                model, encoder, [spec_at_image_size(d, size) for d in recover_dists], out_dir,
                seed=seed, n_test=n, n_fit=recover_n, outputs=outputs, label=label,
                renderers=renderers, baseline_inits=baseline_inits,
                baseline_cache_dir=baseline_cache_dir)
    return results


def ood_dists(run) -> list[str]:
    """A run's test distributions other than its training distribution (by name)."""
    train = run.config.get("train_dist")
    train_name = load_spec(train).name if train else None
    return [d for d in run.test_dists if load_spec(d).name != train_name]


def probe_run(
    run_dir: str,
    out_dir: str,
    *,
    dists=None,
    n: int,
    repeats: int,
    seed: int,
    unsafe_deserialization: bool = False,
    recover_dists=None,
    label: str | None = None,
    **options,
) -> ProbeResults:
    """The whole ``bin/probe_features`` analysis of one ``bin/train`` run directory.

    Args:
        run_dir: a run directory (model.keras; config.json and encoder.keras if present).
        out_dir: outputs go here directly for one distribution, else into ``out_dir/<dist>/``;
            decodability.json and recoverability.json go into ``out_dir``.
        dists: test distributions (preset names, TOML paths or specs); default: the run's
            ``test_dists`` from config.json. They are rendered at the run's ``image_size``
            (config.json) when it records one, keeping each distribution's field of view.
        n, repeats, seed: see ``permutation_sensitivity``.
        unsafe_deserialization: allow model files to run Python code when loaded.
        recover_dists: distributions for recoverability; default: the run's OOD test sets
            (its test_dists other than train_dist); ``[]`` skips it.
        label: the run's name in titles (default: the directory's base name).
        **options: passed to ``probe_dists`` (outputs, batch_size, bootstrap, encoding_dist,
            encoding_n, recover_n, ...). Encoding defaults to the decorrelated version of the
            run's train_dist.

    Returns:
        A ``ProbeResults`` (see ``probe_dists``).

    Raises:
        ModelLoadError: missing model, refused file, no distribution to test on.
    """
    run = load_run(run_dir, unsafe_deserialization=unsafe_deserialization)
    dists = list(dists or run.test_dists)
    if not dists:
        config_path = os.path.join(os.fspath(run_dir), run_layout.CONFIG)
        # A deleted config.json reads as an empty one: name the missing file, not a missing key.
        where = (f"has no test_dists in its {run_layout.CONFIG}" if os.path.isfile(config_path)
                 else f"has no {run_layout.CONFIG} (deleted or never written), so no test_dists")
        raise ModelLoadError(
            f"No test distribution: the run {os.fspath(run_dir)!r} {where}. "
            "Pass --dist=<preset|path.toml> (library: dists=[...])."
        )
    if recover_dists is None:
        recover_dists = ood_dists(run) if run.encoder is not None else []
    options.setdefault("train_dist", run.config.get("train_dist"))
    return probe_dists(run.model, dists, out_dir, n=n, repeats=repeats, seed=seed,
                       encoder=run.encoder, label=label or run.name,
                       image_size=run.config.get("image_size"), recover_dists=recover_dists,
                       **options)


def run_labels(run_dirs) -> list[str]:
    """A unique, readable label per run directory: its base name; where base names clash (every
    run of a study is ``runs/<id>/train``) its parent's name (the run id); where those clash
    too, the shortest distinguishing tail of the path.

    Raises:
        ValueError: the same directory twice.
    """
    paths = [Path(os.path.abspath(d)) for d in run_dirs]
    if len(set(paths)) != len(paths):
        raise ValueError(f"Expected distinct run directories. Received: {list(run_dirs)}")
    labels = [p.name for p in paths]
    if len(set(labels)) != len(labels):
        labels = [p.parent.name for p in paths]
    depth = 2
    while len(set(labels)) != len(labels):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        depth += 1
    return labels


def study_run_dirs(study_dir: str, run_ids=None) -> dict[str, str]:
    """Run id -> training directory of a study's finished runs (``<study_dir>/runs/<id>/train``).

    Args:
        study_dir: a study's ``--out``.
        run_ids: the runs to take (default: every run whose training is finished).

    Raises:
        ModelLoadError: not a study directory, or an unknown or unfinished run id (the message
            lists the valid ones).
    """
    runs = Path(study_dir) / STUDY_RUNS
    if not runs.is_dir():
        raise ModelLoadError(f"Not a study directory: {str(study_dir)!r} has no {STUDY_RUNS}/ "
                             "folder. Pass a study's --out.")
    finished = sorted(d.name for d in runs.iterdir()
                      if (d / STUDY_TRAIN / run_layout.MODEL).is_file())
    if run_ids is None:
        if not finished:
            raise ModelLoadError(f"The study {str(study_dir)!r} has no finished run yet.")
        run_ids = finished
    unknown = [r for r in run_ids if r not in finished]
    if unknown:
        raise ModelLoadError(
            f"Unknown or unfinished run id(s) {', '.join(unknown)} in the study "
            f"{str(study_dir)!r}. Finished runs: {', '.join(finished) or 'none'}."
        )
    if len(set(run_ids)) != len(run_ids):
        raise ModelLoadError(f"Expected distinct run ids. Received: {', '.join(run_ids)}")
    return {r: str(runs / r / STUDY_TRAIN) for r in run_ids}


def probe_runs(run_dirs, out_dir: str, *, comparison_metric: str = "reliance",
               labels=None, **kwargs) -> dict:
    """``probe_run`` for several runs (into ``out_dir/<label>/``) plus their comparison.

    Args:
        run_dirs: run directories, or a dict label -> run directory (``study_run_dirs``).
        labels: the runs' names (default ``run_labels(run_dirs)``).

    Returns:
        ``{"runs": {label: ProbeResults}, "files": comparison files}``.
    """
    comparison.comparison_matrix({}, comparison_metric)  # validates the metric before any work
    if isinstance(run_dirs, dict):
        labels, run_dirs = list(run_dirs), list(run_dirs.values())
    run_dirs = list(run_dirs)
    labels = run_labels(run_dirs) if labels is None else list(labels)
    if len(set(labels)) != len(labels) or len(labels) != len(run_dirs):
        raise ValueError(f"Expected one distinct label per run. Received: {labels}")
    runs, rows = {}, {}
    for name, run_dir in zip(labels, run_dirs, strict=True):
        runs[name] = probe_run(run_dir, os.path.join(out_dir, _dir_name(name)), label=name,
                               **kwargs)
    dists = {d for per_dist in runs.values() for d in per_dist}
    several = len(dists) > 1 or any(len(per_dist) > 1 for per_dist in runs.values())
    for name, per_dist in runs.items():
        for dist, result in per_dist.items():
            rows[f"{name}:{dist}" if several else name] = result
    files = comparison.write_comparison(out_dir, rows, comparison_metric)
    encodings = {name: r.encoding for name, r in runs.items() if r.encoding is not None}
    if encodings:
        files += comparison.write_encoding_comparison(out_dir, encodings)
    return {"runs": runs, "files": files}
