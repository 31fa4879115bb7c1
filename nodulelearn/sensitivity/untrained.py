"""The untrained reference: what the same architecture, re-initialised, already encodes.

A randomly initialised CNN already makes most modes linearly readable, so what training did is
the trained score minus that of the same architecture re-initialised with its layers' own
initialisers (``keras.models.clone_model``; every random initialiser seeded, init ``k`` of
``K`` from ``init_seed(k)``), measured with the same read-out on the same sample and folds.

The reference depends only on the architecture, the image geometry, what the distribution
samples, ``K`` and the read-out settings (sample size, seed, folds, modes, layers), not on the
trained weights: it is cached in memory (per process) and, with ``cache_dir``, on disk
(``untrained_<key>.json``), so a study computes it once per encoding distribution and encoder
config (training distributions that differ only in which modes predict the label share one).
The change of each mode and its verdict follow from ``intervals.change_interval``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time

import numpy as np

from nodulelearn.atomic_files import write_json_atomic
from nodulelearn.sensitivity.intervals import LEVEL, change_interval

logger = logging.getLogger(__name__)

BASELINE_INITS = 5
#: Bootstrap draws of a baseline read-out: only its point score is used, which the draws do not
#: change; 10 is decodability's minimum.
_BASELINE_BOOTSTRAP = 10
_MEMORY: dict[str, dict] = {}
_MEMORY_LIMIT = 64

#: Fields added to each encoding record (``None`` where the mode does not vary or the reference
#: is off).
CHANGE_FIELDS = ("baseline_normalized", "baseline_normalized_sd", "change", "change_ci_low",
                 "change_ci_high", "verdict")


def check_inits(inits: int) -> int:
    """``inits`` as an int: 0 (no reference) or at least 2 (the interval needs their spread)."""
    if isinstance(inits, bool) or not isinstance(inits, (int, np.integer)) or inits < 0 or \
            inits == 1:
        raise ValueError("Expected baseline_inits to be 0 (no untrained reference) or at least 2 "
                         f"(the interval needs the spread between inits). Received: {inits!r}")
    return int(inits)


def init_seed(k: int, layer: int = 0) -> int:
    """Seed of the initialisers of layer number ``layer`` in init ``k`` of the reference."""
    return int(np.random.SeedSequence([0x1417, int(k), int(layer)]).generate_state(1)[0] >> 1)


def reinitialized(model, k: int):
    """``model``'s architecture with fresh weights from its layers' own initialisers, init ``k``.

    Every initialiser that takes a seed gets ``init_seed(k, i)`` (``i``: the layer's order in the
    clone), so init ``k`` is the same network in every process. Nested models are cloned too.
    """
    import keras

    counter = iter(range(1 << 30))

    def clone(layer):
        config = layer.get_config()
        index = next(counter)
        for key, value in config.items():
            if key.endswith("_initializer") and isinstance(value, dict) and \
                    "seed" in value.get("config", {}):
                value["config"]["seed"] = init_seed(k, index)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone, recursive=True)


def architecture_key(model) -> str:
    """A digest of ``model``'s architecture: its config without the weights, the model's own
    name, or the initialisers' seeds (a re-initialised clone has the same architecture)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "seed"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    config = strip(model.get_config())
    config.pop("name", None)
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: A distribution's fields that do not change what it samples (nor, so, the reference).
_NOT_SAMPLED = ("name", "description", "ood_companions")


def reference_key(encoder, spec, **settings) -> str:
    """The cache key of a reference: architecture, distribution (what it samples: not its name,
    description or companions), settings. Two training distributions that differ only in
    which modes predict the label have one decorrelated encoding distribution, so they share a
    reference (``quick``'s two do)."""
    sampled = {k: v for k, v in spec.to_dict().items() if k not in _NOT_SAMPLED}
    material = {"architecture": architecture_key(encoder), "distribution": sampled, **settings}
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_path(cache_dir, kind: str, key: str) -> str:
    return os.path.join(os.fspath(cache_dir), f"untrained_{kind}_{key}.json")


