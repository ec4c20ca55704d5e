"""A stand-in for tensorflow_model_server: REST and gRPC front ends over real SavedModels, that
answer as TF Serving answers in each state a client meets (version START/LOADING/AVAILABLE/END,
unknown model, version or signature, bad input).

Written from TF Serving's source (github.com/tensorflow/serving, tensorflow_serving/...); each
answer cites the file it follows. Not modelled: the file system source (a test says which
versions are aspired, and when: `StandIn.core.load`), version labels, classify/regress,
batching.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import time
import urllib.parse
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from schema import features

# tensorflow/core/protobuf/error_codes.proto numbers are grpc's status codes.
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# model_servers/http_server.cc ToHTTPStatusCode.
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# model_servers/http_server.cc RestApiRequestDispatcher: paths under /v1/ go to the handler.
_V1_PATH = re.compile(r"(?i)/v1/.*")
# model_servers/http_rest_api_util.cc kPredictionApiGegex and kModelStatusApiRegex.
_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)")
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:\/(metadata))?")


class TFStatus(Exception):
    """A non-OK absl::Status: canonical code name and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclasses.dataclass
class _Version:
    """One version as the ServableStateMonitor sees it, with its loaded SavedModel."""

    tracked_at: float
    start_s: float
    load_s: float
    model: Any = None
    signature_defs: dict = dataclasses.field(default_factory=dict)
    error: TFStatus | None = None

    def state(self) -> str:
        """START, LOADING, then AVAILABLE, or END with the load error (core/servable_state.h:
        states only move forward; a failed load ends in kEnd with the error as health).
        """
        age = time.monotonic() - self.tracked_at
        if age < self.start_s:
            return "START"
        if age < self.start_s + self.load_s:
            return "LOADING"
        return "END" if self.error else "AVAILABLE"


