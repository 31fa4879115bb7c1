"""The nodule of a patch: outline (margin, size, position), composition (texture) and
calcification, as per-pixel opacity layers in HU, in TF ops vectorised over the batch.

Geometry is in millimetres on a pixel-centre grid. The outline is a star-shaped curve: a radius
``R(theta)`` tabulated on ``PROFILE_BINS`` angles per sample (cheap, ``[B, PROFILE_BINS]``) and
looked up per pixel with a gather and linear interpolation, so margins of any complexity cost
the same per pixel:

* smooth: a slightly oval circle;
* lobulated: low-frequency radial modulation (harmonics 3 to 5) that scallops the contour;
* spiculated: thin straight spikes, tapering from about 1.5 mm wide at the surface to a point.

All random shape parameters (harmonic phases, spicule angles and lengths, core fraction,
calcification placement, direction of the offset) come from the sample's own sub-streams
(see ``random_fields``), so they do not change when a mode's value does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from nodulelearn.datasets import random_fields

PROFILE_BINS = 256
HARMONICS = (2, 3, 4, 5)
# Relative amplitude of each harmonic, per margin category (smooth, lobulated, spiculated).
HARMONIC_AMPLITUDE = np.array(
    [[0.05, 0.02, 0.0, 0.0], [0.04, 0.13, 0.11, 0.08], [0.05, 0.04, 0.02, 0.0]], np.float32
)
SPICULES = 12
SPICULE_HALF_WIDTH_MM = 0.75
CALCIFICATION_BLOBS = 4

SOLID_EDGE_PX = 1.0
GROUND_GLASS_HU = -620.0  # pure ground glass; shifted by 0.15 x contrast
GROUND_GLASS_OPACITY = 0.85  # vessels stay faintly visible through ground glass
CALCIFICATION_HU = 1000.0
MIN_OUTLINE_FRACTION = 0.2  # an exaggerated lobulation (margin visibility > 1) keeps this radius


@dataclasses.dataclass
class NoduleLayers:
    """Per-pixel layers of the nodule, each float32 ``[B, H, W]``.

    Attributes:
        halo_alpha: opacity of the ground-glass halo (0 for solid nodules).
        halo_hu: attenuation of the halo.
        core_alpha: opacity of the solid part (0 for pure ground glass).
        core_hu: attenuation of the solid part (the ``contrast`` value plus faint texture).
        calcification_alpha: opacity of the calcified focus (+1000 HU); 0 when not calcified.
        support: bool, the pixels any of the layers touches (before partial-volume blur).
    """

    halo_alpha: tf.Tensor
    halo_hu: tf.Tensor
    core_alpha: tf.Tensor
    core_hu: tf.Tensor
    calcification_alpha: tf.Tensor
    support: tf.Tensor


def _category(value: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.round(value), tf.int32)


def _angle_table() -> tuple[np.ndarray, np.ndarray]:
    """Profile angles ``[A]`` from -pi and ``cos(k theta)``, ``sin(k theta)`` ``[A, K]``."""
    theta = np.linspace(-np.pi, np.pi, PROFILE_BINS, endpoint=False)
    k_theta = theta[:, None] * np.asarray(HARMONICS)[None, :]
    return theta.astype(np.float32), np.stack([np.cos(k_theta), np.sin(k_theta)]).astype(np.float32)


def radius_profile(margin: tf.Tensor, radius_mm: tf.Tensor, noise_seeds: tf.Tensor) -> tf.Tensor:
    """The outline radius ``R(theta)`` in mm on ``PROFILE_BINS`` angles from -pi.

    Args:
        margin: float32 ``[B]`` category index (0 smooth, 1 lobulated, 2 spiculated).
        radius_mm: float32 ``[B]`` mean radius.
        noise_seeds: int32 ``[B, 2]``.

    Returns:
        float32 ``[B, PROFILE_BINS]``.
    """
    theta, (cos_k, sin_k) = _angle_table()
    n_harmonics = len(HARMONICS)
    u = random_fields.uniform(noise_seeds, "margin", 2 * n_harmonics)
    phase = 2.0 * np.pi * u[:, :n_harmonics]
    weight = 0.6 + 0.8 * u[:, n_harmonics:]
    amplitude = tf.gather(tf.constant(HARMONIC_AMPLITUDE), _category(margin)) * weight
    # sum_k a_k cos(k theta + phase_k), expanded so the per-angle factors are constants; an
    # explicit sum rather than a matrix product, whose rounding may depend on the batch size.
    modulation = sum(
        amplitude[:, k, None]
        * (
            tf.cos(phase[:, k, None]) * cos_k[None, :, k]
            - tf.sin(phase[:, k, None]) * sin_k[None, :, k]
        )
        for k in range(n_harmonics)
    )
    radius = radius_mm[:, None] * (1.0 + modulation)

    # Spicules: a triangular spike of the radius around each spicule angle. Its angular
    # half-width is the wanted half-width in mm over the radius, so it tapers to a point.
    s = random_fields.uniform(noise_seeds, "spicules", 3 * SPICULES)
    # One slot of 2 pi / SPICULES per spicule, jittered within 70 % of it. Constants are
    # folded by hand so that every compilation of this graph rounds the same way.
    slots = (np.arange(SPICULES) * (2.0 * np.pi / SPICULES) - np.pi).astype(np.float32)
    angle = slots + s[:, :SPICULES] * np.float32(0.7 * 2.0 * np.pi / SPICULES)
    # Squared uniform: many short spicules and a few long ones, as in real corona radiata.
    length = radius_mm[:, None] * (0.1 + 1.1 * tf.square(s[:, SPICULES : 2 * SPICULES])) + 0.8
    half_width = SPICULE_HALF_WIDTH_MM * (0.7 + 0.6 * s[:, 2 * SPICULES :]) / radius_mm[:, None]
    slope = length / half_width  # mm of spike lost per radian away from the spicule's axis
    spike = tf.zeros_like(radius)
    for i in range(SPICULES):
        offset = tf.abs(theta[None, :] - angle[:, i : i + 1])
        offset = tf.minimum(offset, 2.0 * np.pi - offset)
        spike = tf.maximum(spike, tf.nn.relu(length[:, i : i + 1] - offset * slope[:, i : i + 1]))
    is_spiculated = tf.cast(tf.equal(_category(margin), 2), tf.float32)[:, None]
    return tf.maximum(radius, radius_mm[:, None] + is_spiculated * spike)


def _fast_atan2(dy: tf.Tensor, dx: tf.Tensor) -> tf.Tensor:
    """``atan2`` to about 0.002 rad from arithmetic only.

    XLA's CPU ``atan2`` is not vectorised and was the single most expensive op of the renderer;
    this is a polynomial on the first octant, mapped to the others by symmetry.
    """
    ax, ay = tf.abs(dx), tf.abs(dy)
    t = tf.minimum(ax, ay) / tf.maximum(tf.maximum(ax, ay), 1e-12)
    angle = (np.pi / 4.0) * t - t * (t - 1.0) * (0.2447 + 0.0663 * t)
    angle = tf.where(ay > ax, np.pi / 2.0 - angle, angle)
    angle = tf.where(dx < 0, np.pi - angle, angle)
    return tf.where(dy < 0, -angle, angle)


def _lookup_profile(profile: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """Linear interpolation of ``profile [B, A]`` at per-pixel ``angle [B, H, W]`` in [-pi, pi]."""
    bins = PROFILE_BINS
    position = (angle + np.pi) * (bins / (2.0 * np.pi))
    lower = tf.floor(position)
    frac = position - lower
    lower = tf.math.floormod(tf.cast(lower, tf.int32), bins)
    upper = tf.math.floormod(lower + 1, bins)
    r0 = tf.gather(profile, lower, batch_dims=1)
    r1 = tf.gather(profile, upper, batch_dims=1)
    return r0 + frac * (r1 - r0)


def _soft_inside(edge_distance: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Opacity ramp from 1 (inside) to 0 over ``width`` mm around the edge."""
    return tf.clip_by_value(0.5 + edge_distance / width, 0.0, 1.0)


