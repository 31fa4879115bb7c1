"""One input/output adapter between our rendered patches and any lung-nodule classifier.

Our patches are single-channel float32 in [0, 1]: HU through the lung window
``[WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2, WINDOW_LEVEL_HU + WINDOW_WIDTH_HU / 2]`` = [-1250, 450]
HU (``nodulelearn.datasets.render``). Classifiers trained on real CT expect other things; the
adapter turns our patch into what the model takes and its output into P(malignant):

- channels: read from the model (1 or 3); the single channel is repeated to 3 when needed;
- size: the model's own (the caller renders at ``model_image_size``), unchanged here;
- intensity (``input_intensity``):
    ``unit``               the window scaled to [0, 1] (our patches as they are; the default)
    ``hu``                 Hounsfield units (inside the window; the window clips what lies outside)
    ``window:LOW,HIGH``    the HU window [LOW, HIGH] scaled to [0, 1] and clipped
    ``zscore:MEAN,STD``    (HU - MEAN) / STD
    ``imagenet``           the [0, 1] window on 3 channels, then ImageNet's per-channel mean / std
    ``uint8``              the window scaled to 0-255
  The values of ``window`` and ``zscore`` go through the project's one parameter grammar
  (``nodulelearn.params``): ``window:-1000,400`` or ``window:low=-1000,high=400``.
- outputs: ``probability`` (P(malignant), one unit), ``logit`` (one unit), or ``softmax:INDEX``
  (a k-unit softmax whose class INDEX is malignant). Several output tensors are refused.

``ModelAdapter.adapt(model)`` returns a Keras model that takes our ``[B, S, S, 1]`` patch and
outputs one column, P(malignant) or its logit (``output_kind``), so everything downstream (the
predictor, saliency, evaluation) sees one convention. The unit/probability/logit adapter of a
one-channel model returns the model itself (bit-identical to the analysis before adapters).
``describe`` is what every output file stores as ``"adapter"``.
"""

from __future__ import annotations

import dataclasses
import math
import weakref

from nodulelearn import params as param_grammar
from nodulelearn.model_io import ModelLoadError, ModelOutputError

INTENSITIES = ("unit", "hu", "window:LOW,HIGH", "zscore:MEAN,STD", "imagenet", "uint8")
OUTPUT_FORMS = ("probability", "logit", "softmax:INDEX")
CHANNELS = (1, 3)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The two values each parametrised intensity takes, in order.
_INTENSITY_PARAMS = {"window": ("low", "high"), "zscore": ("mean", "std")}
# Adapted model -> the record of the adapter that made it, so that code handed the adapted model
# (the predictor, the encoding) stores what the model really is.
_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _window_hu() -> tuple[float, float]:
    """(lowest HU, width in HU) of the window our patches are rendered through."""
    from nodulelearn.datasets.render import WINDOW_LEVEL_HU, WINDOW_WIDTH_HU

    return WINDOW_LEVEL_HU - WINDOW_WIDTH_HU / 2.0, WINDOW_WIDTH_HU


def _intensity_error(text, why: str) -> ValueError:
    return ValueError(f"Invalid input_intensity {text!r}: {why}. Expected one of "
                      f"{', '.join(INTENSITIES)} (e.g. window:-1000,400 or zscore:-600,300).")


def parse_intensity(text) -> tuple[str, dict[str, float]]:
    """``"window:-1000,400"`` -> ``("window", {"low": -1000.0, "high": 400.0})``.

    Raises:
        ValueError: an unknown name, missing or extra values, a value that is not a finite number,
            LOW >= HIGH or STD <= 0 (the message lists the valid forms).
    """
    if not isinstance(text, str):
        raise _intensity_error(text, f"expected a string, received a {type(text).__name__}")
    name, has_values, rest = text.strip().partition(":")
    name = name.strip().lower()
    keys = _INTENSITY_PARAMS.get(name)
    if name not in ("unit", "hu", "imagenet", "uint8") and keys is None:
        raise _intensity_error(text, f"unknown form {name!r}")
    if keys is None:
        if has_values:
            raise _intensity_error(text, f"{name!r} takes no values")
        return name, {}
    try:
        if "=" in rest:
            values = param_grammar.parse_params(rest, what=f"input_intensity {name}")
        else:
            values = dict(zip(keys, (param_grammar.parse_value(v) for v in rest.split(",")),
                              strict=False))
            if len(rest.split(",")) != len(keys) or not rest.strip():
                raise ValueError(f"expected {len(keys)} values")
    except ValueError as err:
        raise _intensity_error(text, f"{name} takes {','.join(k.upper() for k in keys)} ({err})"
                               ) from None
    if sorted(values) != sorted(keys):
        raise _intensity_error(text, f"{name} takes the keys {', '.join(keys)}")
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise _intensity_error(text, f"{key} must be a finite number, received {value!r}")
    values = {k: float(values[k]) for k in keys}
    if name == "window" and values["low"] >= values["high"]:
        raise _intensity_error(text, "LOW must be below HIGH")
    if name == "zscore" and values["std"] <= 0:
        raise _intensity_error(text, "STD must be positive")
    return name, values