class Core:
    """What the front ends ask of TF Serving's ServerCore for one model: the versions' states
    and the loaded SavedModels.
    """

    def __init__(self, name: str, base: Path, cache: dict) -> None:
        self.name = name
        self.base = base
        self._cache = cache  # path -> (loaded model, signature defs): loading takes seconds
        self._versions: dict[int, _Version] = {}

    def load(self, version: int, start_s: float = 0.0, load_s: float = 0.0) -> None:
        """Aspire a version: START for start_s, LOADING for load_s, then AVAILABLE (or END if
        <base>/<version> holds no SavedModel).
        """
        path = self.base / str(version)
        if (path / "saved_model.pb").is_file() and path not in self._cache:
            self._cache[path] = (tf.saved_model.load(str(path)), _signature_defs(path))
        # The states' clock starts once the model is in memory: tests set the times they see.
        entry = _Version(time.monotonic(), start_s, load_s)
        if path in self._cache:
            entry.model, entry.signature_defs = self._cache[path]
        else:
            # tensorflow/cc/saved_model/reader.cc ReadSavedModel; the LoaderHarness keeps the
            # load error as the servable's health (core/loader_harness.cc ErrorInternal).
            entry.error = TFStatus(
                "NOT_FOUND", "Could not find SavedModel .pb or .pbtxt at supplied export "
                f"directory path: {path}. Check that the directory exists and that you have the "
                "right permissions for accessing it.")
        self._versions[version] = entry

    def _tracked(self, name: str) -> dict[int, _Version]:
        return self._versions if name == self.name else {}

    def status(self, name: str,
               version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
        """model_servers/get_model_status_impl.cc GetModelStatusWithModelSpec."""
        tracked = self._tracked(name)
        if version is not None and version not in tracked:
            raise TFStatus("NOT_FOUND", f"Could not find version {version} of model {name}")
        if not tracked:
            raise TFStatus("NOT_FOUND", f"Could not find any versions of model {name}")
        chosen = [version] if version is not None else sorted(tracked, reverse=True)
        response = get_model_status_pb2.GetModelStatusResponse()
        states = get_model_status_pb2.ModelVersionStatus.State
        codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
        for v in chosen:
            state = tracked[v].state()
            # util/status_util.cc ToStatusProto: the message only for a non-OK health.
            error = tracked[v].error if state == "END" else None
            response.model_version_status.add(
                version=v, state=states.Value(state),
                status=status_pb2.StatusProto(
                    error_code=codes.values_by_name[error.code if error else "OK"].number,
                    error_message=error.message if error else ""))
        return response

    def handle(self, name: str, version: int | None) -> tuple[int, _Version]:
        """core/basic_manager.cc ServingMap::GetUntypedServableHandle: only loaded versions;
        Latest is the highest (core/manager.h ServableRequest::DebugString for the message).
        """
        available = {v: e for v, e in self._tracked(name).items() if e.state() == "AVAILABLE"}
        chosen = version if version is not None else max(available, default=None)
        if chosen not in available:
            request = f"Specific({name}, {version})" if version is not None else f"Latest({name})"
            raise TFStatus("NOT_FOUND", f"Servable not found for request: {request}")
        return chosen, available[chosen]

    @staticmethod
    def run(entry: _Version, signature: str, inputs: dict[str, list[bytes]]) -> dict:
        """Run the signature as the session would; TF errors keep their code."""
        expected = set(entry.signature_defs[signature].inputs)
        if set(inputs) != expected:
            # servables/tensorflow/predict_util.cc VerifyRequestInputsSize (shortened).
            raise TFStatus("INVALID_ARGUMENT", f"input size does not match signature: "
                                               f"{sorted(inputs)} != {sorted(expected)}")
        try:
            outputs = entry.model.signatures[signature](
                **{k: tf.constant(v, tf.string) for k, v in inputs.items()})
        except tf.errors.OpError as e:
            raise TFStatus(_CODE_NAMES[e.error_code], _session_message(e.message)) from e
        return {k: v.numpy() for k, v in outputs.items()}


# What eager Python adds around a kernel's error, which TF Serving's C++ Session::Run does not.
_EAGER_PREFIX = re.compile(r"^Graph execution error:\n\n(?:Detected at node .*?<stack traces "
                           r"unavailable>\n)?", re.DOTALL)
_EAGER_SUFFIX = re.compile(r" \[Op:[^\]]*\]$")


def _session_message(message: str) -> str:
    return _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", message))


def _signature_defs(path: Path) -> dict:
    """The meta graph's signature defs, as TF Serving's bundle holds them (with
    __saved_model_init_op).
    """
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    return dict(saved.meta_graphs[0].signature_def)


def _signature_def_map(entry: _Version) -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, value in entry.signature_defs.items():
        signatures.signature_def[key].CopyFrom(value)
    return signatures


# REST front end: model_servers/http_rest_api_handler.cc HttpRestApiHandler::ProcessRequest.

def rest_process(core: Core, method: str, path: str, body: bytes) -> str:
    """The JSON answer to one request under /v1/, or a TFStatus."""
    if method == "POST" and (match := _PREDICT_PATH.fullmatch(path)):
        name, version, label, verb = match.groups()
        if label or verb != "predict":
            raise TFStatus("UNIMPLEMENTED", "not modelled by the stand-in")
        return _rest_predict(core, urllib.parse.unquote(name), _int(version), body)
    if method == "GET" and (match := _STATUS_PATH.fullmatch(path)):
        name, version, label, subresource = match.groups()
        if not name:
            raise TFStatus("INVALID_ARGUMENT", "Missing model name in request.")
        name = urllib.parse.unquote(name)
        if subresource == "metadata":
            return _rest_metadata(core, name, _int(version))
        # model_servers/http_rest_api_util.cc ToJsonString(GetModelStatusResponse):
        # always_print_fields_with_no_presence, add_whitespace; json_name gives
        # "model_version_status", "error_code", "error_message".
        return json_format.MessageToJson(core.status(name, _int(version)),
                                         including_default_value_fields=True)
    raise TFStatus("INVALID_ARGUMENT", f"Malformed request: {method} {path}")


def _int(version: str | None) -> int | None:
    return int(version) if version else None


def _rest_predict(core: Core, name: str, version: int | None, body: bytes) -> str:
    try:
        request = json.loads(body)
    except ValueError as e:  # util/json_tensor.cc ParseJson
        raise TFStatus("INVALID_ARGUMENT", f"JSON Parse error: {e.msg} at offset: {e.pos}") from e
    signature = request.get("signature_name") or features.SERVING_SIGNATURE
    # HttpRestApiHandler::GetInfoMap: the servable handle, then the signature (before the
    # instances are read, so a wrong signature is INVALID_ARGUMENT here, not the gRPC
    # FAILED_PRECONDITION).
    served, entry = core.handle(name, version)
    if signature not in entry.signature_defs:
        raise TFStatus("INVALID_ARGUMENT",
                       f'Serving signature name: "{signature}" not found in signature def')
    inputs: dict[str, list[bytes]] = {}
    for row in request["instances"]:
        for key, value in row.items():
            inputs.setdefault(key, []).append(base64.b64decode(value["b64"]))
    outputs = core.run(entry, signature, inputs)
    rows = [{key: _json_value(value[i]) for key, value in outputs.items()}
            for i in range(len(next(iter(inputs.values()))))]
    return json.dumps({"predictions": rows})


def _json_value(value: np.ndarray | np.generic) -> Any:
    return value.decode() if isinstance(value, bytes) else value.tolist()


def _rest_metadata(core: Core, name: str, version: int | None) -> str:
    """model_servers/http_rest_api_util.cc ToJsonString(GetModelMetadataResponse)."""
    served, entry = core.handle(name, version)
    spec = model_pb2.ModelSpec(name=name)
    spec.version.value = served
    options = {"including_default_value_fields": True, "preserving_proto_field_name": True}
    return json.dumps({
        "model_spec": json_format.MessageToDict(spec, **options),
        "metadata": {"signature_def": json_format.MessageToDict(_signature_def_map(entry),
                                                                **options)},
    }, indent=1)


def _rest_server(core: Core, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if not _V1_PATH.fullmatch(path):
                # util/net_http/server/internal/evhttp_server.cc: no handler takes the path:
                # evhttp_send_error(HTTP_NOTFOUND), libevent's HTML error page.
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                code, output = 200, rest_process(core, method, path, body)
            except TFStatus as e:
                # http_server.cc ToHTTPStatusCode; util/json_tensor.cc MakeJsonFromStatus.
                code, output = HTTP_STATUS[e.code], json.dumps({"error": e.message}, indent=4)
            data = output.encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# gRPC front end: model_servers/prediction_service_impl.cc, model_service_impl.cc; errors go
# through model_servers/grpc_status_util.cc ToGRPCStatus (same code, message cut at 1024).

def _abort(context: grpc.ServicerContext, error: TFStatus) -> None:
    message = error.message
    if len(message) > 1024:
        message = message[:1024] + "...TRUNCATED"
    context.abort(grpc.StatusCode[error.code], message)


def _version(spec) -> int | None:
    return spec.version.value if spec.HasField("version") else None


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    def Predict(self, request, context):
        try:
            return self._predict(request)
        except TFStatus as e:
            _abort(context, e)

    def _predict(self, request) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        served, entry = self.core.handle(spec.name, _version(spec))
        signature = spec.signature_name or features.SERVING_SIGNATURE
        if signature not in entry.signature_defs:  # predict_util.cc RunPredict
            raise TFStatus("FAILED_PRECONDITION", f'Serving signature key "{signature}" not found.')
        inputs = {k: list(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        response = predict_pb2.PredictResponse()
        # predict_util.cc MakeModelSpec: the answer names the version that made it.
        response.model_spec.name = spec.name
        response.model_spec.version.value = served
        response.model_spec.signature_name = signature
        for key, value in self.core.run(entry, signature, inputs).items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request, context):
        """servables/tensorflow/get_model_metadata_impl.cc."""
        try:
            if list(request.metadata_field) != ["signature_def"]:
                raise TFStatus("INVALID_ARGUMENT", "Metadata field is not supported")
            served, entry = self.core.handle(request.model_spec.name,
                                             _version(request.model_spec))
        except TFStatus as e:
            _abort(context, e)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = served
        response.metadata["signature_def"].Pack(_signature_def_map(entry))
        return response


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    def GetModelStatus(self, request, context):
        try:
            return self.core.status(request.model_spec.name, _version(request.model_spec))
        except TFStatus as e:
            _abort(context, e)


class StandIn:
    """Both front ends over one Core, on free local ports (`rest_port`/`grpc_port` to pick)."""

    def __init__(self, core: Core, rest_port: int = 0, grpc_port: int = 0) -> None:
        self.core = core
        self._rest = _rest_server(core, rest_port)
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(core), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(core), self._grpc)
        port = self._grpc.add_insecure_port(f"127.0.0.1:{grpc_port}")
        self._grpc.start()
        self.rest = f"127.0.0.1:{self._rest.server_address[1]}"
        self.grpc = f"127.0.0.1:{port}"

    def address(self, protocol: str) -> str:
        return self.rest if protocol == "rest" else self.grpc

    def close(self) -> None:
        self._rest.shutdown()
        self._rest.server_close()
        self._grpc.stop(None)
