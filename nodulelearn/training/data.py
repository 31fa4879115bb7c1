"""Training data: a fixed, in-memory training set streamed epoch by epoch.

The order and the augmentation of epoch ``k`` are pure functions of ``(seed, k, step)``, never of
an iterator's state: a run resumed at epoch ``k`` after an interruption sees exactly the batches
an uninterrupted run sees (tf.data shuffle seeds, by contrast, restart with the iterator).
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow as tf

from nodulelearn.training.augment import AugmentFn


def split_seed(seed: int, split: str) -> int:
    """A data seed for one split (``"train"``, ``"val"``, ``"test"``) of run seed ``seed``.

    Stable across Python processes (unlike ``hash``) and distinct per split, so train, validation
    and test sets never share samples.
    """
    return zlib.crc32(f"{seed}/{split}".encode()) & 0x7FFFFFFF


def render_split(spec, n: int, seed: int, *, class_balanced: bool = False,
                 batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Renders ``n`` samples of ``spec`` into memory.

    Returns:
        ``(images float32 [n, H, W, 1], labels int32 [n])``.
    """
    from nodulelearn.datasets import make_dataset

    images, labels = [], []
    dataset = make_dataset(spec, n, seed, batch_size, class_balanced=class_balanced)
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def epoch_permutation(labels: tf.Tensor, seed: int, epoch: tf.Tensor,
                      class_balanced: bool) -> tf.Tensor:
    """The sample order of one epoch, drawn from ``(seed, epoch)`` only.

    Args:
        labels: int32 ``[N]``.
        seed: run data seed.
        epoch: int64 scalar.
        class_balanced: interleave the shuffled benign and malignant samples (0, 1, 0, 1, ...), so
            every even-sized batch holds both classes equally; the longer class is cut.

    Returns:
        int32 indices ``[M]`` (``M = N``, or twice the smaller class count when balanced).
    """
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    if not class_balanced:
        return tf.random.experimental.stateless_shuffle(tf.range(tf.size(labels)), key)
    keys = tf.random.experimental.stateless_split(key, num=2)
    benign = tf.random.experimental.stateless_shuffle(
        tf.cast(tf.where(tf.equal(labels, 0))[:, 0], tf.int32), keys[0])
    malignant = tf.random.experimental.stateless_shuffle(
        tf.cast(tf.where(tf.equal(labels, 1))[:, 0], tf.int32), keys[1])
    pairs = tf.minimum(tf.size(benign), tf.size(malignant))
    return tf.reshape(tf.stack([benign[:pairs], malignant[:pairs]], axis=1), [-1])


def steps_per_epoch(labels: np.ndarray, batch_size: int, class_balanced: bool) -> int:
    """Full batches per epoch (the last partial batch is dropped: static shapes, balanced pairs)."""
    usable = 2 * min(np.sum(labels == 0), np.sum(labels == 1)) if class_balanced else len(labels)
    steps = int(usable) // batch_size
    if steps < 1:
        raise ValueError(
            f"The training set is too small for one batch: {int(usable)} usable samples "
            f"(n_train={len(labels)}, class_balanced={class_balanced}) < batch_size={batch_size}."
        )
    return steps


def epoch_stream(
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    start_epoch: int,
    epochs: int,
    batch_size: int,
    views: int = 1,
    augment: AugmentFn | None = None,
    class_balanced: bool = False,
    shard: tuple[int, int] = (0, 1),
    replicas: int = 1,
) -> tf.data.Dataset:
    """Batches of epochs ``start_epoch .. epochs-1`` in order, ``steps_per_epoch`` each.

    Args:
        inputs: ``[N, ...]`` (images ``[N, H, W, 1]`` or precomputed features ``[N, D]``).
        labels: int32 ``[N]``.
        seed: data seed; with the epoch and step it fixes order and augmentation.
        start_epoch: first epoch to stream (the epoch a resumed run continues from).
        epochs: one past the last epoch.
        batch_size: global batch size.
        views: augmented views per sample. With ``views > 1`` the inputs of a batch are the views
            stacked sample-major, ``[b * views, ...]`` (``b0v0, b0v1, b1v0, ...``), and the labels
            stay ``[b]``: splitting both along axis 0 keeps them matched on every replica.
        augment: ``(images, seed[2]) -> images`` applied per view, or None.
        class_balanced: see ``epoch_permutation``.
        shard: ``(index, count)`` of this input pipeline; it yields its slice of each global batch.
        replicas: replicas fed by this pipeline; each global-batch slice is split into that many
            consecutive per-replica batches (``tf.distribute`` input-function convention).

    Returns:
        ``tf.data.Dataset`` of ``(inputs [b * views, ...] float32, labels int32 [b])``.
    """
    steps = steps_per_epoch(labels, batch_size, class_balanced)
    index, count = shard
    if batch_size % (count * replicas):
        raise ValueError(f"batch_size={batch_size} must be divisible by the number of replicas "
                         f"({count * replicas}).")
    local = batch_size // count
    per_replica = local // replicas
    inputs_t = tf.constant(inputs)
    labels_t = tf.constant(labels, tf.int32)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        order = epoch_permutation(labels_t, seed, epoch, class_balanced)[: steps * batch_size]
        batches = tf.reshape(order, [steps, count, replicas, per_replica])[:, index]
        step_ids = tf.repeat(tf.range(steps, dtype=tf.int64), replicas)
        replica_ids = tf.tile(tf.range(replicas, dtype=tf.int64), [steps])
        epochs_t = tf.fill([steps * replicas], tf.cast(epoch, tf.int64))
        return tf.data.Dataset.from_tensor_slices(
            (tf.reshape(batches, [steps * replicas, per_replica]), epochs_t, step_ids, replica_ids))

    def make_batch(indices, epoch, step, replica):
        x = tf.gather(inputs_t, indices)
        y = tf.gather(labels_t, indices)
        if augment is None and views == 1:
            return x, y
        key = tf.constant([seed, 0], tf.int64)
        for value in (epoch, step, tf.cast(index, tf.int64), replica):
            key = tf.random.experimental.stateless_fold_in(key, value)
        view_keys = tf.random.experimental.stateless_split(key, num=views)
        outs = [x if augment is None else augment(x, view_keys[v]) for v in range(views)]
        if views == 1:
            return outs[0], y
        stacked = tf.stack(outs, axis=1)  # [b, V, ...] -> sample-major [b * V, ...]
        return tf.reshape(stacked, tf.concat([[-1], tf.shape(x)[1:]], 0)), y

    dataset = tf.data.Dataset.range(start_epoch, epochs).flat_map(one_epoch)
    dataset = dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
