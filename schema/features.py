"""Feature names and keys: the one place the pipeline, trainer, evaluator and clients agree on."""

# Raw tf.Example features written by `ingest`.
IMAGE_KEY = "image"
LABEL_KEY = "label"
# The image file's path relative to the folder `ingest` was given (e.g. "bees/IMG_0042.jpg"),
# UTF-8: it traces an example back to its file (the report's misclassified images) however
# ExampleGen reorders the records. Optional: data ingested before it was written has none. The
# model never reads it: Transform's preprocessing_fn and the serving signatures ignore it.
SOURCE_PATH_KEY = "source_path"


def raw_example_spec() -> dict:
    """The features `ingest` writes, as tf.io.parse_example takes them (for reading outside TFX).

    The source path is "" for examples ingested before it was written.
    """
    import tensorflow as tf

    return {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
            SOURCE_PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}


# Outputs of the Transform graph (inputs of the Keras model).
IMAGE_XF = "image_xf"
LABEL_XF = "label_xf"

# SavedModel signatures. `serving_default` is what TF Serving clients call and what the
# Evaluator validates; its single input is named after the raw feature so TFMA feeds it the
# `image` feature of each eval example.
SERVING_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "from_examples"
SERVING_INPUT = IMAGE_KEY
EXAMPLES_INPUT = "examples"

# Class names, one per line (line i = class id i), saved in <version>/assets/ of the model.
LABELS_ASSET = "labels.txt"

# Signature outputs.
OUTPUT_CLASS_IDS = "classes"
OUTPUT_CLASS_NAMES = "class_names"
OUTPUT_PROBABILITIES = "probabilities"
