"""Image encoders: ``[B, H, W, 1]`` images -> ``[B, D]`` embeddings, built-in Keras layers only.

Every encoder is a functional ``keras.Model`` made of stock layers, so a saved classifier built on
it loads with ``keras.saving.load_model`` in a Python where nodulelearn is not installed.
"""

from __future__ import annotations

import keras
from keras import layers

from nodulelearn.models.registry import ENCODERS

#: Batch-norm momentum. Keras' 0.99 leaves 0.99**steps of the initial moving variance (1.0) in
#: the statistics; a run of a few hundred steps keeps ~2%, which swamps a first layer whose
#: activations vary by 1e-3 on [0, 1] CT windows, and inference collapses to one class.
BN_MOMENTUM = 0.9


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive integer. "
            f"Received: {name}={value!r}"
        )
    return value


@ENCODERS.register("compact_cnn", description="4-block plain CNN, fast on a CPU (default)")
def compact_cnn(
    image_size: int,
    *,
    width: int = 16,
    depth: int = 4,
    batch_norm: bool = True,
    stem_stride: int = 2,
    name: str = "encoder",
) -> keras.Model:
    """A plain CNN: ``depth`` blocks of 3x3 conv (+ batch norm) + ReLU, widths doubling per block.

    Blocks are separated by 2x2 max pooling; a global average pool makes the embedding. The first
    convolution has stride ``stem_stride``: stride 2 runs every block at half the resolution,
    4.1x the training throughput of stride 1 on a CPU, and a 64-pixel patch keeps its nodule
    detail (measured in docs/performance.md).

    Args:
        image_size: side of the square single-channel input images.
        width: channels of the first block; block ``i`` has ``width * 2**i``.
        depth: number of conv blocks.
        batch_norm: batch normalisation after every convolution.
        stem_stride: stride of the first convolution (1 or 2).
        name: name of the returned model.

    Returns:
        ``keras.Model`` mapping ``[B, image_size, image_size, 1]`` to ``[B, width * 2**(depth-1)]``.
    """
    _check_positive_int("image_size", image_size)
    _check_positive_int("width", width)
    _check_positive_int("depth", depth)
    if stem_stride not in (1, 2):
        raise ValueError(f"Invalid value for argument `stem_stride`. Expected 1 or 2. "
                         f"Received: stem_stride={stem_stride!r}")
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = inputs
    for block in range(depth):
        x = layers.Conv2D(
            width * 2**block, 3, strides=stem_stride if block == 0 else 1, padding="same",
            use_bias=not batch_norm, name=f"block{block}_conv",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn")(x)
        x = layers.ReLU(name=f"block{block}_relu")(x)
        if block < depth - 1:
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="embedding")(x)
    return keras.Model(inputs, x, name=name)


def _residual_unit(x, filters: int, stride: int, prefix: str):
    """A pre-activation-free ResNet basic unit: two 3x3 convs with batch norm, identity skip."""
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      name=f"{prefix}_conv1")(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_conv2")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 name=f"{prefix}_proj")(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{prefix}_proj_bn")(shortcut)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_out")(y)


@ENCODERS.register("small_resnet", description="ResNet with basic residual units (slower)")
def small_resnet(
    image_size: int,
    *,
    width: int = 16,
    depth: int = 3,
    units_per_stage: int = 1,
    name: str = "encoder",
) -> keras.Model:
    """A small ResNet: a 3x3 stem, then ``depth`` stages of basic residual units.

    Stage ``i`` has ``width * 2**i`` channels; every stage after the first halves the resolution.

    Args:
        image_size: side of the square single-channel input images.
        width: channels of the stem and first stage.
        depth: number of stages.
        units_per_stage: residual units per stage.
        name: name of the returned model.

    Returns:
        ``keras.Model`` mapping ``[B, image_size, image_size, 1]`` to ``[B, width * 2**(depth-1)]``.
    """
    _check_positive_int("image_size", image_size)
    _check_positive_int("width", width)
    _check_positive_int("depth", depth)
    _check_positive_int("units_per_stage", units_per_stage)
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage in range(depth):
        for unit in range(units_per_stage):
            stride = 2 if stage > 0 and unit == 0 else 1
            x = _residual_unit(x, width * 2**stage, stride, f"stage{stage}_unit{unit}")
    x = layers.GlobalAveragePooling2D(name="embedding")(x)
    return keras.Model(inputs, x, name=name)
