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


@pytest.mark.parametrize("path", ["bees/IMG_0042.jpg", "train/rouge café, 日本 (№ 1)/a b.png"])
def test_the_source_path_is_a_third_feature_both_encoders_write_alike(path: str) -> None:
    from ingest.tfrecord import ImageExampleEncoder

    image, raw = b"\x89PNG...", path.encode()
    encoded = encode_image_example("image", image, "label", 3, "source_path", raw)
    expected = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
        "source_path": tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw])),
    }))
    assert tf.train.Example.FromString(encoded) == expected
    encoder = ImageExampleEncoder("image", "label", "source_path")
    assert tf.train.Example.FromString(encoder.encode(image, 3, raw)) == expected
    # Without a path key (bench/ingest.py, old callers), the two features as before.
    plain = ImageExampleEncoder("image", "label").encode(image, 3, raw)
    assert plain == encode_image_example("image", image, "label", 3)
