"""TFRecord export and import of a distribution, with the same element structure as make_dataset.

``write_tfrecords`` writes ``out_dir/data-KKKKK-of-NNNNN.tfrecord`` (contiguous index ranges, in
order) and ``out_dir/dataset.json`` (spec, seed, n, shards, schema). Each ``tf.train.Example``:

- ``image``: bytes, float32 little-endian raw values, row-major ``H x W x 1``;
- ``height``, ``width``, ``label`` (0 benign, 1 malignant), ``index`` (global sample index): int64;
- ``mode/<mode>``: the category name (bytes) for categorical modes, a float for continuous modes
  and for ``vessels``.

Every file is written under a temporary name and renamed when complete (``atomic_files``);
``dataset.json`` comes last, so a directory with a ``dataset.json`` is a complete export. The
reader does not trust the description: it checks every shard's size, record count, sample
indices (so shards out of order are caught) and image size against the records themselves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import numbers
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from nodulelearn.atomic_files import atomic_path, write_text_atomic
from nodulelearn.datasets.modes import MODE_NAMES, MODES
from nodulelearn.datasets.pipeline import make_dataset
from nodulelearn.datasets.spec import DistributionSpec, load_spec, spec_from_dict

DESCRIPTION_FILE = "dataset.json"
FORMAT = "nodulelearn.tfrecords/1"
_WRITE_BATCH = 256
_VERIFY_BATCH = 1024
logger = logging.getLogger(__name__)


class ExportError(OSError):
    """The export could not be written (disk full, no permission, ...); names the path."""


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
        NotADirectoryError: ``out_dir`` (or a folder above it) is a file.
        ExportError: writing failed (disk full, read-only folder, ...); no shard and no
            ``dataset.json`` of this export is left behind.
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
    try:
        return _write_export(spec, n, seed, out, shards)
    except NotADirectoryError:
        raise NotADirectoryError(
            f"The output path {str(out)!r} lies under a file, not a directory.") from None
    except (OSError, tf.errors.OpError) as err:
        raise ExportError(f"Cannot write the export to {str(out)!r}: {_reason(err)}.") from None


def _reason(err: Exception) -> str:
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return err.message.splitlines()[0] if err.message else type(err).__name__


def _write_export(spec: DistributionSpec, n: int, seed: int, out: Path, shards: int) -> list[str]:
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
    logger.info("Wrote %d samples of %r to %d shard(s) in %s", n, spec.name, shards, out)
    return paths + [str(json_path)]


def _write_shards(spec: DistributionSpec, n: int, seed: int, bounds: list[int],
                  paths: list[Path]) -> None:
    """Streams one dataset over every shard (one pipeline, one compiled renderer).

    Each shard is written to a temporary file (``atomic_files.atomic_path``); all of them are
    renamed into place only when every shard is complete, and removed on any failure.
    """
    ds = make_dataset(spec, n, seed, _WRITE_BATCH, with_factors=True)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(path)) for path in paths]
        shard, writer = 0, tf.io.TFRecordWriter(tmps[0])
        try:
            for images, labels, factors in ds.as_numpy_iterator():
                for i in range(images.shape[0]):
                    while factors["index"][i] >= bounds[shard + 1]:
                        writer.close()
                        shard += 1
                        writer = tf.io.TFRecordWriter(tmps[shard])
                    writer.write(_example(images[i], labels[i], factors, i).SerializeToString())
            writer.flush()
        finally:
            writer.close()


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
    """Reads an export back as ``make_dataset`` would yield it, bit for bit.

    ``dataset.json`` is checked, not trusted: its shards must be contiguous index ranges in
    order and each file must have the size it states; with ``verify``, every record's index and
    image size must match too. A single ``.tfrecord`` file is checked against the
    ``dataset.json`` next to it when there is one.

    Args:
        path_or_dir: an export folder (with ``dataset.json``) or one ``.tfrecord`` file.
        batch_size: samples per batch.
        with_factors: also yield ``{mode: float32 [B], "index": int64 [B]}`` (category names are
            mapped back to their indices).
        verify: read every file once now, so that a truncated, cut, reordered or mislabelled
            file is reported by name here rather than as an anonymous error mid-training.

    Returns:
        A ``tf.data.Dataset`` of ``(images [B, H, W, 1] float32, labels int32 [B])`` (+ factors).

    Raises:
        tf.errors.DataLossError: a file that does not match its description (the message names
            the file and what is wrong).
        FileNotFoundError: no export at ``path_or_dir``.
        ValueError: a ``dataset.json`` that is not valid JSON or not an export's description.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or (
            batch_size < 1):
        raise ValueError(f"Invalid value for argument `batch_size`. Expected an integer >= 1. "
                         f"Received: batch_size={batch_size!r}")
    shards, image_size = _locate(Path(path_or_dir))
    for shard in shards:
        _check_size(shard)
        if verify:
            _verify_file(shard, image_size)
    ds = tf.data.TFRecordDataset([shard["path"] for shard in shards])
    ds = ds.batch(batch_size).map(lambda records: _parse_batch(records, image_size, with_factors),
                                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _load_description(description_path: Path) -> dict:
    try:
        description = json.loads(description_path.read_text())
        spec_from_dict(description["spec"])  # fails loudly on an incompatible description
        shards = description["shards"]
        image_size = int(description["image_size"])
        for shard in shards:
            str(shard["file"]), int(shard["start"]), int(shard["count"])
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(description_path)!r} is not valid JSON ({err}); export the "
                         "dataset again.") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{str(description_path)!r} is not the description of a TFRecord "
                         f"export ({type(err).__name__}: {err}); export the dataset again.") from None
    position = 0
    for shard in shards:  # contiguous index ranges, in order
        if int(shard["start"]) != position or int(shard["count"]) < 0:
            raise ValueError(
                f"{str(description_path)!r}: shard {shard['file']!r} starts at sample "
                f"{shard['start']}, expected {position} (shards must be listed in index order, "
                "as written); export the dataset again.")
        position += int(shard["count"])
    if "n" in description and int(description["n"]) != position:
        raise ValueError(f"{str(description_path)!r}: its shards hold {position} samples, its "
                         f"`n` says {description['n']}; export the dataset again.")
    return {"shards": shards, "image_size": image_size}