def parse_outputs(text) -> tuple[str, int | None]:
    """``"softmax:1"`` -> ``("softmax", 1)``; ``"logit"`` -> ``("logit", None)``.

    Raises:
        ValueError: an unknown form or an INDEX that is not a non-negative integer.
    """
    expected = f"Expected one of {', '.join(OUTPUT_FORMS)} (INDEX: the malignant class)."
    if not isinstance(text, str):
        raise ValueError(f"Invalid outputs {text!r}. {expected}")
    name, has_index, rest = text.strip().partition(":")
    name = name.strip().lower()
    if name in ("probability", "logit") and not has_index:
        return name, None
    if name != "softmax":
        raise ValueError(f"Invalid outputs {text!r}: unknown form {name!r}. {expected}")
    index = param_grammar.parse_value(rest)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"Invalid outputs {text!r}: softmax needs the malignant class's index, "
                         f"a non-negative integer (e.g. softmax:1). {expected}")
    return name, index


def _check_keras_model(model, what: str) -> None:
    import keras

    if not isinstance(model, keras.Model):
        shown = f" {model!r}" if isinstance(model, str) else ""
        raise TypeError(
            f"Expected {what} to be a Keras model (keras.Model). Received: "
            f"{type(model).__name__}{shown}. Load a .keras file with "
            "nodulelearn.sensitivity.load_keras_model(path), a run with "
            "nodulelearn.load_run(path) (its .model and .encoder).")


def _declared(tensors) -> list:
    return list(tensors) if tensors else []


