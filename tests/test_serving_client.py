"""The TF Serving client, through a stand-in tensorflow_model_server (tests/serving_standin.py:
REST and gRPC front ends over real SavedModels that answer as TF Serving's source does).

The states a client meets (version START/LOADING, unknown model, version or signature, bad
input, a failed load, no server yet) run on a small SavedModel written here, so they need no
pipeline run. Requests and round trips with the pipeline's own model check the answers against
the in-process model. With TF_SERVING_URL set, the live test calls a real server.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_standin import Core, StandIn

import imagegen
from cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from cli.main import explain
from conftest import MODEL_NAME, PipelineRuns
from schema import features
from serving.client import (
    BAD_INPUT,
    LOADING,
    NOT_LOADED,
    UNKNOWN_MODEL,
    UNKNOWN_SIGNATURE,
    UNKNOWN_VERSION,
    UNREACHABLE,
    RequestError,
    ServingError,
    predict_grpc,
    predict_rest,
    rest_body,
)
from serving.predict import newest_version
from serving.warmup import predict_request

PROTOCOLS = pytest.mark.parametrize("protocol", ["rest", "grpc"])
TINY_CLASSES = ("red", "green", "blue")  # the brightest channel, in RGB order


def _call(protocol: str):
    return predict_rest if protocol == "rest" else predict_grpc


class _TinyModel(tf.Module):
    """The pipeline's serving signature on a model that needs no training: PNG bytes in;
    classes, class names and probabilities out (from the mean colour).
    """

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        def mean_rgb(data: tf.Tensor) -> tf.Tensor:
            pixels = tf.cast(tf.io.decode_png(data, channels=3), tf.float32)
            return tf.reduce_mean(pixels, axis=[0, 1])

        means = tf.map_fn(mean_rgb, image, fn_output_signature=tf.float32)
        probabilities = tf.nn.softmax(means / 16.0)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            features.OUTPUT_CLASS_IDS: class_ids,
            features.OUTPUT_CLASS_NAMES: tf.gather(tf.constant(TINY_CLASSES), class_ids),
            features.OUTPUT_PROBABILITIES: probabilities,
        }


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<base>/1: the small SavedModel; <base>/2: a version folder without saved_model.pb (what
    an interrupted copy leaves), whose load fails.
    """
    base = tmp_path_factory.mktemp("serving") / MODEL_NAME
    module = _TinyModel()
    signatures = {features.SERVING_SIGNATURE: module.serve.get_concrete_function()}
    tf.saved_model.save(module, str(base / "1"), signatures=signatures)
    (base / "2" / "variables").mkdir(parents=True)
    return base


@pytest.fixture(scope="module")
def loaded_models() -> dict:
    return {}


@pytest.fixture
def stand_in(tiny_base: Path, loaded_models: dict):
    """A fresh server that tracks no version until the test loads one."""
    server = StandIn(Core(MODEL_NAME, tiny_base, loaded_models))
    yield server
    server.close()


@pytest.fixture(scope="module")
def tiny_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [imagegen.image_bytes(name, rng) for name in TINY_CLASSES]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The stand-in against TF Serving's documented answers (tensorflow_serving/g3doc/api_rest.md,
# model_servers/http_rest_api_handler_test.cc GetStatus), so the client tests below meet what a
# real server says.

