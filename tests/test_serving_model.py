"""The pushed model, loaded as TF Serving loads it: SavedModel + named signatures."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from cli import main
from conftest import PipelineRuns
from schema import features
from serving.predict import newest_version


@pytest.fixture(scope="module")
def loaded(pipeline_runs: PipelineRuns):
    version = newest_version(pipeline_runs.model_base)
    assert version.parent == pipeline_runs.model_base and version.name.isdigit()
    return tf.saved_model.load(str(version))


def test_signatures_are_what_clients_call(loaded) -> None:
    assert set(loaded.signatures) == {features.SERVING_SIGNATURE, features.EXAMPLES_SIGNATURE}
    serving = loaded.signatures[features.SERVING_SIGNATURE]
    _, inputs = serving.structured_input_signature
    assert list(inputs) == [features.SERVING_INPUT]
    assert inputs[features.SERVING_INPUT].dtype == tf.string
    assert inputs[features.SERVING_INPUT].shape.as_list() == [None]
    assert set(serving.structured_outputs) == {
        features.OUTPUT_CLASS_IDS, features.OUTPUT_CLASS_NAMES, features.OUTPUT_PROBABILITIES,
    }


def test_predicts_raw_png_and_jpeg_bytes(loaded, pipeline_runs: PipelineRuns) -> None:
    files = pipeline_runs.eval_files
    assert {f.suffix for f in files} == {".png", ".jpg"}
    outputs = loaded.signatures[features.SERVING_SIGNATURE](
        image=tf.constant([f.read_bytes() for f in files])
    )
    predicted = [n.decode() for n in outputs[features.OUTPUT_CLASS_NAMES].numpy()]
    truth = [f.parent.name for f in files]
    accuracy = np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
    assert accuracy >= 0.9, list(zip(predicted, truth, strict=True))
    probabilities = outputs[features.OUTPUT_PROBABILITIES].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_both_signatures_agree(loaded, pipeline_runs: PipelineRuns) -> None:
    images = [f.read_bytes() for f in pipeline_runs.eval_files]
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img]))}
            )
        ).SerializeToString()
        for img in images
    ]
    from_bytes = loaded.signatures[features.SERVING_SIGNATURE](image=tf.constant(images))
    from_examples = loaded.signatures[features.EXAMPLES_SIGNATURE](examples=tf.constant(examples))
    np.testing.assert_allclose(
        from_bytes[features.OUTPUT_PROBABILITIES].numpy(),
        from_examples[features.OUTPUT_PROBABILITIES].numpy(),
        rtol=1e-5, atol=1e-6,
    )
    assert (
        from_bytes[features.OUTPUT_CLASS_IDS].numpy().tolist()
        == from_examples[features.OUTPUT_CLASS_IDS].numpy().tolist()
    )


def test_predict_cli_prints_class_names(pipeline_runs: PipelineRuns, capsys) -> None:
    files = pipeline_runs.eval_files[:2]
    assert main(["predict", "--model-dir", str(pipeline_runs.model_base), *map(str, files)]) == 0
    out = capsys.readouterr().out
    for f in files:
        line = next(line for line in out.splitlines() if line.startswith(str(f)))
        assert line.split(": ", 1)[1].startswith(f.parent.name)


def test_predict_cli_rejects_a_folder_without_models(tmp_path, capsys) -> None:
    assert main(["predict", "--model-dir", str(tmp_path), str(tmp_path / "x.png")]) == 2
    assert "saved_model.pb" in capsys.readouterr().err


def test_warmup_requests_are_real_eval_images_that_the_model_answers(
    loaded, pipeline_runs: PipelineRuns
) -> None:
    from serving.warmup import WARMUP_BATCH_SIZES, read_warmup_requests

    version = newest_version(pipeline_runs.model_base)
    requests = read_warmup_requests(str(version))
    assert [r.inputs[features.SERVING_INPUT].tensor_shape.dim[0].size for r in requests] == list(
        WARMUP_BATCH_SIZES
    )
    eval_bytes = {f.read_bytes() for f in pipeline_runs.eval_files}
    for request in requests:
        assert request.model_spec.signature_name == features.SERVING_SIGNATURE
        images = tf.make_ndarray(request.inputs[features.SERVING_INPUT])
        assert set(images) <= eval_bytes  # the bytes clients send, unchanged
        # Replayed as TF Serving replays it at load time.
        signature = loaded.signatures[request.model_spec.signature_name]
        outputs = signature(**{k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        assert outputs[features.OUTPUT_PROBABILITIES].shape == (len(images), 3)


def test_synthetic_warmup_images_carry_no_data_and_fit_the_model() -> None:
    from serving.warmup import warmup_images
    from trainer.recipes import from_recipe

    images = warmup_images("synthetic", ["no/such/eval/files-*"], (8, 8, 3), 8)
    assert len(images) == 8 and len(set(images)) == 8
    for image in images:
        assert tuple(tf.io.decode_png(image).shape) == (8, 8, 3)
    with pytest.raises(ValueError, match="warmup must be one of"):
        from_recipe("classic", (8, 8, 3), ["a", "b"], warmup="none")
