"""Which layers of an encoder the layer-wise encoding reads, and their pooled activations.

The encoding of every mode is measured at the output of each block of the encoder, as well as
at the embedding (Kornblith et al. 2021 found that losses differ mostly in the last layers).
A block's output is read through global average pooling over its spatial axes (an ``[B, C]``
vector per image), so every layer gets the same linear read-out as the embedding.

Which layers: the names given (``--encoding_layers``), else every pooling layer (the block
boundaries of ``compact_cnn``: ``block0_pool`` ...) and the embedding (the encoder's output),
in the order the encoder computes them.
"""

from __future__ import annotations

import numpy as np

#: The name used for the encoder's own output in the layer-wise records.
EMBEDDING = "embedding"
ENCODING_LAYERS_CSV = "encoding_layers.csv"
ENCODING_LAYERS_PNG = "encoding_layers.png"


def _output_layer_name(encoder) -> str:
    history = getattr(encoder.outputs[0], "_keras_history", None)
    return history[0].name if history is not None else EMBEDDING


def _check_functional(encoder):
    if not getattr(encoder, "outputs", None) or len(encoder.outputs) != 1:
        raise ValueError(
            "Expected a functional Keras encoder with one output (images -> embeddings) for the "
            f"layer-wise encoding. Received: {type(encoder).__name__} "
            f"{getattr(encoder, 'name', '')!r}."
        )


def layer_names(encoder) -> list[str]:
    """Every layer the layer-wise encoding may read, in the encoder's order (not its input)."""
    _check_functional(encoder)
    return [layer.name for layer in encoder.layers if type(layer).__name__ != "InputLayer"]


def default_layers(encoder) -> list[str]:
    """Every pooling layer of ``encoder`` and its output layer, in the encoder's order."""
    _check_functional(encoder)
    output = _output_layer_name(encoder)
    names = [layer.name for layer in encoder.layers
             if "Pooling" in type(layer).__name__ and layer.name != output]
    return [*names, output]


def resolve_layers(encoder, names=None) -> list[str]:
    """``names`` checked against ``encoder`` (default: ``default_layers``), in the encoder's order.

    Raises:
        ValueError: an unknown layer name (the message lists the valid names), or no layer.
    """
    if names is None:
        return default_layers(encoder)
    valid = layer_names(encoder)
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise ValueError(
            f"Unknown encoding layer(s) {', '.join(map(repr, unknown)) or '(none given)'} of "
            f"the encoder {encoder.name!r}. Valid layer names: {', '.join(valid)}."
        )
    return [name for name in valid if name in names]


def pooled_model(encoder, names):
    """A model ``images -> [pooled activations of each layer in names]`` sharing ``encoder``'s
    weights (so re-assigning the encoder's weights changes its outputs too)."""
    import keras

    outputs = []
    for name in names:
        tensor = encoder.get_layer(name).output
        if len(tensor.shape) > 2:
            tensor = keras.ops.mean(tensor, axis=tuple(range(1, len(tensor.shape) - 1)))
        outputs.append(tensor)
    return keras.Model(encoder.inputs, outputs, name=f"{encoder.name}_layers")


class PooledApply:
    """Applies a ``pooled_model`` to rendered images in batches (one traced function)."""

    def __init__(self, model, batch_size: int = 256):
        import tensorflow as tf

        self._batch_size = int(batch_size)
        self._fn = tf.function(lambda images: model(images, training=False),
                               reduce_retracing=True)

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        parts = []
        for start in range(0, len(images), self._batch_size):
            out = self._fn(images[start:start + self._batch_size])
            out = out if isinstance(out, (list, tuple)) else [out]
            parts.append([np.asarray(o, np.float64).reshape(len(o), -1) for o in out])
        return [np.concatenate(column) for column in zip(*parts, strict=True)]


#: Columns of encoding_layers.csv.
LAYER_FIELDS = ("layer", "depth", "mode", "normalized", "normalized_ci_low", "normalized_ci_high",
                "baseline_normalized", "baseline_normalized_sd", "change", "change_ci_low",
                "change_ci_high", "verdict")


def layer_rows(records_by_layer: dict) -> list[dict]:
    """One row per (layer, varying mode) of the layer-wise encoding.

    Args:
        records_by_layer: layer name -> its encoding records (with ``untrained.CHANGE_FIELDS``),
            in the encoder's order; ``depth`` is the layer's position in it, from 1.
    """
    rows = []
    for depth, (layer, records) in enumerate(records_by_layer.items(), start=1):
        for record in records:
            if record["varies"]:
                rows.append({"layer": layer, "depth": depth,
                             **{k: record.get(k) for k in LAYER_FIELDS[2:]}})
    return rows


def layer_encoding(encoder, spec, factors, images, *, seed: int, layers, inits: int,
                   pooled=None, known=None, folds: int | None = None,
                   bootstrap: int | None = None, modes=None, batch_size: int = 256,
                   cache_dir=None):
    """Encoding of every mode at each of ``layers``, with its change from the untrained
    reference (``untrained.encoding_reference``, ``inits`` re-initialisations, same sample,
    folds and read-out).

    Args:
        encoder: the (trained) functional encoder.
        spec: the distribution ``factors`` were drawn from (for the reference's cache key).
        factors: the encoding sample; ``images``: its rendered images ``[n, H, W, 1]``.
        seed: the read-out seed (folds, bootstrap).
        layers: layer names (``resolve_layers``).
        inits: ``K`` (0: no reference; the change fields are ``None``).
        pooled: the encoder's pooled activations at ``layers``, if already computed.
        known: layer -> records already measured on these activations (not measured again).
        folds, bootstrap, modes: as in ``encoding.decodability`` (default: its defaults).
        cache_dir: the reference's on-disk cache.

    Returns:
        ``(by_layer, reference)``: layer -> records (with ``untrained.CHANGE_FIELDS``), in the
        order of ``layers``; the reference (``None`` without).
    """
    from nodulelearn.sensitivity import encoding
    from nodulelearn.sensitivity.untrained import add_change, encoding_reference

    folds = encoding.FOLDS if folds is None else folds
    bootstrap = encoding.BOOTSTRAP if bootstrap is None else bootstrap
    layers = list(layers)
    if pooled is None:
        pooled = PooledApply(pooled_model(encoder, layers), batch_size)(images)
    known = known or {}
    by_layer = {}
    for name, x in zip(layers, pooled, strict=True):
        by_layer[name] = known.get(name) or encoding.decodability(
            x, factors, seed=seed, modes=modes, folds=folds, bootstrap=bootstrap)
    reference = None
    if inits:
        reference = encoding_reference(encoder, spec, factors, lambda: images, inits=inits,
                                       seed=seed, layers=layers, folds=folds, modes=modes,
                                       batch_size=batch_size, cache_dir=cache_dir)
    for name, records in by_layer.items():
        add_change(records, reference["layers"][name] if reference else None)
    return by_layer, reference