def _rest(address: str, path: str, body: dict | None = None) -> tuple[int, dict | None]:
    """HTTP status and JSON answer (None: not JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{address}{path}", data),
                                    timeout=10) as response:
            code, text = response.status, response.read()
    except urllib.error.HTTPError as e:
        code, text = e.code, e.read()
    try:
        return code, json.loads(text)
    except ValueError:
        return code, None


def _status_json(version: int, state: str) -> dict:
    return {"model_version_status": [
        {"version": str(version), "state": state,
         "status": {"error_code": "OK", "error_message": ""}}]}


def test_stand_in_rest_answers_as_tf_serving(stand_in: StandIn, tiny_images) -> None:
    stand_in.core.load(1, load_s=math.inf)
    body = rest_body(tiny_images[:1])
    assert _rest(stand_in.rest, f"/v1/models/{MODEL_NAME}") == (200, _status_json(1, "LOADING"))
    assert _rest(stand_in.rest, f"/v1/models/{MODEL_NAME}:predict", body) == (
        404, {"error": f"Servable not found for request: Latest({MODEL_NAME})"})
    assert _rest(stand_in.rest, "/v1/models/nope") == (
        404, {"error": "Could not find any versions of model nope"})
    assert _rest(stand_in.rest, f"/v1/models/{MODEL_NAME}/versions/7") == (
        404, {"error": f"Could not find version 7 of model {MODEL_NAME}"})
    assert _rest(stand_in.rest, "/v1/models/nope:predict", body) == (
        404, {"error": "Servable not found for request: Latest(nope)"})
    assert _rest(stand_in.rest, "/healthz") == (404, None)
    stand_in.core.load(1)
    assert _rest(stand_in.rest, f"/v1/models/{MODEL_NAME}") == (200, _status_json(1, "AVAILABLE"))
    code, answer = _rest(stand_in.rest, f"/v1/models/{MODEL_NAME}/versions/1:predict", body)
    assert code == 200 and answer["predictions"][0][features.OUTPUT_CLASS_NAMES] == "red"
    assert _rest(stand_in.rest, f"/v1/models/{MODEL_NAME}:predict",
                 {**body, "signature_name": "nope"}) == (
        400, {"error": 'Serving signature name: "nope" not found in signature def'})


def test_stand_in_grpc_answers_as_tf_serving(stand_in: StandIn, tiny_images) -> None:
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_pb2,
        model_service_pb2_grpc,
        prediction_service_pb2_grpc,
    )

    stand_in.core.load(1, load_s=math.inf)
    with grpc.insecure_channel(stand_in.grpc) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        status = models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
            model_spec=model_pb2.ModelSpec(name=MODEL_NAME)), timeout=10)
        assert [(s.version, s.state) for s in status.model_version_status] == [
            (1, get_model_status_pb2.ModelVersionStatus.LOADING)]
        with pytest.raises(grpc.RpcError) as caught:
            models.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
                model_spec=model_pb2.ModelSpec(name="nope")), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == "Could not find any versions of model nope"
        request = predict_request(tiny_images[:1])
        request.model_spec.name = MODEL_NAME
        with pytest.raises(grpc.RpcError) as caught:
            predictions.Predict(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details() == f"Servable not found for request: Latest({MODEL_NAME})"
        stand_in.core.load(1)
        request.model_spec.signature_name = "nope"
        with pytest.raises(grpc.RpcError) as caught:
            predictions.Predict(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert caught.value.details() == 'Serving signature key "nope" not found.'


# The client, in each state.

@PROTOCOLS
def test_waits_for_a_loading_version_then_predicts(stand_in: StandIn, tiny_images, protocol,
                                                   loaded_models, tiny_base, caplog) -> None:
    caplog.set_level(logging.INFO, logger="serving.client")
    start = time.monotonic()
    stand_in.core.load(1, start_s=0.5, load_s=1.0)
    answer = _call(protocol)(stand_in.address(protocol), MODEL_NAME, tiny_images, timeout=10)
    assert time.monotonic() - start >= 1.5
    assert "version 1 START" in caplog.text and "version 1 LOADING" in caplog.text
    assert answer.version == 1
    assert [p.class_name for p in answer.predictions] == list(TINY_CLASSES)
    model, _ = loaded_models[tiny_base / "1"]
    expected = model.signatures[features.SERVING_SIGNATURE](image=tf.constant(tiny_images))
    np.testing.assert_allclose([p.probabilities for p in answer.predictions],
                               expected[features.OUTPUT_PROBABILITIES].numpy(), atol=1e-6)


@PROTOCOLS
@pytest.mark.parametrize("state", ["START", "LOADING"])
def test_still_loading_at_the_deadline(stand_in: StandIn, tiny_images, protocol, state) -> None:
    stand_in.core.load(1, **({"start_s": math.inf} if state == "START" else {"load_s": math.inf}))
    with pytest.raises(ServingError) as caught:
        _call(protocol)(stand_in.address(protocol), MODEL_NAME, tiny_images, timeout=1)
    assert caught.value.reason == LOADING and not isinstance(caught.value, RequestError)
    assert re.search(rf"'{MODEL_NAME}' is still loading after 1\.\ds: version 1 {state}\. "
                     "Raise the predict option timeout", str(caught.value))
    assert "Raise --timeout, or see the server's log" in explain(caught.value)


@PROTOCOLS
def test_unknown_model(stand_in: StandIn, tiny_images, protocol) -> None:
    stand_in.core.load(1)
    start = time.monotonic()
    with pytest.raises(RequestError) as caught:
        _call(protocol)(stand_in.address(protocol), "nope", tiny_images, timeout=10)
    assert time.monotonic() - start < 5  # told at once, not after waiting
    assert caught.value.reason == UNKNOWN_MODEL
    assert "no model 'nope' (Could not find any versions of model nope)" in str(caught.value)
    assert "check the predict option model_name against" in str(caught.value)
    assert "check --model-name against the server's --model_name" in explain(caught.value)


@PROTOCOLS
def test_unknown_version(stand_in: StandIn, tiny_images, protocol) -> None:
    stand_in.core.load(1)
    with pytest.raises(RequestError) as caught:
        _call(protocol)(stand_in.address(protocol), MODEL_NAME, tiny_images, timeout=10,
                        version=7)
    assert caught.value.reason == UNKNOWN_VERSION
    assert (f"has no version 7 (Could not find version 7 of model {MODEL_NAME}); it has "
            "version 1 AVAILABLE. Check --model-version.") in explain(caught.value)
    assert "Check the predict option model_version." in str(caught.value)


@PROTOCOLS
def test_unknown_signature(stand_in: StandIn, tiny_images, protocol) -> None:
    stand_in.core.load(1)
    with pytest.raises(RequestError) as caught:
        _call(protocol)(stand_in.address(protocol), MODEL_NAME, tiny_images, signature="nope",
                        timeout=10)
    assert caught.value.reason == UNKNOWN_SIGNATURE
    assert f"'{MODEL_NAME}' version 1 has no signature 'nope'; it has serving_default (" in str(
        caught.value)


@PROTOCOLS
def test_bad_input(stand_in: StandIn, tiny_images, protocol) -> None:
    stand_in.core.load(1)
    with pytest.raises(RequestError) as caught:
        _call(protocol)(stand_in.address(protocol), MODEL_NAME, [tiny_images[0], b"not a png"],
                        timeout=10)
    assert caught.value.reason == BAD_INPUT
    code = "HTTP 400" if protocol == "rest" else "INVALID_ARGUMENT"
    assert (f"version 1 rejected the input ({code}: Unknown image file format. One of JPEG, PNG, "
            "GIF, BMP required.\n\t [[{{node map/while/DecodePng}}]]). Send image files") in str(
        caught.value)


@PROTOCOLS
def test_a_version_that_failed_to_load(stand_in: StandIn, tiny_images, protocol) -> None:
    stand_in.core.load(1)
    stand_in.core.load(2)  # no saved_model.pb: END with the loader's error
    call, address = _call(protocol), stand_in.address(protocol)
    assert call(address, MODEL_NAME, tiny_images, timeout=10).version == 1
    with pytest.raises(ServingError) as caught:
        call(address, MODEL_NAME, tiny_images, timeout=10, version=2)
    assert caught.value.reason == NOT_LOADED and not isinstance(caught.value, RequestError)
    assert "version 2 END (NOT_FOUND: Could not find SavedModel .pb" in str(caught.value)


@PROTOCOLS
def test_no_server(tiny_images, protocol) -> None:
    with pytest.raises(ServingError) as caught:
        _call(protocol)(f"127.0.0.1:{_free_port()}", MODEL_NAME, tiny_images, timeout=1)
    assert caught.value.reason == UNREACHABLE and not isinstance(caught.value, RequestError)
    assert re.search(r"server not answering \(.*\) after 1\.\ds", str(caught.value))


@PROTOCOLS
def test_waits_for_the_server_to_start(tiny_base, loaded_models, tiny_images, protocol) -> None:
    """TF Serving opens its ports once its first models are loaded (model_servers/server.cc
    Server::BuildAndStart creates the ServerCore, which waits for them, then the servers).
    """
    rest_port, grpc_port = _free_port(), _free_port()
    started: list[StandIn] = []

    def start() -> None:
        core = Core(MODEL_NAME, tiny_base, loaded_models)
        core.load(1)
        started.append(StandIn(core, rest_port=rest_port, grpc_port=grpc_port))

    timer = threading.Timer(1.0, start)
    timer.start()
    try:
        port = rest_port if protocol == "rest" else grpc_port
        answer = _call(protocol)(f"127.0.0.1:{port}", MODEL_NAME, tiny_images, timeout=15)
        assert answer.version == 1
    finally:
        timer.join()
        for server in started:
            server.close()


def test_cli_exit_codes(stand_in: StandIn, tiny_images, tmp_path: Path, capsys) -> None:
    images = []
    for i, data in enumerate([*tiny_images, b"not a png"]):
        images.append(tmp_path / f"{i}.png")
        images[-1].write_bytes(data)
    good = [str(p) for p in images[:-1]]
    stand_in.core.load(1)
    stand_in.core.load(3, load_s=math.inf)
    for server in (["--server", stand_in.rest], ["--server", stand_in.grpc, "--grpc"]):
        predict = ["predict", *server, "--model-name", MODEL_NAME]
        assert main([*predict, "--json", *good]) == EXIT_OK
        result = json.loads(capsys.readouterr().out)
        assert result["model_version"].startswith(f"{MODEL_NAME} version 1 on ")
        assert [p["class_name"] for p in result["predictions"]] == list(TINY_CLASSES)
        assert main(["predict", *server, "--model-name", "nope", *good]) == EXIT_BAD_INPUT
        assert main([*predict, "--model-version", "7", *good]) == EXIT_BAD_INPUT
        assert main([*predict, str(images[-1])]) == EXIT_BAD_INPUT
        assert main([*predict, "--model-version", "3", "--timeout", "0.5", *good]) == EXIT_FAILED
    assert main(["predict", "--server", f"127.0.0.1:{_free_port()}", "--model-name",
                 MODEL_NAME, "--timeout", "0.5", *good]) == EXIT_FAILED
    assert main(["predict", "--model-dir", str(tmp_path), "--model-version", "1",
                 *good]) == EXIT_BAD_INPUT


# The pipeline's own model.

@pytest.fixture(scope="module")
def model(pipeline_runs: PipelineRuns):
    return tf.saved_model.load(str(newest_version(pipeline_runs.model_base)))


@pytest.fixture(scope="module")
def signature_def(pipeline_runs: PipelineRuns):
    from tensorflow.core.protobuf import saved_model_pb2

    version = newest_version(pipeline_runs.model_base)
    saved = saved_model_pb2.SavedModel.FromString((version / "saved_model.pb").read_bytes())
    return saved.meta_graphs[0].signature_def[features.SERVING_SIGNATURE]


@pytest.fixture(scope="module")
def images(pipeline_runs: PipelineRuns) -> list[bytes]:
    return [f.read_bytes() for f in pipeline_runs.eval_files[:4]]


def test_requests_match_the_signature_def(signature_def, images) -> None:
    (name, spec), = signature_def.inputs.items()
    assert spec.dtype == tf.string.as_datatype_enum
    assert [d.size for d in spec.tensor_shape.dim] == [-1]  # a batch of scalars
    body = rest_body(images)
    assert body["signature_name"] == features.SERVING_SIGNATURE
    # TF Serving's REST encoding of DT_STRING binary data: {"b64": ...} under the input name.
    assert [set(row) for row in body["instances"]] == [{name}] * len(images)
    assert [base64.b64decode(row[name]["b64"]) for row in body["instances"]] == images
    request = predict_request(images)
    assert set(request.inputs) == {name}
    assert request.inputs[name].dtype == spec.dtype
    assert [d.size for d in request.inputs[name].tensor_shape.dim] == [len(images)]


@pytest.fixture(scope="module")
def pipeline_server(pipeline_runs: PipelineRuns):
    """The stand-in serving the pipeline's newest pushed version."""
    core = Core(MODEL_NAME, pipeline_runs.model_base, {})
    version = int(newest_version(pipeline_runs.model_base).name)
    core.load(version, load_s=0.5)
    server = StandIn(core)
    yield server, version
    server.close()


