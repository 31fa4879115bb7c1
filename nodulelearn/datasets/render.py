"""Rendering of CT-like lung-nodule patches from factor values: a pure, batched TF function.

A patch is built in Hounsfield units (HU), then windowed to [0, 1]:

1. parenchyma (about -850 HU, mottled low-frequency texture) and up to six vessel-like tubes
   (+40 HU), see ``lung_background``;
2. the nodule composited on top: ground-glass halo, solid part, calcified focus, see
   ``nodule_shape``;
3. scanner noise (white, near-Gaussian, sigma = ``noise`` HU after the next step);
4. partial-volume blur (Gaussian, sigma 0.6 px), which also gives the noise the fine-grained
   correlation of reconstructed CT;
5. the window: level ``WINDOW_LEVEL_HU``, width ``WINDOW_WIDTH_HU``, clipped to [0, 1].

Every random nuisance comes from the sample's own seed (``random_fields``), so the image is a
pure function of (values, seed), independent of the batch, and changing one mode's value changes
nothing else. The computation is a chain of four small XLA computations, compiled once per
(image size, pixel spacing, batch size).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from nodulelearn.datasets import lung_background, nodule_shape, random_fields
from nodulelearn.datasets.modes import MODE_NAMES, MODES, RENDER_VISIBILITY_MODES
from nodulelearn.datasets.spec import IMAGE_SIZE_RANGE, PIXEL_SPACING_RANGE_MM

# A wide lung window: [-1250, +450] HU. Parenchyma sits at about 0.24, ground glass at 0.37,
# soft tissue (0 HU) at 0.74, the densest solid nodule (+150 HU) at 0.82; only calcification
# (+1000 HU) reaches the white point, so it is always the brightest thing in the patch.
WINDOW_LEVEL_HU = -400.0
WINDOW_WIDTH_HU = 1700.0
BLUR_SIGMA_PX = 0.6
BLUR_RADIUS_PX = 1  # taps at +-2 px would weigh 0.003: negligible


def _blur_taps() -> np.ndarray:
    offsets = np.arange(-BLUR_RADIUS_PX, BLUR_RADIUS_PX + 1)
    taps = np.exp(-0.5 * (offsets / BLUR_SIGMA_PX) ** 2)
    return taps / taps.sum()


def _blur_vertically(images: tf.Tensor) -> tf.Tensor:
    """Gaussian blur along axis 1 of ``[B, H, W]``, mirrored borders (shifted sums, no conv).

    The horizontal pass applies this to the transposed image: XLA's CPU backend vectorises
    shifts along the major axis better than along the minor one.
    """
    taps, r, height = _blur_taps(), BLUR_RADIUS_PX, images.shape[1]
    padded = tf.pad(images, [[0, 0], [r, r], [0, 0]], mode="SYMMETRIC")
    return sum(float(t) * padded[:, i : i + height, :] for i, t in enumerate(taps))


def _noise_gain() -> float:
    """Scale of white noise so that its blurred version has unit standard deviation."""
    return float(1.0 / np.sum(_blur_taps() ** 2))


def _pixel_coordinates(image_size: int, pixel_spacing_mm: float) -> np.ndarray:
    return ((np.arange(image_size) - (image_size - 1) / 2.0) * pixel_spacing_mm).astype(np.float32)


@functools.cache
def _renderer(image_size: int, pixel_spacing_mm: float, visibility: tuple = ()):
    """The compiled renderer and region function for one geometry and render visibility.

    ``visibility``: sorted ``(mode, v)`` pairs with v != 1 (see ``_visibility_key``).
    """
    visibility = dict(visibility)
    # numpy, not tf.constant: this cache outlives the graph of its first caller (which may be a
    # Dataset.map function), so every tensor must be made inside the traced functions.
    coords = _pixel_coordinates(image_size, pixel_spacing_mm)
    fov_mm = image_size * pixel_spacing_mm

    def grid():
        return tf.constant(coords[None, None, :]), tf.constant(coords[None, :, None])

    # Separate XLA computations. Per-sample parameters come first so that XLA cannot fuse them
    # into the per-pixel loop (it would recompute the outline per pixel); the blur comes last
    # so that the scene is materialised once rather than recomputed for every tap of the blur.
    @tf.function(jit_compile=True, reduce_retracing=True)
    def parameters(values, seeds):
        values = dict(zip(MODE_NAMES, values, strict=True))
        return {
            "nodule": nodule_shape.nodule_parameters(values, seeds, pixel_spacing_mm, visibility),
            "vessels": lung_background.vessel_parameters(values["vessels"], seeds, fov_mm),
            "texture": lung_background.parenchyma_window(seeds, image_size, pixel_spacing_mm),
            "noise": tf.maximum(values["noise"], 0.0),
        }

    @tf.function(jit_compile=True, reduce_retracing=True)
    def scene_hu(params, seeds):
        x_mm, y_mm = grid()
        texture = lung_background.parenchyma_texture(
            params["texture"], image_size, pixel_spacing_mm
        )
        parenchyma = lung_background.PARENCHYMA_HU + lung_background.PARENCHYMA_TEXTURE_HU * texture
        nodule = nodule_shape.nodule_layers(params["nodule"], x_mm, y_mm, pixel_spacing_mm, texture)
        vessels = lung_background.vessel_alpha(params["vessels"], x_mm, y_mm)
        hu = parenchyma + vessels * (lung_background.VESSEL_HU - parenchyma)
        hu = hu + nodule.halo_alpha * (nodule.halo_hu - hu)
        hu = hu + nodule.core_alpha * (nodule.core_hu - hu)
        hu = hu + nodule.calcification_alpha * (nodule_shape.CALCIFICATION_HU - hu)
        white = random_fields.normal_image(seeds, "scanner_noise", image_size, image_size)
        sigma = params["noise"][:, None, None] * _noise_gain()
        return hu + sigma * white

    # The two passes of the blur as two computations: fused, XLA recomputes the first pass for
    # every tap of the second.
    blur_vertically = tf.function(_blur_vertically, jit_compile=True, reduce_retracing=True)

    @tf.function(jit_compile=True, reduce_retracing=True)
    def blur_horizontally_and_window(hu):
        hu = tf.transpose(_blur_vertically(tf.transpose(hu, [0, 2, 1])), [0, 2, 1])
        low = WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2.0
        return tf.clip_by_value((hu - low) / WINDOW_WIDTH_HU, 0.0, 1.0)[..., None]

    def render_window(values, seeds):
        hu = scene_hu(parameters(values, seeds), seeds)
        return blur_horizontally_and_window(blur_vertically(hu))

    @tf.function(jit_compile=True, reduce_retracing=True)
    def support(nodule_params):
        x_mm, y_mm = grid()
        texture = tf.zeros([1, image_size, image_size])
        nodule = nodule_shape.nodule_layers(nodule_params, x_mm, y_mm, pixel_spacing_mm, texture)
        grown = tf.nn.max_pool2d(
            tf.cast(nodule.support, tf.float32)[..., None], 2 * BLUR_RADIUS_PX + 1, 1, "SAME"
        )
        return grown > 0

    def region(values, seeds):
        return support(parameters(values, seeds)["nodule"])

    return render_window, region


def _visibility_key(visibility) -> tuple:
    """Validated render visibility as sorted ``(mode, v)`` pairs, leaving out every v == 1."""
    if visibility is None:
        return ()
    key = []
    for mode, value in dict(visibility).items():
        if mode not in RENDER_VISIBILITY_MODES:
            raise ValueError(
                f"Invalid value for argument `visibility`. Expected a mapping of "
                f"{', '.join(RENDER_VISIBILITY_MODES)} to numbers (the other modes' visibility "
                f"acts on their looks when sampling). Received: visibility={dict(visibility)!r}"
            )
        high = MODES[mode].visibility_max
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not (
                0.0 <= float(value) <= high):
            raise ValueError(
                f"Invalid value for argument `visibility`. Expected {mode!r} in [0, {high:g}]. "
                f"Received: visibility={dict(visibility)!r}"
            )
        if float(value) != 1.0:
            key.append((mode, float(value)))
    return tuple(sorted(key))


def _prepare(values, noise_seeds, image_size, pixel_spacing_mm, visibility=None):
    """Validates arguments; returns (mode tensors in MODE_NAMES order, seeds, renderer key)."""
    missing = [m for m in MODE_NAMES if m not in values]
    if missing:
        raise ValueError(
            f"render needs a value for every mode; missing: {', '.join(missing)}. "
            f"Expected modes: {', '.join(MODE_NAMES)}; received keys: {', '.join(map(str, values))}."
        )
    low_size, high_size = IMAGE_SIZE_RANGE
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or not low_size <= image_size <= high_size
    ):
        raise ValueError(f"Invalid value for argument `image_size`. Expected an int in "
                         f"[{low_size}, {high_size}]. Received: image_size={image_size!r}")
    low, high = PIXEL_SPACING_RANGE_MM
    if isinstance(pixel_spacing_mm, bool) or not isinstance(
            pixel_spacing_mm, (int, float, np.integer, np.floating)) or not (
            low <= float(pixel_spacing_mm) <= high):
        raise ValueError(
            f"Invalid value for argument `pixel_spacing_mm`. Expected a positive float in "
            f"[{low:g}, {high:g}] mm. Received: pixel_spacing_mm={pixel_spacing_mm!r}"
        )
    tensors = tuple(tf.reshape(tf.cast(values[m], tf.float32), [-1]) for m in MODE_NAMES)
    seeds = tf.cast(noise_seeds, tf.int32)
    if seeds.shape.rank != 2 or seeds.shape[-1] != 2:
        raise ValueError(f"noise_seeds must have shape [B, 2]. Received shape: {seeds.shape}")
    return tensors, seeds, (int(image_size), float(pixel_spacing_mm), _visibility_key(visibility))


def render(
    values: Mapping[str, tf.Tensor],
    noise_seeds: tf.Tensor,
    *,
    image_size: int,
    pixel_spacing_mm: float,
    visibility: Mapping[str, float] | None = None,
) -> tf.Tensor:
    """Renders CT-like nodule patches.

    Pure and deterministic: sample ``b`` depends only on ``values[m][b]`` and ``noise_seeds[b]``.
    Works eagerly, inside ``tf.function`` and inside ``tf.data.Dataset.map``.

    Args:
        values: float32 ``[B]`` for each of the eight modes (categorical modes as category
            index, ``vessels`` as an integral count); other keys are ignored.
        noise_seeds: int32 ``[B, 2]``, the per-sample seed of every random nuisance.
        image_size: side of the square patch in pixels.
        pixel_spacing_mm: size of one pixel in mm.
        visibility: the visibility of margin, texture and calcification (a spec's
            ``render_visibility()``, a ``Factors``' ``visibility``); a missing mode or ``None``
            means 1, the looks as they are. Each distinct value compiles its own renderer.

    Returns:
        float32 ``[B, image_size, image_size, 1]`` in [0, 1] (HU windowed, see module doc).
    """
    tensors, seeds, geometry = _prepare(
        values, noise_seeds, image_size, pixel_spacing_mm, visibility)
    return _renderer(*geometry)[0](tensors, seeds)


def nodule_region(
    values: Mapping[str, tf.Tensor],
    noise_seeds: tf.Tensor,
    *,
    image_size: int,
    pixel_spacing_mm: float,
    visibility: Mapping[str, float] | None = None,
) -> tf.Tensor:
    """The pixels a sample's nodule can influence.

    The nodule's support (halo, solid part with spicules, calcification) dilated by the radius
    of the partial-volume blur. Changing a nodule-local mode (margin, size, texture,
    calcification, contrast, position) changes pixels only inside the union of the old and new
    regions.

    Args and shapes as ``render``.

    Returns:
        bool ``[B, image_size, image_size, 1]``.
    """
    tensors, seeds, geometry = _prepare(
        values, noise_seeds, image_size, pixel_spacing_mm, visibility)
    return _renderer(*geometry)[1](tensors, seeds)


MIN_PADDED_BATCH = 64


class BatchRenderer:
    """Renders ``Factors`` batch by batch and applies a function to each batch of images.

    The one batch renderer of nodulelearn (``render_factors``, the sensitivity analysis's
    predictions and embeddings all use it). ``render`` is XLA-compiled per batch shape (a second
    or more each time), and callers render subsets of every size, so a short batch is padded
    (repeating its last sample) up to the next power of two, at least ``MIN_PADDED_BATCH`` and
    at most ``batch_size``: only a handful of shapes are ever compiled. Each image depends only
    on its own factors and seed, so padding changes no image. The images are drawn with the
    factors' ``visibility``.

    Args:
        image_size: side of the rendered images, pixels.
        pixel_spacing_mm: pixel spacing of the rendered images.
        fn: ``images [B, H, W, 1] float32 -> tensor [B, ...]`` (e.g. a Keras model), traced
            once as a ``tf.function`` with an open batch dimension; ``None``: the images.
        batch_size: images rendered (and passed to ``fn``) at once.
    """

    def __init__(
        self,
        *,
        image_size: int,
        pixel_spacing_mm: float,
        fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
        batch_size: int = 256,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
                batch_size < 1):
            raise ValueError(f"Invalid value for argument `batch_size`. Expected a positive int. "
                             f"Received: batch_size={batch_size!r}")
        self.image_size = int(image_size)
        self.pixel_spacing_mm = float(pixel_spacing_mm)
        self.batch_size = int(batch_size)
        if fn is None:
            self._fn = None
        else:
            signature = [tf.TensorSpec([None, self.image_size, self.image_size, 1], tf.float32)]
            self._fn = tf.function(fn, input_signature=signature)

    @classmethod
    def for_spec(cls, spec, **kwargs) -> BatchRenderer:
        """A renderer with the geometry of ``spec`` (a ``DistributionSpec``)."""
        return cls(image_size=spec.image_size, pixel_spacing_mm=spec.pixel_spacing_mm, **kwargs)

    def padded_size(self, count: int) -> int:
        """The batch shape a batch of ``count`` samples is rendered at."""
        return min(self.batch_size, max(MIN_PADDED_BATCH, 1 << max(count - 1, 0).bit_length()))

    def apply(self, factors) -> np.ndarray:
        """Renders ``factors`` (a ``Factors``); returns ``fn``'s outputs (or the images) stacked.

        Returns:
            ``[n, ...]`` numpy; float32 ``[n, H, W, 1]`` images without ``fn``.
        """
        n = len(factors.noise_seeds)
        visibility = getattr(factors, "visibility", None)
        outputs = []
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            rows = np.arange(start, start + self.padded_size(stop - start)).clip(max=stop - 1)
            values = {m: tf.constant(np.asarray(factors.values[m], np.float32)[rows])
                      for m in MODE_NAMES}
            seeds = tf.constant(np.asarray(factors.noise_seeds, np.int32)[rows])
            images = render(values, seeds, image_size=self.image_size,
                            pixel_spacing_mm=self.pixel_spacing_mm, visibility=visibility)
            result = images if self._fn is None else self._fn(images)
            outputs.append(result.numpy()[: stop - start])
        if not outputs:
            if self._fn is None:
                return np.zeros((0, self.image_size, self.image_size, 1), np.float32)
            return np.zeros((0,), np.float32)
        return np.concatenate(outputs, axis=0)


def render_factors(factors, spec, batch_size: int = 256) -> np.ndarray:
    """Renders sampled factors (with their visibility) at the geometry of ``spec``.

    Args:
        factors: a ``Factors`` (``.values`` dict of float32 ``[n]``, ``.noise_seeds`` ``[n, 2]``).
        spec: a ``DistributionSpec`` (``.image_size``, ``.pixel_spacing_mm``).
        batch_size: samples per rendering call (see ``BatchRenderer`` for the padding).

    Returns:
        float32 ``[n, H, W, 1]``.
    """
    return BatchRenderer.for_spec(spec, batch_size=batch_size).apply(factors)
