"""Saliency maps with tf-explain: Grad-CAM and occlusion sensitivity on a few test images.

tf-explain 0.3 was written for tf.keras 2. Under Keras 3 two things need care:
- Grad-CAM builds ``Model(model.inputs, [model.get_layer(name).output, model.output])``, so the
  target feature map must be a plain layer at the top level of a functional model. Our
  classifiers nest the encoder (a functional model) inside the classifier; ``gradcam_model``
  rebuilds such a model, sharing its layers, so that the encoder's last 4-D feature map becomes
  a top-level layer. Models that cannot be rebuilt that way (subclassed models, several paths
  around the nested encoder) raise ``SaliencyUnavailable`` with the reason; Grad-CAM is then
  skipped and occlusion still runs.
- Occlusion sensitivity pastes grey patches of value 127.5 (images in [0, 255]); the model is
  wrapped in a ``Rescaling(1/255)`` so that it sees our [0, 1] images and a mid-grey patch.
"""

from __future__ import annotations

import logging
import os
import warnings

import cv2
import keras
import numpy as np
from tf_explain.core.grad_cam import GradCAM
from tf_explain.core.occlusion_sensitivity import OcclusionSensitivity

from nodulelearn import keras_compat

logger = logging.getLogger(__name__)

TARGET_LAYER = "gradcam_features"


class SaliencyUnavailable(ValueError):
    """Grad-CAM cannot be computed for this model; the message says why."""