@PROTOCOLS
def test_round_trip_matches_the_in_process_model(pipeline_server, model, images,
                                                 protocol) -> None:
    server, version = pipeline_server
    answer = _call(protocol)(server.address(protocol), MODEL_NAME, images, timeout=10)
    assert answer.version == version
    expected = model.signatures[features.SERVING_SIGNATURE](image=tf.constant(images))
    assert [a.class_id for a in answer.predictions] == list(
        expected[features.OUTPUT_CLASS_IDS].numpy())
    assert [a.class_name for a in answer.predictions] == [
        n.decode() for n in expected[features.OUTPUT_CLASS_NAMES].numpy()]
    np.testing.assert_allclose([a.probabilities for a in answer.predictions],
                               expected[features.OUTPUT_PROBABILITIES].numpy(), atol=1e-6)


def test_cli_predict_through_a_server(pipeline_server, pipeline_runs: PipelineRuns,
                                      capsys) -> None:
    server, version = pipeline_server
    files = [str(f) for f in pipeline_runs.eval_files[:2]]
    labels = newest_version(pipeline_runs.model_base) / "assets" / features.LABELS_ASSET
    for extra in (["--server", server.rest], ["--server", server.grpc, "--grpc"]):
        code = main(["predict", *extra, "--model-name", MODEL_NAME, "--labels", str(labels),
                     "--json", *files])
        assert code == EXIT_OK
        result = json.loads(capsys.readouterr().out)
        assert f"version {version} on" in result["model_version"]
        assert [p["path"] for p in result["predictions"]] == files
        assert all(p["top"][0][0] == p["class_name"] for p in result["predictions"])


@pytest.mark.skipif(not os.environ.get("TF_SERVING_URL"),
                    reason="set TF_SERVING_URL=host:port (REST) and TF_SERVING_MODEL to run "
                           "against a live tensorflow_model_server")
def test_live_tf_serving(images) -> None:
    url = os.environ["TF_SERVING_URL"]
    answer = predict_rest(url, os.environ.get("TF_SERVING_MODEL", MODEL_NAME), images)
    assert len(answer.predictions) == len(images)
    assert all(abs(sum(a.probabilities) - 1) < 1e-3 for a in answer.predictions)
    with pytest.raises(RequestError) as caught:
        predict_rest(url, "no-such-model-here", images, timeout=10)
    assert caught.value.reason == UNKNOWN_MODEL
