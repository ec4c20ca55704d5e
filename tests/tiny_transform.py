"""Tiny gzipped tf.Example TFRecords and a Transform graph of them, as the Trainer receives them.

The graph comes from the project's preprocessing_fn analysed by tf.Transform on Beam, as the
Transform component makes it; the TFRecords have ImportExampleGen's layout (one folder per
split). For tests that call the Trainer's code without running the pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import tensorflow_transform as tft

import imagegen
from ingest.tfrecord import GzipTFRecordWriter, encode_image_example
from schema.curated import load_schema, write_schema
from trainer.preprocessing import preprocessing_fn

SIZE = 8
# Bright-channel colour images (imagegen): learnable to 100 % in a few epochs.
TRAIN_PER_CLASS, EVAL_PER_CLASS = 80, 20


@dataclasses.dataclass(frozen=True)
class Prepared:
    transform_graph: str
    train_files: list[str]
    eval_files: list[str]


def _write_examples(path: Path, count_per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True)
    with GzipTFRecordWriter(str(path)) as writer:
        for i in range(count_per_class):
            for label, name in enumerate(imagegen.CLASS_NAMES):
                fmt = "PNG" if i % 2 else "JPEG"
                image = imagegen.image_bytes(name, rng, size=SIZE, fmt=fmt)
                writer.write(encode_image_example("image", image, "label", label))


def _analyze(train_files: list[str], schema_path: Path, output: Path, temp: Path) -> None:
    """The Transform component's job on a small scale: analyse, write the graph and raw schema."""
    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    schema = load_schema(schema_path)
    source = tfxio.TFExampleRecord(train_files, schema=schema)
    fn = functools.partial(preprocessing_fn, custom_config={"image_shape": [SIZE, SIZE, 3]})
    with beam.Pipeline() as pipeline, tft_beam.Context(temp_dir=str(temp)):
        raw = pipeline | source.BeamSource()
        transform_fn = (raw, source.TensorAdapterConfig()) | tft_beam.AnalyzeDataset(fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(output))
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        str(output / tft.TFTransformOutput.RAW_METADATA_DIR),
    )


def prepare(base: Path) -> Prepared:
    _write_examples(base / "train" / "data_tfrecord-00000-of-00001.gz", TRAIN_PER_CLASS, 0)
    _write_examples(base / "eval" / "data_tfrecord-00000-of-00001.gz", EVAL_PER_CLASS, 1)
    write_schema(len(imagegen.CLASS_NAMES), base / "schema.pbtxt")
    train_files, eval_files = [str(base / "train" / "*")], [str(base / "eval" / "*")]
    _analyze(train_files, base / "schema.pbtxt", base / "transform", base / "tmp")
    return Prepared(str(base / "transform"), train_files, eval_files)