def _locate(path: Path) -> tuple[list[dict], int]:
    """The shards in index order (path, start, count, bytes; None where unknown), image size."""
    if path.is_dir():
        description_path = path / DESCRIPTION_FILE
        if not description_path.is_file():
            raise FileNotFoundError(f"No {DESCRIPTION_FILE} in {str(path)!r}: not a complete "
                                    "export of write_tfrecords / bin/export_tfrecords.")
        description = _load_description(description_path)
        shards = [dict(path=str(path / s["file"]), start=int(s["start"]), count=int(s["count"]),
                       bytes=s.get("bytes")) for s in description["shards"]]
        return shards, description["image_size"]
    if not path.is_file():
        raise FileNotFoundError(f"No TFRecord file or export directory at {str(path)!r}.")
    description_path = path.parent / DESCRIPTION_FILE
    if description_path.is_file():
        description = _load_description(description_path)
        for s in description["shards"]:
            if s["file"] == path.name:
                shard = dict(path=str(path), start=int(s["start"]), count=int(s["count"]),
                             bytes=s.get("bytes"))
                return [shard], description["image_size"]
    first = next(iter(tf.data.TFRecordDataset([str(path)]).take(1)), None)
    if first is None:
        raise ValueError(f"The TFRecord file {str(path)!r} holds no records.")
    height = tf.io.parse_single_example(first, {"height": tf.io.FixedLenFeature([], tf.int64)})
    return [dict(path=str(path), start=None, count=None, bytes=None)], int(height["height"])


def _data_loss(file: str, problem: str) -> tf.errors.DataLossError:
    return tf.errors.DataLossError(None, None, f"The TFRecord file {file!r} {problem}; export it "
                                   "again.")


def _check_size(shard: dict) -> None:
    """The file exists and has the size its description states (a cut file is caught here)."""
    file = shard["path"]
    if not os.path.isfile(file):
        raise FileNotFoundError(f"The TFRecord file {file!r} listed in {DESCRIPTION_FILE} does "
                                "not exist; export the dataset again.")
    size = os.path.getsize(file)
    if shard["bytes"] is not None and size != int(shard["bytes"]):
        raise _data_loss(file, f"has {size} bytes; its {DESCRIPTION_FILE} says {shard['bytes']}")


def _verify_file(shard: dict, image_size: int) -> None:
    """Every record is readable, and count, indices and image sizes are the described ones."""
    file = shard["path"]
    features = {"index": tf.io.FixedLenFeature([], tf.int64),
                "height": tf.io.FixedLenFeature([], tf.int64),
                "width": tf.io.FixedLenFeature([], tf.int64),
                "image": tf.io.FixedLenFeature([], tf.string)}

    def summary(records):
        parsed = tf.io.parse_example(records, features)
        return (parsed["index"], parsed["height"], parsed["width"],
                tf.strings.length(parsed["image"]))

    parts = []
    try:
        ds = tf.data.TFRecordDataset([file]).batch(_VERIFY_BATCH).map(summary)
        parts = list(ds.as_numpy_iterator())
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as err:
        raise _data_loss(file, f"is truncated or corrupt ({err.message.splitlines()[0]})") from None
    except tf.errors.InvalidArgumentError as err:
        raise _data_loss(file, f"holds a record that is not a nodulelearn example "
                         f"({err.message.splitlines()[0]})") from None
    index, height, width, nbytes = (np.concatenate([p[k] for p in parts]) if parts else
                                    np.zeros(0, np.int64) for k in range(4))
    count = len(index)
    if shard["count"] is not None and count != shard["count"]:
        raise _data_loss(file, f"holds {count} records; its {DESCRIPTION_FILE} says "
                         f"{shard['count']}")
    if shard["start"] is not None and not np.array_equal(
            index, np.arange(shard["start"], shard["start"] + count)):
        raise _data_loss(file, f"holds samples {index[:1].tolist()}..{index[-1:].tolist()}; its "
                         f"{DESCRIPTION_FILE} says {shard['start']}..{shard['start'] + count - 1} "
                         "(shards out of order or mixed)")
    expected_bytes = image_size * image_size * 4
    wrong = (height != image_size) | (width != image_size) | (nbytes != expected_bytes)
    if wrong.any():
        k = int(np.argmax(wrong))
        raise _data_loss(file, f"holds images of {height[k]}x{width[k]} pixels ({nbytes[k]} "
                         f"bytes); expected {image_size}x{image_size} ({expected_bytes} bytes) "
                         f"as its {DESCRIPTION_FILE} says")


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
    # The batch size from the labels, not -1: images of another size fail here instead of
    # turning 64 records into 256 images.
    images = tf.reshape(pixels, [tf.shape(parsed["label"])[0], image_size, image_size, 1])
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