@dataclasses.dataclass(frozen=True)
class ModelAdapter:
    """How our ``[B, S, S, 1]`` [0, 1] patches feed a model and how its output is read.

    Args:
        input_intensity: one of ``INTENSITIES`` (module doc).
        outputs: ``probability``, ``logit`` or ``softmax:INDEX``.

    Raises:
        ValueError: a form that does not parse (the message lists the valid ones).
    """

    input_intensity: str = "unit"
    outputs: str = "probability"

    def __post_init__(self):
        parse_intensity(self.input_intensity)
        parse_outputs(self.outputs)

    @property
    def intensity(self) -> tuple[str, dict[str, float]]:
        return parse_intensity(self.input_intensity)

    @property
    def output_kind(self) -> str:
        """What the adapted model outputs: ``"probability"`` (also for a softmax) or ``"logit"``."""
        name, _ = parse_outputs(self.outputs)
        return "logit" if name == "logit" else "probability"

    def channels(self, model) -> int:
        """The model's declared input channels (1 or 3); 1 for a model that declares none."""
        inputs = _declared(getattr(model, "inputs", None))
        if len(inputs) > 1:
            raise ModelLoadError(f"Expected a model with one image input. Received a model with "
                                 f"{len(inputs)} inputs.")
        if not inputs:
            return 1
        shape = tuple(inputs[0].shape)
        if len(shape) != 4 or shape[-1] not in CHANNELS:
            raise ModelLoadError(f"Expected a model input of shape [B, H, W, C] with C in "
                                 f"{CHANNELS}. Received input shape {shape}.")
        return int(shape[-1])

    def is_identity(self, model) -> bool:
        """Whether ``model`` takes our patches as they are and outputs one column."""
        return (self.intensity[0] == "unit" and parse_outputs(self.outputs)[0] != "softmax"
                and self.channels(model) == 1)

    def describe(self, model=None) -> dict:
        """The adapter as stored in every output it shapes (JSON-able)."""
        record = {"input_intensity": self.input_intensity, "outputs": self.outputs}
        if model is not None:
            inputs = _declared(getattr(model, "inputs", None))
            record["channels"] = self.channels(model)
            record["model_input_shape"] = list(inputs[0].shape[1:]) if inputs else None
        return record

    def _check_outputs(self, model) -> None:
        outputs = _declared(getattr(model, "outputs", None))
        name, index = parse_outputs(self.outputs)
        if len(outputs) > 1:
            raise ModelOutputError(
                f"Expected a classifier with one output tensor. Received a model with "
                f"{len(outputs)} outputs; wrap it so that it returns only the class scores.")
        if not outputs:
            return
        shape = tuple(outputs[0].shape)
        units = shape[-1] if len(shape) == 2 else (1 if len(shape) == 1 else None)
        if units is None:
            raise ModelOutputError(f"Expected the model to output [B, units] per image. "
                                   f"Received output shape {shape}.")
        if name == "softmax" and (units is not None and index >= units):
            raise ModelOutputError(
                f"Invalid outputs {self.outputs!r}: INDEX {index} is out of range for a model "
                f"with {units} output unit(s); valid: 0..{units - 1}.")
        if name != "softmax" and units != 1:
            raise ModelOutputError(
                f"Expected one P(malignant) (or logit) per image for outputs={self.outputs!r}. "
                f"Received output shape {shape}: for a {units}-class softmax pass "
                "--outputs=softmax:INDEX (library: outputs='softmax:INDEX'), INDEX being the "
                "malignant class.")

    def transform(self, images, channels: int):
        """Our [0, 1] patches ``[B, H, W, 1]`` as the model takes them (keras.ops; also on
        symbolic tensors)."""
        from keras import ops

        name, values = self.intensity
        low, width = _window_hu()
        x = images
        if name == "hu":
            x = x * width + low
        elif name == "window":
            hu = x * width + low
            x = ops.clip((hu - values["low"]) / (values["high"] - values["low"]), 0.0, 1.0)
        elif name == "zscore":
            x = (x * width + low - values["mean"]) / values["std"]
        elif name == "uint8":
            x = x * 255.0
        if channels == 3:
            x = ops.repeat(x, 3, axis=-1)
        if name == "imagenet":
            x = (x - ops.convert_to_tensor(IMAGENET_MEAN)) / ops.convert_to_tensor(IMAGENET_STD)
        return x

    def _wrap(self, model, select_output: bool):
        import keras

        channels = self.channels(model)
        if self.intensity[0] == "imagenet" and channels != 3:
            raise ModelLoadError("input_intensity='imagenet' normalises 3 channels with "
                                 "ImageNet's mean and std; this model takes 1 channel. Use "
                                 "unit, hu, window:LOW,HIGH, zscore:MEAN,STD or uint8.")
        inputs = _declared(getattr(model, "inputs", None))
        if not inputs:
            raise ModelLoadError(
                f"The adapter (input_intensity={self.input_intensity!r}, outputs="
                f"{self.outputs!r}) needs a model that declares its input shape; this "
                f"{type(model).__name__} declares none (build it on a keras.Input).")
        size = tuple(inputs[0].shape[1:3])
        image = keras.Input((*size, 1), name="patch")
        y = model(self.transform(image, channels))
        _, index = parse_outputs(self.outputs)
        if select_output and index is not None:
            y = y[:, index:index + 1]
        if not select_output:
            # The embedding as a top-level layer of the wrapper (the nested model's own output
            # belongs to its own graph), so the layer-wise encoding can read it.
            y = keras.layers.Identity(name="embedding")(y)
        return keras.Model(image, y, name=f"{model.name}_adapted")

    def adapt(self, model):
        """A Keras model ``[B, S, S, 1]`` (our patches) -> ``[B, 1]`` of ``output_kind``.

        Raises:
            ModelLoadError: not 1 or 3 input channels, several inputs, ImageNet on 1 channel.
            ModelOutputError: several outputs, a softmax INDEX out of range, several units
                without ``softmax:INDEX``.
        """
        _check_keras_model(model, "model")
        self._check_outputs(model)
        if self.is_identity(model):
            return model
        return self._cached(model, "model", lambda: self._wrap(model, select_output=True))

    def _cached(self, model, kind: str, build):
        """One adapted model per (model, adapter): Grad-CAM needs the model called only once
        inside its wrapper. Kept on the model itself (bypassing Keras' attribute tracking), so
        that it goes when the model goes."""
        cache = getattr(model, "_nodulelearn_adapted", None)
        if not isinstance(cache, dict):
            cache = {}
            object.__setattr__(model, "_nodulelearn_adapted", cache)
        key = (kind, self.input_intensity, self.outputs)
        if key not in cache:
            cache[key] = build()
            _RECORDS[cache[key]] = self.describe(model)
        return cache[key]

    def adapt_encoder(self, encoder):
        """``encoder`` taking our patches: only the input side applies (embeddings unchanged)."""
        _check_keras_model(encoder, "encoder")
        if self.intensity[0] == "unit" and self.channels(encoder) == 1:
            return encoder
        return self._cached(encoder, "encoder", lambda: self._wrap(encoder, select_output=False))


DEFAULT = ModelAdapter()


def adapter_record(model, adapter=None) -> dict:
    """What ``model`` is fed and how it is read, as stored in output files: the record of the
    adapter that made ``model`` (``ModelAdapter.adapt``), else ``adapter``'s (default: ours)."""
    try:
        record = _RECORDS.get(model)
    except TypeError:  # an object that cannot be weakly referenced was never adapted
        record = None
    return dict(record) if record is not None else (adapter or DEFAULT).describe(model)


def as_adapter(adapter=None, outputs: str = "probability") -> ModelAdapter:
    """``adapter`` itself, or the adapter of ``outputs`` alone (unit intensity) when it is None.

    Raises:
        TypeError: ``adapter`` is neither a ``ModelAdapter`` nor None.
        ValueError: both an adapter and a non-default ``outputs`` that disagree.
    """
    if adapter is None:
        return ModelAdapter(outputs=outputs)
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f"Expected adapter to be a nodulelearn.model_adapter.ModelAdapter or "
                        f"None. Received: {type(adapter).__name__}")
    if outputs != "probability" and outputs != adapter.outputs:
        raise ValueError(f"Expected one outputs setting. Received outputs={outputs!r} and an "
                         f"adapter with outputs={adapter.outputs!r}; set it on the adapter only.")
    return adapter
