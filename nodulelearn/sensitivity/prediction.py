"""Render factors and run a Keras model on the images, batched.

``render`` is itself a compiled TF function, and the model runs in a ``tf.function`` whose batch
dimension is left open; images stay TF tensors between the two (no numpy round trip).
The renderer is XLA-compiled per batch shape (a second or more each time), and the permutation
analysis renders subsets of every size, so a short batch is padded (repeating its last sample)
up to the next power of two, at least ``MIN_PADDED_BATCH``: only a handful of shapes
(64, 128, 256 with the default batch size) are ever compiled. Each image depends only on its
own factors and seed, so padding changes no image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from nodulelearn.datasets import MODE_NAMES, render
from nodulelearn.model_io import OUTPUTS, ModelOutputError, output_column, to_probabilities

__all__ = ["OUTPUTS", "BatchedRenderer", "ModelOutputError", "Predictor", "to_probabilities"]

MIN_PADDED_BATCH = 64


class BatchedRenderer:
    """Renders factor values of one distribution and applies a function to each batch.

    Args:
        image_size: side of the rendered images, pixels.
        pixel_spacing_mm: pixel spacing of the rendered images.
        fn: ``images [B, H, W, 1] float32 -> tensor [B, ...]``, e.g. a Keras model.
        batch_size: images rendered and processed at once.
    """

    def __init__(
        self,
        *,
        image_size: int,
        pixel_spacing_mm: float,
        fn: Callable[[tf.Tensor], tf.Tensor],
        batch_size: int = 256,
    ):
        if batch_size < 1:
            raise ValueError(f"Expected a positive batch_size. Received: batch_size={batch_size}")
        self.image_size = int(image_size)
        self.pixel_spacing_mm = float(pixel_spacing_mm)
        self.batch_size = int(batch_size)
        signature = [tf.TensorSpec([None, self.image_size, self.image_size, 1], tf.float32)]
        self._fn = tf.function(fn, input_signature=signature)

    def _render_apply(self, values, noise_seeds):
        images = render(
            values,
            noise_seeds,
            image_size=self.image_size,
            pixel_spacing_mm=self.pixel_spacing_mm,
        )
        return self._fn(images)

    def _padded_size(self, count: int) -> int:
        return min(self.batch_size, max(MIN_PADDED_BATCH, 1 << max(count - 1, 0).bit_length()))

    def apply(self, factors) -> np.ndarray:
        """Renders ``factors`` (a ``Factors``) batch by batch; returns ``fn``'s outputs stacked."""
        n = len(factors)
        outputs = []
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            # Pad by repeating the last sample: a bounded set of batch shapes (see module doc).
            rows = np.arange(start, start + self._padded_size(stop - start)).clip(max=stop - 1)
            values = {m: tf.constant(factors.values[m][rows], tf.float32) for m in MODE_NAMES}
            seeds = tf.constant(factors.noise_seeds[rows], tf.int32)
            outputs.append(self._render_apply(values, seeds).numpy()[: stop - start])
        if not outputs:
            return np.zeros((0,), np.float32)
        return np.concatenate(outputs, axis=0)


class Predictor:
    """P(malignant) of a Keras classifier on rendered factors.

    Args:
        model: a Keras model, images ``[B, H, W, 1]`` -> ``[B, 1]`` (or ``[B]``).
        image_size: side of the rendered images (the distribution's ``image_size``).
        pixel_spacing_mm: the distribution's pixel spacing.
        outputs: ``"probability"`` or ``"logit"``.
        batch_size: images rendered and predicted at once.
    """

    def __init__(
        self, model, *, image_size, pixel_spacing_mm, outputs="probability", batch_size=256
    ):
        if outputs not in OUTPUTS:
            raise ValueError(
                f"Expected outputs to be one of {OUTPUTS}. Received: outputs={outputs!r}"
            )
        self.model = model
        self.outputs = outputs
        self.calls = 0  # images predicted so far, for the report
        self._renderer = BatchedRenderer(
            image_size=image_size,
            pixel_spacing_mm=pixel_spacing_mm,
            fn=lambda images: output_column(model(images, training=False)),
            batch_size=batch_size,
        )

    def predict(self, factors) -> np.ndarray:
        """float64 ``[n]`` P(malignant) of the images rendered from ``factors``."""
        self.calls += len(factors)
        return to_probabilities(self._renderer.apply(factors), self.outputs)
