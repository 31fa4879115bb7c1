"""TFRecord export/import: schema, bit-exact round trip, refusals and corrupt files."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from nodulelearn.datasets import (
    MODE_NAMES,
    MODES,
    load_spec,
    make_dataset,
    read_tfrecords,
    spec_from_dict,
    write_tfrecords,
)

# Every dataset here is one batch of N = 12 (writing uses batches of up to 256): one shape, one
# compilation of the renderer.
N, SEED = 12, 4


@pytest.fixture(scope="module")
def spec():
    return dataclasses.replace(load_spec("clinical"), image_size=32)


@pytest.fixture(scope="module")
def export(spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    paths = write_tfrecords(spec, N, SEED, out, shards=3)
    return out, paths


def batches(ds):
    return list(ds.as_numpy_iterator())


def test_files_and_description(spec, export):
    out, paths = export
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "data-00000-of-00003.tfrecord", "data-00001-of-00003.tfrecord",
        "data-00002-of-00003.tfrecord", "dataset.json"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in paths)
    description = json.loads((out / "dataset.json").read_text())
    assert spec_from_dict(description["spec"]) == spec
    assert (description["seed"], description["n"]) == (SEED, N)
    assert sum(s["count"] for s in description["shards"]) == N
    assert set(description["schema"]) == {"image", "height", "width", "label", "index"} | {
        f"mode/{m}" for m in MODE_NAMES}


def test_example_schema(spec, export):
    out, paths = export
    record = next(iter(tf.data.TFRecordDataset(paths[0])))
    example = tf.train.Example.FromString(record.numpy()).features.feature
    assert example["height"].int64_list.value == [32] == example["width"].int64_list.value
    assert example["index"].int64_list.value == [0]
    image = np.frombuffer(example["image"].bytes_list.value[0], "<f4").reshape(32, 32, 1)
    first_images, first_labels = next(make_dataset(spec, N, SEED, N).as_numpy_iterator())
    np.testing.assert_array_equal(image, first_images[0])
    assert example["label"].int64_list.value == [first_labels[0]]
    for name, mode in MODES.items():
        feature = example[f"mode/{name}"]
        if mode.is_categorical:
            assert feature.bytes_list.value[0].decode() in mode.categories
        else:
            assert len(feature.float_list.value) == 1


@pytest.mark.parametrize("with_factors", [False, True])
def test_round_trip_is_bit_exact(spec, export, with_factors):
    out, _ = export
    expected = batches(make_dataset(spec, N, SEED, N, with_factors=with_factors))
    ds = read_tfrecords(out, 5, with_factors=with_factors)
    assert ds.element_spec == make_dataset(spec, N, SEED, 5, with_factors=with_factors).element_spec
    got = batches(ds)
    assert [len(b[1]) for b in got] == [5, 5, 2]
    got = [tf.nest.map_structure(lambda *parts: np.concatenate(parts), *got)]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        if with_factors:
            assert set(a[2]) == set(b[2])
            for key in a[2]:
                assert a[2][key].dtype == b[2][key].dtype
                np.testing.assert_array_equal(a[2][key], b[2][key])


def test_single_file_reads_its_part(spec, export):
    _, paths = export
    images, labels = batches(read_tfrecords(paths[1], 100))[0]
    shard = json.loads((export[0] / "dataset.json").read_text())["shards"][1]
    start, stop = shard["start"], shard["start"] + shard["count"]
    expected = batches(make_dataset(spec, N, SEED, N))[0]
    np.testing.assert_array_equal(images, expected[0][start:stop])
    np.testing.assert_array_equal(labels, expected[1][start:stop])


def test_refuses_non_empty_output_unless_overwrite(spec, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_tfrecords(spec, N, 0, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    write_tfrecords(spec, N, 0, tmp_path, shards=2, overwrite=True)
    write_tfrecords(spec, N, 1, tmp_path, shards=1, overwrite=True)  # stale shards go
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "data-00000-of-00001.tfrecord", "dataset.json", "keep.txt"]
    with pytest.raises(ValueError, match="`shards`"):
        write_tfrecords(spec, 4, 0, tmp_path / "new", shards=5)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_corrupt_or_truncated_file_is_named(spec, tmp_path, damage):
    paths = write_tfrecords(spec, N, 0, tmp_path / "out", shards=2)
    victim = paths[1]
    data = bytearray(open(victim, "rb").read())
    if damage == "truncate":
        data = data[: len(data) - 100]
    else:
        data[len(data) // 2] ^= 0xFF
    with open(victim, "wb") as f:
        f.write(data)
    with pytest.raises(tf.errors.DataLossError, match="data-00001-of-00002.tfrecord"):
        read_tfrecords(tmp_path / "out", 4)
    with pytest.raises(tf.errors.DataLossError, match="data-00001-of-00002.tfrecord"):
        read_tfrecords(victim, 4)


def test_missing_export_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        read_tfrecords(tmp_path, 4)
    with pytest.raises(FileNotFoundError, match="No TFRecord file"):
        read_tfrecords(tmp_path / "nothing.tfrecord", 4)


# --- the reader checks dataset.json against the data -----------------------------------------

def _copy_export(spec, tmp_path, shards=3):
    out = tmp_path / "export"
    write_tfrecords(spec, N, SEED, out, shards=shards)
    return out, json.loads((out / "dataset.json").read_text())


def _write_description(out, description):
    (out / "dataset.json").write_text(json.dumps(description))


def test_a_wrong_image_size_in_the_description_is_caught(spec, tmp_path):
    out, description = _copy_export(spec, tmp_path)
    description["image_size"] = 16  # the records hold 32 x 32 images: 4 times the pixels
    _write_description(out, description)
    with pytest.raises(tf.errors.DataLossError, match=r"data-00000-of-00003.tfrecord.*32x32 "
                       r"pixels.*expected 16x16"):
        read_tfrecords(out, 4)
    # Unverified, the batch still fails rather than yielding 4 x as many images as labels.
    with pytest.raises(tf.errors.InvalidArgumentError):
        batches(read_tfrecords(out, 4, verify=False))


def test_shards_out_of_order_are_caught(spec, tmp_path):
    out, description = _copy_export(spec, tmp_path)
    shards = description["shards"]
    reordered = dict(description, shards=[shards[1], shards[0], shards[2]])
    _write_description(out, reordered)
    with pytest.raises(ValueError, match=r"shard 'data-00001-of-00003.tfrecord' starts at "
                       r"sample 4, expected 0"):
        read_tfrecords(out, 4)
    # Files swapped under their ranges: the records' own indices give them away.
    swapped = [dict(shards[0], file=shards[1]["file"], bytes=shards[1]["bytes"]),
               dict(shards[1], file=shards[0]["file"], bytes=shards[0]["bytes"]), shards[2]]
    _write_description(out, dict(description, shards=swapped))
    with pytest.raises(tf.errors.DataLossError, match=r"data-00001-of-00003.tfrecord.*samples "
                       r"\[4\]\.\.\[7\].*says 0\.\.3"):
        read_tfrecords(out, 4)


def test_a_file_cut_at_a_record_boundary_is_caught(spec, tmp_path):
    out, description = _copy_export(spec, tmp_path)
    victim = out / description["shards"][1]["file"]
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(victim))]
    with tf.io.TFRecordWriter(str(victim)) as writer:
        for record in records[:-1]:
            writer.write(record)
    with pytest.raises(tf.errors.DataLossError, match=r"data-00001-of-00003.tfrecord.*bytes"):
        read_tfrecords(out, 4)
    with pytest.raises(tf.errors.DataLossError, match=r"data-00001-of-00003.tfrecord.*bytes"):
        read_tfrecords(victim, 4)  # a single file is checked against the description beside it
    # Without the byte counts, the record count catches it.
    for shard in description["shards"]:
        del shard["bytes"]
    _write_description(out, description)
    with pytest.raises(tf.errors.DataLossError, match=r"holds 3 records.*says 4"):
        read_tfrecords(out, 4)


@pytest.mark.parametrize("text, match", [
    ("{not json", "is not valid JSON"),
    ('{"format": "x"}', "is not the description of a TFRecord export"),
])
def test_a_broken_description_is_named(tmp_path, text, match):
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_tfrecords(tmp_path, 4)


# --- the writer reports environment errors by path and leaves nothing behind -----------------

def test_a_full_disk_is_reported_and_leaves_no_file(spec, tmp_path, monkeypatch):
    import errno

    from nodulelearn.datasets.tfrecords import ExportError

    class FullDisk(tf.io.TFRecordWriter):
        def write(self, record):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tf.io, "TFRecordWriter", FullDisk)
    out = tmp_path / "full"
    with pytest.raises(ExportError, match=r"Cannot write the export to .*full'.*No space left"):
        write_tfrecords(spec, N, 0, out, shards=2)
    assert list(out.iterdir()) == []  # no shard, no temporary file, no dataset.json


def test_output_under_a_file_is_reported(spec, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        write_tfrecords(spec, N, 0, blocker)
    with pytest.raises(NotADirectoryError, match="lies under a file"):
        write_tfrecords(spec, N, 0, blocker / "sub")