def _is_4d(layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _single_node_tensors(layer):
    """The input and output KerasTensors of ``layer``'s one call inside its parent model."""
    nodes = keras_compat.inbound_nodes(layer)
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1 or len(nodes[0].outputs) != 1:
        raise SaliencyUnavailable(
            f"the nested model {layer.name!r} is called more than once or with several tensors"
        )
    return nodes[0].input_tensors[0], nodes[0].outputs[0]


def gradcam_model(model: keras.Model) -> tuple[keras.Model, str]:
    """A functional model equivalent to ``model`` whose last 4-D feature map is a top-level layer.

    Args:
        model: a functional Keras model (possibly with nested functional models).

    Returns:
        ``(model_or_rebuilt_model, layer_name)`` for tf-explain's ``GradCAM``.

    Raises:
        SaliencyUnavailable: not a functional model, no 4-D layer, or not rebuildable.
    """
    if not isinstance(model, keras.Model) or not keras_compat.operations(model) or not getattr(
        model, "inputs", None
    ):
        raise SaliencyUnavailable(
            f"tf-explain's Grad-CAM needs a functional Keras model under Keras 3; received a "
            f"{type(model).__name__}"
        )
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            try:
                inner, inner_name = gradcam_model(layer)
            except SaliencyUnavailable:
                continue
            return _inline(model, layer, inner, inner_name), TARGET_LAYER
        if _is_4d(layer):
            return model, layer.name
    raise SaliencyUnavailable("the model has no layer with a 4-D (image-like) output")


def _inline(model, nested, inner, inner_name) -> keras.Model:
    """Rebuilds ``model`` with ``nested`` split at its layer ``inner_name`` (shared weights)."""
    try:
        feature_map = inner.get_layer(inner_name).output
        backbone = keras.Model(inner.inputs, feature_map, name=f"{nested.name}_backbone")
        rest = keras.Model(feature_map, inner.outputs[0], name=f"{nested.name}_rest")
        nested_in, nested_out = _single_node_tensors(nested)
        head = keras.Model(nested_out, model.outputs[0], name=f"{model.name}_head")
        image = keras.Input(tuple(model.inputs[0].shape[1:]), name="image")
        if nested_in is model.inputs[0]:
            x = image
        else:
            x = keras.Model(model.inputs, nested_in, name=f"{model.name}_stem")(image)
        features = keras.layers.Identity(name=TARGET_LAYER)(backbone(x))
        return keras.Model(image, head(rest(features)), name=f"{model.name}_gradcam")
    except SaliencyUnavailable:
        raise
    except (ValueError, TypeError, AttributeError, IndexError) as err:
        raise SaliencyUnavailable(
            f"could not expose the feature map of the nested model {nested.name!r}: {err}"
        ) from err


def _resize(maps: np.ndarray, size: int) -> np.ndarray:
    return np.stack([cv2.resize(np.asarray(m, np.float32), (size, size)) for m in maps])


def gradcam_maps(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Grad-CAM (tf-explain, guided gradients) of output 0 (P(malignant) or its logit).

    Args:
        model: functional classifier.
        images: float32 ``[k, H, W, 1]``.

    Returns:
        float32 ``[k, H, W]`` maps, ReLU-ed and scaled to [0, 1] per image (0 where flat).

    Raises:
        SaliencyUnavailable: see ``gradcam_model``.
    """
    flat, layer_name = gradcam_model(model)
    with warnings.catch_warnings():
        # tf-explain passes ``[model.inputs]`` (a nested list); Keras 3 accepts it with a warning.
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        outputs, grads = GradCAM.get_gradients_and_filters(
            flat, images, layer_name, class_index=0, use_guided_grads=True
        )
    cams = np.stack([c.numpy() for c in GradCAM.generate_ponderated_output(outputs, grads)])
    cams = np.maximum(_resize(cams, images.shape[1]), 0.0)
    peak = cams.max(axis=(1, 2), keepdims=True)
    return np.where(peak > 0, cams / np.where(peak > 0, peak, 1.0), 0.0).astype(np.float32)


class _QuietPredict:
    """Gives tf-explain a ``predict`` without Keras' progress bar (library code does not print)."""

    def __init__(self, model):
        self._model = model

    def predict(self, x, batch_size=None):
        return self._model.predict(x, batch_size=batch_size, verbose=0)


def occlusion_maps(model, images: np.ndarray, probs: np.ndarray, *, outputs: str, patch_size: int):
    """Drop of P(malignant) when a grey patch hides each region (tf-explain occlusion).

    Args:
        model: any Keras classifier (functional or not).
        images: float32 ``[k, H, W, 1]`` in [0, 1].
        probs: float ``[k]`` baseline P(malignant) of ``images``.
        outputs: ``"probability"`` or ``"logit"``.
        patch_size: side of the occluding patch, pixels.

    Returns:
        float32 ``[k, H, W]``: baseline P minus P with the patch over each pixel's region.
    """
    image = keras.Input(images.shape[1:])
    p = model(keras.layers.Rescaling(1 / 255)(image))
    if outputs == "logit":
        p = keras.layers.Activation("sigmoid")(p)
    wrapped = _QuietPredict(keras.Model(image, p))
    occluder = OcclusionSensitivity(batch_size=256)
    maps = []
    for img, base in zip(images, probs, strict=True):
        # tf-explain returns 1 - P(malignant | occluded) per patch, resized to the image.
        one_minus = occluder.get_sensitivity_map(wrapped, img * 255.0, 0, patch_size)
        maps.append(base - (1.0 - one_minus))
    return np.stack(maps).astype(np.float32)


def saliency(model, images, labels, probs, *, outputs="probability", patch_size=None) -> dict:
    """Grad-CAM and occlusion maps of a few images.

    Returns:
        ``{"images" [k, H, W], "labels" [k], "probs" [k], "gradcam" [k, H, W] or None,
        "occlusion" [k, H, W], "gradcam_message" (why Grad-CAM was skipped, or None)}``.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected model to be a Keras model (keras.Model). Received: "
                        f"{type(model).__name__}. Load a .keras file with "
                        "nodulelearn.sensitivity.load_keras_model(path).")
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ValueError(f"Expected images of shape [k, H, W, 1] in [0, 1]. Received shape "
                         f"{list(images.shape)}.")
    patch_size = patch_size or max(2, images.shape[1] // 8)
    result = {
        "images": images[..., 0],
        "labels": np.asarray(labels),
        "probs": np.asarray(probs),
        "gradcam": None,
        "gradcam_message": None,
        "occlusion": occlusion_maps(model, images, probs, outputs=outputs, patch_size=patch_size),
    }
    try:
        result["gradcam"] = gradcam_maps(model, images)
    except SaliencyUnavailable as err:
        result["gradcam_message"] = f"Grad-CAM skipped: {err}."
        logger.warning("%s", result["gradcam_message"])
    return result


def patch_saliency(model, patches, out_dir: str, *, adapter=None, outputs="probability",
                   per_class: int = 3, label: str | None = None) -> dict:
    """Saliency of ``model`` on the first ``per_class`` benign and malignant real patches (a
    ``nodulelearn.datasets.patches.Patches``), drawn to ``out_dir``/saliency_images.png.

    Args:
        model: the classifier, read through ``adapter`` (a ``ModelAdapter``; default: our
            [0, 1] patches and ``outputs``).
        per_class: patches per class (at least 1).

    Returns:
        The maps (see ``saliency``) plus ``"file"`` and ``"adapter"``.
    """
    from nodulelearn.model_adapter import adapter_record, as_adapter
    from nodulelearn.model_io import output_column, to_probabilities
    from nodulelearn.sensitivity import figures, report

    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"Expected per_class to be a positive integer. Received: {per_class!r}")
    adapter = as_adapter(adapter, outputs)
    record = adapter_record(model, adapter)
    adapted = adapter.adapt(model)
    picks = np.concatenate([np.flatnonzero(patches.labels == c)[:per_class] for c in (0, 1)])
    images = patches.images[picks]
    raw = output_column(adapted.predict(images, batch_size=len(images), verbose=0))
    probs = to_probabilities(raw, adapter.output_kind, where=f"{adapted.name} on the patches")
    maps = saliency(adapted, images, patches.labels[picks], probs, outputs=adapter.output_kind)
    title = f"{label + ': ' if label else ''}saliency (tf-explain) on {patches.name}"
    maps["file"] = report.save_figure(os.path.join(out_dir, report.PATCH_SALIENCY_PNG),
                                      figures.saliency_figure(maps, title))
    maps["adapter"] = record
    return maps