def cached(kind: str, key: str, cache_dir, compute):
    """The cached value of ``key`` (memory, then ``cache_dir``), else ``compute()``, stored."""
    name = f"{kind}:{key}"
    if name in _MEMORY:
        return _MEMORY[name]
    path = None if cache_dir is None else _cache_path(cache_dir, kind, key)
    if path is not None and os.path.isfile(path):
        try:
            with open(path) as f:
                stored = json.load(f)
            if isinstance(stored, dict) and stored.get("key") == key:
                _MEMORY[name] = stored
                return stored
        except (OSError, ValueError) as err:  # a damaged cache file is recomputed, not trusted
            logger.warning("untrained reference cache %s unreadable (%s); recomputing", path, err)
    value = {"key": key, **compute()}
    if path is not None:
        write_json_atomic(path, value)
    if len(_MEMORY) >= _MEMORY_LIMIT:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[name] = value
    return value


def encoding_reference(encoder, spec, factors, render, *, inits: int, seed: int, layers,
                       folds: int, modes=None, batch_size: int = 256, cache_dir=None) -> dict:
    """Normalized scores of every mode at each of ``layers`` for ``inits`` re-initialisations.

    Args:
        encoder: the (trained) encoder; only its architecture is used.
        spec: the distribution ``factors`` were sampled from.
        factors: the encoding sample (the trained encoder's own).
        render: ``() -> images [n, H, W, 1]`` of ``factors`` (called only on a cache miss).
        inits: ``K``.
        seed: the read-out seed (folds) of the trained encoder's measurement.
        layers: layer names (``layers.resolve_layers``).
        folds, modes: as in ``decodability``.
        cache_dir: folder of the on-disk cache (``None``: memory only).

    Returns:
        ``{"key", "inits", "seconds", "layers": {layer: {mode: [K normalized or None]}}}``.
    """
    from nodulelearn.sensitivity.encoding import decodability, one_blas_thread
    from nodulelearn.sensitivity.readout import READOUT

    layers = list(layers)
    key = reference_key(encoder, spec, kind="encoding", readout=READOUT, inits=inits, seed=seed,
                        n=len(factors), folds=folds, modes=None if modes is None else list(modes),
                        layers=layers, noise_seeds=_digest(factors.noise_seeds))

    def compute():
        started = time.perf_counter()
        images = render()
        # One forward pass per init for every layer, then every read-out under one BLAS limit.
        pooled = [activations(encoder, layers, images, reinitialized(encoder, k).get_weights(),
                              batch_size)
                  for k in range(inits)]
        scores = {layer: {} for layer in layers}
        with one_blas_thread():
            for per_layer in pooled:
                for layer, embeddings in zip(layers, per_layer, strict=True):
                    for record in decodability(embeddings, factors, seed=seed, modes=modes,
                                               folds=folds, bootstrap=_BASELINE_BOOTSTRAP):
                        scores[layer].setdefault(record["mode"], []).append(
                            record["normalized"])
        logger.info("untrained reference (%d inits, %d layers) in %.1f s", inits, len(layers),
                    time.perf_counter() - started)
        return {"inits": inits, "layers": scores, "seconds": time.perf_counter() - started}

    return cached("encoding", key, cache_dir, compute)


_HOSTS: dict[tuple, tuple] = {}
_HOST_LOCK = threading.RLock()
_IMAGES: dict[str, np.ndarray] = {}


def activations(encoder, layers, images, weights, batch_size: int = 256) -> list[np.ndarray]:
    """The pooled activations at ``layers`` of ``encoder``'s architecture carrying ``weights``
    (``layers.PooledApply``), computed by the architecture's host clone: its function is traced
    once per process, not once per encoder (a study's runs share one architecture)."""
    host, apply = _host(encoder, layers, batch_size)
    with _HOST_LOCK:  # the host is shared: its weights and its output go together
        host.set_weights(weights)
        return apply(images)


def sample_images(spec, factors, render):
    """The rendered images of an encoding sample, kept for the next encoder measured on the same
    sample in this process (a study's runs share one; the last two samples are kept)."""
    key = json.dumps({"distribution": spec.to_dict(), "noise_seeds": _digest(factors.noise_seeds),
                      "n": len(factors)}, sort_keys=True, default=str)
    if key not in _IMAGES:
        if len(_IMAGES) >= 2:
            _IMAGES.pop(next(iter(_IMAGES)))
        _IMAGES[key] = render()
    return _IMAGES[key]


