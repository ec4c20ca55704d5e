import gzip

import numpy as np
import pytest
import tensorflow as tf

from ingest.tfrecord import GzipTFRecordWriter, encode_image_example


@pytest.mark.parametrize("label", [0, 1, 127, 128, 300, 2**40])
@pytest.mark.parametrize("size", [0, 1, 127, 128, 70_000])
def test_hand_encoded_example_matches_tensorflow(label: int, size: int) -> None:
    image = np.random.default_rng(size).bytes(size)
    encoded = encode_image_example("image", image, "label", label)
    expected = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    )
    assert tf.train.Example.FromString(encoded) == expected


def test_negative_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_image_example("image", b"x", "label", -1)


def test_gzip_tfrecords_read_back_with_tensorflow(tmp_path) -> None:
    path = tmp_path / "data.tfrecord.gz"
    records = [encode_image_example("image", bytes([i]) * i, "label", i) for i in range(50)]
    with GzipTFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    with gzip.open(path) as f:
        assert f.read(1)  # a real gzip stream
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]
    assert read == records
    parsed = tf.io.parse_example(
        read,
        {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    assert parsed["label"].numpy().tolist() == list(range(50))
