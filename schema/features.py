"""Feature names and keys: the one place the pipeline, trainer, evaluator and clients agree on."""

# Raw tf.Example features written by `ingest`.
IMAGE_KEY = "image"
LABEL_KEY = "label"



def raw_example_spec() -> dict:
    """The features `ingest` writes, as tf.io.parse_example takes them (for reading outside TFX)."""
    import tensorflow as tf

    return {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


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
