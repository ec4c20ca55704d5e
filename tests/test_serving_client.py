"""The TF Serving client against the pushed model: requests match the SavedModel's signature
def, and REST/gRPC round trips (through local stand-in servers that run the real SavedModel)
give the in-process answers. With TF_SERVING_URL set, the same calls go to a live server."""

from __future__ import annotations

import base64
import json
import os
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf

from conftest import MODEL_NAME, PipelineRuns
from pipeline.cli import EXIT_FAILED, EXIT_OK, main
from pipeline.predict import newest_version
from pipeline.serving_client import ServingError, predict_grpc, predict_rest, rest_body
from trainer import features
from trainer.warmup import predict_request


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


class _Server:
    """Local stand-ins for TF Serving's REST and gRPC front ends, running the real model."""

    def __init__(self, model) -> None:
        self.model = model
        self.unavailable = 0  # answer this many requests with UNAVAILABLE / 503 first

    def run(self, signature: str, image_bytes: list[bytes]) -> dict[str, np.ndarray]:
        outputs = self.model.signatures[signature](image=tf.constant(image_bytes))
        return {k: v.numpy() for k, v in outputs.items()}


def _rest_server(state: _Server) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.unavailable:
                state.unavailable -= 1
                return self._reply(503, {"error": "Servable not available yet"})
            if self.path != f"/v1/models/{MODEL_NAME}:predict":
                return self._reply(404, {"error": f"Servable not found for {self.path}"})
            signature = body.get("signature_name", features.SERVING_SIGNATURE)
            if signature not in state.model.signatures:
                return self._reply(400, {"error": f'Serving signature name: "{signature}" '
                                                  "not found in signature def"})
            data = [base64.b64decode(row[features.SERVING_INPUT]["b64"])
                    for row in body["instances"]]
            outputs = state.run(signature, data)
            rows = [{k: (v[i].decode() if isinstance(v[i], bytes) else v[i].tolist())
                     for k, v in outputs.items()} for i in range(len(data))]
            return self._reply(200, {"predictions": rows})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _grpc_server(state: _Server):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            if state.unavailable:
                state.unavailable -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "servable not available yet")
            if request.model_spec.name != MODEL_NAME:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: Latest({request.model_spec.name})")
            data = list(tf.make_ndarray(request.inputs[features.SERVING_INPUT]))
            response = predict_pb2.PredictResponse()
            for key, value in state.run(request.model_spec.signature_name, data).items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture(scope="module")
def servers(model):
    state = _Server(model)
    rest = _rest_server(state)
    grpc_server, grpc_port = _grpc_server(state)
    yield state, f"127.0.0.1:{rest.server_address[1]}", f"127.0.0.1:{grpc_port}"
    rest.shutdown()
    grpc_server.stop(None)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_round_trip_matches_the_in_process_model(servers, model, images, protocol) -> None:
    state, rest, grpc_address = servers
    call, address = (predict_rest, rest) if protocol == "rest" else (predict_grpc, grpc_address)
    state.unavailable = 2  # the first two attempts find the server still loading: retried
    answers = call(address, MODEL_NAME, images, timeout=5)
    assert state.unavailable == 0
    expected = model.signatures[features.SERVING_SIGNATURE](image=tf.constant(images))
    assert [a.class_id for a in answers] == list(expected[features.OUTPUT_CLASS_IDS].numpy())
    assert [a.class_name for a in answers] == [
        n.decode() for n in expected[features.OUTPUT_CLASS_NAMES].numpy()]
    np.testing.assert_allclose([a.probabilities for a in answers],
                               expected[features.OUTPUT_PROBABILITIES].numpy(), atol=1e-6)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_clear_errors(servers, images, protocol) -> None:
    _, rest, grpc_address = servers
    call, address = (predict_rest, rest) if protocol == "rest" else (predict_grpc, grpc_address)
    with pytest.raises(ServingError, match="model 'nope' not found.*--model-name"):
        call(address, "nope", images, timeout=5, retries=0)
    with pytest.raises(ServingError, match="unreachable after 2 attempts"):
        call("127.0.0.1:9", MODEL_NAME, images, timeout=2, retries=1)
    if protocol == "rest":
        with pytest.raises(ServingError, match="HTTP 400.*signature"):
            predict_rest(address, MODEL_NAME, images, signature="nope", retries=0)


def test_cli_predict_through_a_server(servers, pipeline_runs: PipelineRuns, capsys) -> None:
    _, rest, grpc_address = servers
    files = [str(f) for f in pipeline_runs.eval_files[:2]]
    labels = newest_version(pipeline_runs.model_base) / "assets" / features.LABELS_ASSET
    for extra in (["--server", rest], ["--server", grpc_address, "--grpc"]):
        code = main(["predict", *extra, "--model-name", MODEL_NAME, "--labels", str(labels),
                     "--json", *files])
        assert code == EXIT_OK
        result = json.loads(capsys.readouterr().out)
        assert [p["path"] for p in result["predictions"]] == files
        assert all(p["top"][0][0] == p["class_name"] for p in result["predictions"])
    assert main(["predict", "--server", rest, "--model-name", "nope", *files]) == EXIT_FAILED


@pytest.mark.skipif(not os.environ.get("TF_SERVING_URL"),
                    reason="set TF_SERVING_URL=host:port (REST) and TF_SERVING_MODEL to run "
                           "against a live tensorflow_model_server")
def test_live_tf_serving(images) -> None:
    answers = predict_rest(os.environ["TF_SERVING_URL"],
                           os.environ.get("TF_SERVING_MODEL", MODEL_NAME), images)
    assert len(answers) == len(images)
    assert all(abs(sum(a.probabilities) - 1) < 1e-3 for a in answers)
