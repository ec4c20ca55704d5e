"""TF Serving warm-up requests, stored in the SavedModel where TF Serving looks for them.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord of
PredictionLog protos) when it loads a version, before it reports the version available, so
the first real request does not pay for graph initialization. The requests are built from
real eval images, in the exact form clients send: raw encoded bytes to `serving_default`. They
ship with the model; with `warmup="synthetic"` they are generated noise images instead, for
data that must not leave the training environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from schema import features

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
# One request per batch size clients commonly send.
WARMUP_BATCH_SIZES = (1, 8)


def eval_images(file_patterns: Sequence[str], count: int) -> list[bytes]:
    """The first `count` raw image bytes of the (gzip TFRecord) eval examples."""
    files = sorted(f for pattern in file_patterns for f in tf.io.gfile.glob(pattern))
    spec = {features.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    return [tf.io.parse_single_example(record, spec)[features.IMAGE_KEY].numpy()
            for record in dataset]


def synthetic_images(image_shape: Sequence[int], count: int, seed: int = 0) -> list[bytes]:
    """PNG noise images of the model's shape: warm-up requests that carry no training data."""
    rng = np.random.default_rng(seed)
    return [tf.io.encode_png(rng.integers(0, 256, size=tuple(image_shape), dtype=np.uint8))
            .numpy() for _ in range(count)]


def warmup_images(warmup: str, eval_files: Sequence[str], image_shape: Sequence[int],
                  count: int) -> list[bytes]:
    if warmup == "synthetic":
        return synthetic_images(image_shape, count)
    return eval_images(eval_files, count)


def predict_request(images: Sequence[bytes]):
    """A PredictRequest for serving_default, as a TF Serving gRPC client builds it."""
    from tensorflow_serving.apis import model_pb2, predict_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(signature_name=features.SERVING_SIGNATURE)
    )
    request.inputs[features.SERVING_INPUT].CopyFrom(
        tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)])
    )
    return request


def write_warmup_requests(export_dir: str, images: Sequence[bytes]) -> str:
    from tensorflow_serving.apis import prediction_log_pb2

    if not images:
        raise ValueError("no eval images to build warm-up requests from")
    path = os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for size in WARMUP_BATCH_SIZES:
            batch = [images[i % len(images)] for i in range(size)]
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(batch))
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir: str) -> list:
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_DIR, WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
            for record in tf.data.TFRecordDataset(path)]
