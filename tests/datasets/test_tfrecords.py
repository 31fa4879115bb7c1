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