def nodule_centre(position: tf.Tensor, noise_seeds: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Centre ``(x, y)`` in mm, ``position`` mm from the patch centre in a seeded direction."""
    direction = 2.0 * np.pi * random_fields.uniform(noise_seeds, "position", 1)[:, 0]
    return position * tf.cos(direction), position * tf.sin(direction)


def _calcification_blobs(calcified, radius_mm, noise_seeds) -> tuple[tf.Tensor, ...]:
    """A central disc or a popcorn cluster of small discs (the seed chooses), relative to the
    nodule centre: ``(x, y, radius)`` in mm, each ``[B, CALCIFICATION_BLOBS]``; an unused disc
    has a negative radius."""
    n = CALCIFICATION_BLOBS
    u = random_fields.uniform(noise_seeds, "calcification", 1 + 3 * n)
    popcorn = u[:, :1] < 0.5
    angle = 2.0 * np.pi * u[:, 1 : 1 + n]
    reach = radius_mm[:, None] * 0.35 * tf.sqrt(u[:, 1 + n : 1 + 2 * n])
    blob_radius = tf.maximum(radius_mm[:, None] * (0.12 + 0.08 * u[:, 1 + 2 * n :]), 0.8)
    central_radius = tf.maximum(radius_mm[:, None] * 0.3, 1.0)
    is_first = tf.range(n)[None, :] == 0
    reach = tf.where(popcorn, reach, 0.0)
    blob_radius = tf.where(popcorn, blob_radius, tf.where(is_first, central_radius, -1e3))
    is_calcified = tf.equal(_category(calcified), 1)[:, None]
    blob_radius = tf.where(is_calcified, blob_radius, -1e3)
    return reach * tf.cos(angle), reach * tf.sin(angle), blob_radius


def nodule_parameters(
    values: dict[str, tf.Tensor],
    noise_seeds: tf.Tensor,
    pixel_spacing_mm: float,
    visibility: dict[str, float] | None = None,
) -> dict[str, tf.Tensor]:
    """Everything about each sample's nodule that is not per pixel (cheap, ``[B, ...]``).

    Kept apart from ``nodule_layers`` so that it is computed once per sample: inside one XLA
    computation, XLA would otherwise fuse it into the per-pixel loop and redo it per pixel.

    Args:
        values: float32 ``[B]`` per mode (margin, size, texture, calcification, contrast and
            position are read).
        noise_seeds: int32 ``[B, 2]``.
        pixel_spacing_mm: pixel size, for the width of edges.
        visibility: Python floats for ``margin``, ``texture``, ``calcification`` (missing: 1),
            see ``apply_visibility``.

    Returns:
        A dict of float32 tensors: ``centre_x``, ``centre_y``, ``halo_width``, ``core_fraction``,
        ``has_halo``, ``has_core``, ``contrast`` ``[B]``; ``profile`` ``[B, PROFILE_BINS]``;
        ``blob_x``, ``blob_y``, ``blob_radius`` ``[B, CALCIFICATION_BLOBS]``; with a
        calcification visibility other than 1 also ``calcification_opacity`` ``[B]``.
    """
    radius_mm = tf.maximum(values["size"], 0.5) / 2.0
    centre_x, centre_y = nodule_centre(values["position"], noise_seeds)
    texture = _category(values["texture"])
    core_fraction = 0.4 + 0.2 * random_fields.uniform(noise_seeds, "texture", 1)[:, 0]
    core_fraction = tf.where(texture == 0, 1.0, tf.where(texture == 1, core_fraction, 0.0))
    blob_x, blob_y, blob_radius = _calcification_blobs(
        values["calcification"], radius_mm, noise_seeds
    )
    params = {
        "centre_x": centre_x,
        "centre_y": centre_y,
        "profile": radius_profile(values["margin"], radius_mm, noise_seeds),
        "halo_width": tf.maximum(1.5 * pixel_spacing_mm, 0.25 * radius_mm),
        "core_fraction": core_fraction,
        "has_halo": tf.cast(texture > 0, tf.float32),
        "has_core": tf.cast(core_fraction > 0, tf.float32),
        "contrast": values["contrast"],
        "blob_x": blob_x,
        "blob_y": blob_y,
        "blob_radius": blob_radius,
    }
    return apply_visibility(params, visibility or {}, radius_mm, noise_seeds)


def apply_visibility(params: dict, visibility: dict[str, float], radius_mm, noise_seeds) -> dict:
    """Draws the malignant-looking categories closer to the benign one (visibility v < 1).

    * margin: outline = smooth outline + v (outline - smooth outline), with the sample's own
      harmonic phases and spicules (v > 1 exaggerates them; the outline is kept above
      ``MIN_OUTLINE_FRACTION`` of the mean radius);
    * texture: core fraction and core opacity move from the category's towards a solid
      nodule's (1) by 1 - v; the ground-glass halo's opacity is scaled by v;
    * calcification: the calcified focus's opacity is scaled by v.

    A visibility of exactly 1 adds no operation, so the default renders the pixels of the
    renderer before this control existed. Benign-looking samples (smooth, solid, not
    calcified) are unchanged by any visibility: their deviation terms are exactly 0.
    """
    params = dict(params)
    margin = float(visibility.get("margin", 1.0))
    if margin != 1.0:
        smooth = radius_profile(tf.zeros_like(radius_mm), radius_mm, noise_seeds)
        profile = smooth + margin * (params["profile"] - smooth)
        params["profile"] = tf.maximum(profile, MIN_OUTLINE_FRACTION * radius_mm[:, None])
    texture = float(visibility.get("texture", 1.0))
    if texture != 1.0:
        params["core_fraction"] = 1.0 + texture * (params["core_fraction"] - 1.0)
        params["has_core"] = 1.0 + texture * (params["has_core"] - 1.0)
        params["has_halo"] = texture * params["has_halo"]
    calcification = float(visibility.get("calcification", 1.0))
    if calcification != 1.0:
        params["calcification_opacity"] = tf.fill(tf.shape(radius_mm), calcification)
    return params


def nodule_layers(
    params: dict[str, tf.Tensor],
    x_mm: tf.Tensor,
    y_mm: tf.Tensor,
    pixel_spacing_mm: float,
    texture_field: tf.Tensor,
) -> NoduleLayers:
    """Per-pixel layers of the nodule.

    Args:
        params: from ``nodule_parameters``.
        x_mm, y_mm: pixel-centre coordinates, ``[1, 1, W]`` and ``[1, H, 1]``.
        pixel_spacing_mm: pixel size.
        texture_field: float32 ``[B, H, W]`` unit-variance smooth field (internal mottling).

    Returns:
        ``NoduleLayers``.
    """

    def per_sample(name):
        return params[name][:, None, None]

    dx = x_mm - per_sample("centre_x")
    dy = y_mm - per_sample("centre_y")
    r = tf.sqrt(tf.square(dx) + tf.square(dy))
    outline = _lookup_profile(params["profile"], _fast_atan2(dy, dx))
    solid_edge = SOLID_EDGE_PX * pixel_spacing_mm

    halo_alpha = _soft_inside(outline - r, per_sample("halo_width"))
    halo_alpha *= per_sample("has_halo") * GROUND_GLASS_OPACITY
    core_alpha = _soft_inside(per_sample("core_fraction") * outline - r, solid_edge)
    core_alpha *= per_sample("has_core")
    contrast = per_sample("contrast")
    halo_hu = GROUND_GLASS_HU + 0.15 * contrast + 35.0 * texture_field
    core_hu = contrast + 12.0 * texture_field

    calcification_alpha = tf.zeros_like(r)
    for i in range(CALCIFICATION_BLOBS):
        distance = tf.sqrt(
            tf.square(dx - params["blob_x"][:, i, None, None])
            + tf.square(dy - params["blob_y"][:, i, None, None])
        )
        edge = params["blob_radius"][:, i, None, None] - distance
        calcification_alpha = tf.maximum(calcification_alpha, _soft_inside(edge, solid_edge))
    if "calcification_opacity" in params:  # see apply_visibility
        calcification_alpha *= per_sample("calcification_opacity")

    support = (halo_alpha > 0) | (core_alpha > 0) | (calcification_alpha > 0)
    return NoduleLayers(halo_alpha, halo_hu, core_alpha, core_hu, calcification_alpha, support)
