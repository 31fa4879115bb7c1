"""Render factors and run a Keras model on the images, batched.

``render`` is itself a compiled TF function, and the model runs in a ``tf.function`` whose batch
dimension is left open; images stay TF tensors between the two (no numpy round trip).
Rendering is ``nodulelearn.datasets.BatchRenderer``'s (the package's one batch renderer: short
batches padded to a few shapes, images drawn with the factors' visibility).
"""

from __future__ import annotations

import numpy as np

from nodulelearn.datasets import BatchRenderer
from nodulelearn.model_io import OUTPUTS, ModelOutputError, output_column, to_probabilities

__all__ = ["OUTPUTS", "BatchedRenderer", "ModelOutputError", "Predictor", "to_probabilities"]

# The one batch renderer lives in nodulelearn.datasets; the old name stays for callers.
BatchedRenderer = BatchRenderer


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
