"""TFRecord export and import of a distribution, with the same element structure as make_dataset.

``write_tfrecords`` writes ``out_dir/data-KKKKK-of-NNNNN.tfrecord`` (contiguous index ranges, in
order) and ``out_dir/dataset.json`` (spec, seed, n, shards, schema). Each ``tf.train.Example``:

- ``image``: bytes, float32 little-endian raw values, row-major ``H x W x 1``;
- ``height``, ``width``, ``label`` (0 benign, 1 malignant), ``index`` (global sample index): int64;
- ``mode/<mode>``: the category name (bytes) for categorical modes, a float for continuous modes
  and for ``vessels``.

Every file is written under a temporary name and renamed when complete; ``dataset.json`` comes
last, so a directory with a ``dataset.json`` is a complete export.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from nodulelearn.atomic_files import write_text_atomic
from nodulelearn.datasets.modes import MODE_NAMES, MODES
from nodulelearn.datasets.pipeline import make_dataset
from nodulelearn.datasets.spec import DistributionSpec, load_spec, spec_from_dict

DESCRIPTION_FILE = "dataset.json"
FORMAT = "nodulelearn.tfrecords/1"
_WRITE_BATCH = 256


def schema(image_size: int) -> dict[str, dict[str, str]]:
    """The features of one ``tf.train.Example``, as written to ``dataset.json``."""
    features = {
        "image": {"type": "bytes", "description": f"float32 little-endian, row-major "
                  f"{image_size}x{image_size}x1, HU windowed to [0, 1]"},
        "height": {"type": "int64", "description": "image height in pixels"},
        "width": {"type": "int64", "description": "image width in pixels"},
        "label": {"type": "int64", "description": "0 benign, 1 malignant"},
        "index": {"type": "int64", "description": "global sample index"},
    }
    for name, mode in MODES.items():
        if mode.is_categorical:
            features[f"mode/{name}"] = {"type": "bytes",
                                        "description": "one of " + ", ".join(mode.categories)}
        else:
            features[f"mode/{name}"] = {"type": "float", "description": f"{mode.unit}"}
    return features


def write_tfrecords(
    spec: DistributionSpec | str | os.PathLike,
    n: int,
    seed: int,
    out_dir: str | os.PathLike,
    *,
    shards: int = 1,
    overwrite: bool = False,
) -> list[str]:
    """Renders samples ``0 .. n - 1`` of ``spec`` into TFRecord shards plus ``dataset.json``.

    Args:
        spec: the distribution (spec, preset name or TOML path).
        n: number of samples.
        seed: the seed (as in ``make_dataset``; the records hold exactly its elements).
        out_dir: the output folder; created if missing.
        shards: number of ``.tfrecord`` files (contiguous index ranges).
        overwrite: replace an existing, non-empty ``out_dir``'s export.

    Returns:
        The paths written: the shards in index order, then ``dataset.json``.

    Raises:
        FileExistsError: ``out_dir`` exists, is not empty and ``overwrite`` is false.
    """
    spec = load_spec(spec)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"Invalid value for argument `n`. Expected an integer >= 0. Received: n={n!r}")
    if isinstance(shards, bool) or not isinstance(shards, numbers.Integral) or not (
            1 <= shards <= max(n, 1)):
        raise ValueError(f"Invalid value for argument `shards`. Expected an integer in "
                         f"[1, max(n, 1) = {max(n, 1)}]. Received: shards={shards!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"The output path {str(out)!r} exists and is not a directory.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"The output directory {str(out)!r} exists and is not empty; "
                              "choose another or pass overwrite=True (--overwrite).")
    out.mkdir(parents=True, exist_ok=True)
    # An overwritten export is incomplete until its new description is written, last.
    (out / DESCRIPTION_FILE).unlink(missing_ok=True)
    bounds = [int(b) for b in np.linspace(0, n, shards + 1).round()]
    names = [f"data-{k:05d}-of-{shards:05d}.tfrecord" for k in range(shards)]
    paths = [str(out / name) for name in names]
    _write_shards(spec, n, seed, bounds, [out / name for name in names])
    shard_info = [
        {"file": name, "start": bounds[k], "count": bounds[k + 1] - bounds[k],
         "bytes": (out / name).stat().st_size}
        for k, name in enumerate(names)
    ]
    for stale in out.glob("*.tfrecord"):  # shards of an earlier, overwritten export
        if str(stale) not in paths:
            stale.unlink()
    description = {
        "format": FORMAT, "spec": spec.to_dict(), "seed": seed, "n": n,
        "image_size": spec.image_size, "shards": shard_info, "schema": schema(spec.image_size),
    }
    json_path = out / DESCRIPTION_FILE
    write_text_atomic(json_path, json.dumps(description, indent=2) + "\n")
    logging.info("Wrote %d samples of %r to %d shard(s) in %s", n, spec.name, shards, out)
    return paths + [str(json_path)]


def _write_shards(spec: DistributionSpec, n: int, seed: int, bounds: list[int],
                  paths: list[Path]) -> None:
    """Streams one dataset over every shard (one pipeline, one compiled renderer)."""
    tmps = [path.with_name(f".{path.name}.tmp") for path in paths]
    ds = make_dataset(spec, n, seed, _WRITE_BATCH, with_factors=True)
    shard, writer = 0, tf.io.TFRecordWriter(str(tmps[0]))
    try:
        for images, labels, factors in ds.as_numpy_iterator():
            for i in range(images.shape[0]):
                while factors["index"][i] >= bounds[shard + 1]:
                    writer.close()
                    shard += 1
                    writer = tf.io.TFRecordWriter(str(tmps[shard]))
                writer.write(_example(images[i], labels[i], factors, i).SerializeToString())
        writer.close()
        for tmp, path in zip(tmps, paths, strict=True):
            os.replace(tmp, path)
    finally:
        writer.close()
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


def _example(image: np.ndarray, label, factors, i: int) -> tf.train.Example:
    def int64(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[np.ascontiguousarray(image, "<f4").tobytes()])),
        "height": int64(image.shape[0]),
        "width": int64(image.shape[1]),
        "label": int64(label),
        "index": int64(factors["index"][i]),
    }
    for name, mode in MODES.items():
        value = factors[name][i]
        if mode.is_categorical:
            category = mode.categories[int(value)].encode()
            feature[f"mode/{name}"] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[category]))
        else:
            feature[f"mode/{name}"] = tf.train.Feature(float_list=tf.train.FloatList(
                value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def read_tfrecords(
    path_or_dir: str | os.PathLike,
    batch_size: int,
    *,
    with_factors: bool = False,
    verify: bool = True,
) -> tf.data.Dataset:
    """Reads an export back as ``make_dataset(views=1)`` would yield it, bit for bit.

    Args:
        path_or_dir: an export folder (with ``dataset.json``) or one ``.tfrecord`` file.
        batch_size: samples per batch.
        with_factors: also yield ``{mode: float32 [B], "index": int64 [B]}`` (category names are
            mapped back to their indices).
        verify: read every file once now, so that a truncated or corrupt file is reported by name
            here rather than as an anonymous error mid-training.

    Returns:
        A ``tf.data.Dataset`` of ``(images [B, H, W, 1] float32, labels int32 [B])`` (+ factors).

    Raises:
        tf.errors.DataLossError: a truncated or corrupt file (the message names it).
        FileNotFoundError: no export at ``path_or_dir``.
    """
    files, image_size, counts = _locate(Path(path_or_dir))
    if verify:
        for file, count in zip(files, counts, strict=True):
            _verify_file(file, count)
    ds = tf.data.TFRecordDataset(files)
    ds = ds.batch(batch_size).map(lambda records: _parse_batch(records, image_size, with_factors),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _locate(path: Path) -> tuple[list[str], int, list[int | None]]:
    """Shard files in index order, the image size and the expected record counts."""
    if path.is_dir():
        description_path = path / DESCRIPTION_FILE
        if not description_path.is_file():
            raise FileNotFoundError(f"No {DESCRIPTION_FILE} in {str(path)!r}: not a complete "
                                    "export of write_tfrecords / bin/export_tfrecords.")
        description = json.loads(description_path.read_text())
        spec_from_dict(description["spec"])  # fails loudly on an incompatible description
        shards = description["shards"]
        return ([str(path / s["file"]) for s in shards], int(description["image_size"]),
                [int(s["count"]) for s in shards])
    if not path.is_file():
        raise FileNotFoundError(f"No TFRecord file or export directory at {str(path)!r}.")
    first = next(iter(tf.data.TFRecordDataset([str(path)]).take(1)), None)
    if first is None:
        raise ValueError(f"The TFRecord file {str(path)!r} holds no records.")
    height = tf.io.parse_single_example(first, {"height": tf.io.FixedLenFeature([], tf.int64)})
    return [str(path)], int(height["height"]), [None]


def _verify_file(file: str, expected_count: int | None) -> None:
    try:
        count = int(tf.data.TFRecordDataset([file]).reduce(np.int64(0), lambda c, _: c + 1))
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as err:
        raise tf.errors.DataLossError(
            None, None, f"The TFRecord file {file!r} is truncated or corrupt "
            f"({err.message.splitlines()[0]}); export it again.") from None
    if expected_count is not None and count != expected_count:
        raise tf.errors.DataLossError(
            None, None, f"The TFRecord file {file!r} holds {count} records; its "
            f"{DESCRIPTION_FILE} says {expected_count}. Export it again.")


def _parse_batch(records: tf.Tensor, image_size: int, with_factors: bool):
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "index": tf.io.FixedLenFeature([], tf.int64),
    }
    for name, mode in MODES.items():
        features[f"mode/{name}"] = tf.io.FixedLenFeature(
            [], tf.string if mode.is_categorical else tf.float32)
    parsed = tf.io.parse_example(records, features)
    pixels = tf.io.decode_raw(parsed["image"], tf.float32, little_endian=True)
    images = tf.reshape(pixels, [-1, image_size, image_size, 1])
    labels = tf.cast(parsed["label"], tf.int32)
    if not with_factors:
        return images, labels
    factors = {}
    for name in MODE_NAMES:
        value = parsed[f"mode/{name}"]
        if MODES[name].is_categorical:
            value = _category_index(name, value)
        factors[name] = value
    factors["index"] = parsed["index"]
    return images, labels, factors


def _category_index(mode: str, names: tf.Tensor) -> tf.Tensor:
    """Category names ``[B]`` -> float32 indices ``[B]``; unknown names fail with the valid ones."""
    categories = MODES[mode].categories
    matches = tf.equal(names[:, None], tf.constant(categories)[None, :])
    tf.debugging.assert_equal(
        tf.reduce_all(tf.reduce_any(matches, axis=1)), True,
        message=f"Unknown category in mode/{mode}; valid: {', '.join(categories)}")
    return tf.cast(tf.argmax(tf.cast(matches, tf.int32), axis=1), tf.float32)