def _host(encoder, layers, batch_size: int):
    """A clone of ``encoder`` and its traced pooled read-out at ``layers``, one per architecture:
    every init is loaded into the same variables, so the function is traced once per process."""
    from nodulelearn.sensitivity.layers import PooledApply, pooled_model

    key = (architecture_key(encoder), tuple(layers), int(batch_size))
    if key not in _HOSTS:
        if len(_HOSTS) >= 8:
            _HOSTS.pop(next(iter(_HOSTS)))
        host = reinitialized(encoder, 0)
        _HOSTS[key] = host, PooledApply(pooled_model(host, list(layers)), batch_size)
    return _HOSTS[key]


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def add_change(records: list[dict], baseline: dict | None, level: float = LEVEL) -> list[dict]:
    """Adds ``CHANGE_FIELDS`` to each encoding record (in place; returned).

    ``baseline``: mode -> the ``K`` normalized scores of the reference (``None``: reference off,
    every field ``None``). The verdicts are simultaneous over the varying, scored modes
    (Bonferroni: ``comparisons`` = their number).
    """
    scored = [r for r in records if r["varies"] and r["normalized"] is not None
              and baseline is not None and None not in baseline.get(r["mode"], [None])]
    for record in records:
        record.update(dict.fromkeys(CHANGE_FIELDS))
    for record in scored:
        found = change_interval(record["normalized"], record.get("normalized_se") or 0.0,
                                baseline[record["mode"]], comparisons=len(scored), level=level)
        record.update(baseline_normalized=found["baseline"],
                      baseline_normalized_sd=found["baseline_sd"],
                      **{k: found[k] for k in CHANGE_FIELDS[2:]})
    return records


def recoverability_reference(encoder, spec, fit, test, render, *, inits: int, seed: int,
                             batch_size: int = 256, cache_dir=None) -> list[float]:
    """Accuracy on ``test`` of a linear head refitted on ``fit`` (``retraining.fit_linear_head``)
    over each of ``inits`` re-initialisations of ``encoder``: the untrained encoders'
    recoverability. ``render(factors)`` gives the images."""
    from nodulelearn.sensitivity.layers import resolve_layers
    from nodulelearn.sensitivity.metrics import predicted_labels
    from nodulelearn.sensitivity.retraining import fit_linear_head

    key = reference_key(encoder, spec, kind="recoverability", inits=inits, seed=seed,
                        fit=_digest(fit.noise_seeds), test=_digest(test.noise_seeds),
                        n_fit=len(fit), n_test=len(test))

    def compute():
        started = time.perf_counter()
        fit_images, test_images = render(fit), render(test)
        host, apply = _host(encoder, resolve_layers(encoder)[-1:], batch_size)
        labels = np.asarray(test.labels).astype(int)
        accuracies = []
        for k in range(inits):
            with _HOST_LOCK:
                host.set_weights(reinitialized(encoder, k).get_weights())
                fitted, tested = apply(fit_images)[0], apply(test_images)[0]
            head = fit_linear_head(fitted, fit.labels, seed=seed)
            probs = head.predict_proba(tested)[:, 1]
            accuracies.append(float(np.mean(predicted_labels(probs) == labels)))
        return {"inits": inits, "accuracies": accuracies,
                "seconds": time.perf_counter() - started}

    return cached("recoverability", key, cache_dir, compute)["accuracies"]


#: Fields added to each recoverability record (``None`` where the reference is off).
GAIN_FIELDS = ("baseline_accuracy", "gain_over_baseline", "gain_over_baseline_ci_low",
               "gain_over_baseline_ci_high")


def gain_over_baseline(retrained_accuracy: float, n_test: int, accuracies) -> dict:
    """``GAIN_FIELDS`` of a recoverability record: the retrained accuracy minus the mean over the
    untrained encoders' ``accuracies``, with ``change_interval``'s prediction interval (the
    retrained accuracy's binomial standard error as its test-sample part; one comparison)."""
    if accuracies is None or len(accuracies) == 0:
        return dict.fromkeys(GAIN_FIELDS)
    p = float(retrained_accuracy)
    found = change_interval(p, np.sqrt(p * (1 - p) / max(int(n_test), 1)), accuracies)
    return {"baseline_accuracy": found["baseline"], "gain_over_baseline": found["change"],
            "gain_over_baseline_ci_low": found["change_ci_low"],
            "gain_over_baseline_ci_high": found["change_ci_high"]}
