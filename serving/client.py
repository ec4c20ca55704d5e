"""A client for the pushed model behind TF Serving, over REST (8501) or gRPC (8500).

REST sends `{"signature_name": ..., "instances": [{"image": {"b64": ...}}]}`: TF Serving's
encoding of binary string inputs. gRPC sends a PredictRequest with a DT_STRING tensor. Both
carry the raw encoded image bytes to `serving_default`, which runs the Transform graph in the
model, so clients never preprocess.

Until a version is loaded, TF Serving answers predict with NOT_FOUND (HTTP 404), the answer it
gives for a model it has never heard of: predict alone cannot tell "still loading" from "wrong
name". So the client first asks the model status API (REST `GET /v1/models/<name>[/versions/
<v>]`, gRPC `ModelService.GetModelStatus`): NOT_FOUND there means the server tracks no such
model or version; START or LOADING means wait. It predicts once a version is AVAILABLE, on that
version, so the answer says which version made it. One deadline (`timeout`) covers it all:
connecting (TF Serving opens its ports only once its first models are loaded,
tensorflow_serving/model_servers/server.cc Server::BuildAndStart), waiting, predicting.

Failures are ServingError with a `reason`. RequestError, a subclass, is for answers that say the
request is wrong (unknown model, version or signature, bad input): the CLI exits 2 for those,
like any bad argument, and 1 for the rest.

The waits (for a version to load, and past a version swap or a full queue) are tenacity
Retrying loops bounded by that one deadline.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import tenacity

from schema import features
from schema.errors import Explained, Part, Setting

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_FIRST_PAUSE_S, _MAX_PAUSE_S = 0.1, 1.0
# Each request gets what is left of the deadline, but at least this: a request sent with a
# timeout of ~0 fails before the server can answer, and would hide what the server said last.
_MIN_CALL_S = 0.5

# ServingError.reason
UNREACHABLE = "unreachable"  # no answer from the server within the deadline
LOADING = "loading"  # versions still START/LOADING at the deadline
NOT_LOADED = "not_loaded"  # the versions tracked all ended: failed to load, or unloaded
SERVER_ERROR = "server_error"  # any other failure the server reports
UNKNOWN_MODEL = "unknown_model"  # RequestError from here on
UNKNOWN_VERSION = "unknown_version"
UNKNOWN_SIGNATURE = "unknown_signature"
BAD_INPUT = "bad_input"

# ModelVersionStatus.State names (tensorflow_serving/apis/get_model_status.proto).
AVAILABLE = "AVAILABLE"
_PENDING = ("START", "LOADING")
_NO_ANSWER = "server not answering"

# Kinds of error answer the client acts on, whichever front end gave them.
_NOT_FOUND, _UNAVAILABLE, _DEADLINE, _REJECTED, _OTHER = (
    "not_found", "unavailable", "deadline", "rejected", "other")
# tensorflow_serving/model_servers/http_server.cc ToHTTPStatusCode: NOT_FOUND -> 404;
# INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE -> 400; UNAVAILABLE -> 503;
# DEADLINE_EXCEEDED -> 504.
_HTTP_KINDS = {404: _NOT_FOUND, 400: _REJECTED, 503: _UNAVAILABLE, 504: _DEADLINE}
_GRPC_KINDS = {"NOT_FOUND": _NOT_FOUND, "UNAVAILABLE": _UNAVAILABLE,
               "DEADLINE_EXCEEDED": _DEADLINE, "INVALID_ARGUMENT": _REJECTED,
               "FAILED_PRECONDITION": _REJECTED, "OUT_OF_RANGE": _REJECTED}
# REST: 'Serving signature name: "x" not found in signature def' (INVALID_ARGUMENT,
# model_servers/http_rest_api_handler.cc GetInfoMap); gRPC: 'Serving signature key "x" not
# found.' (FAILED_PRECONDITION, servables/tensorflow/predict_util.cc RunPredict).
_UNKNOWN_SIGNATURE = re.compile(r'Serving signature (?:name: |key )"[^"]*" not found')


class ServingError(Explained, RuntimeError):
    """The server gave no prediction: unreachable, still loading, nothing loaded, or failed."""

    def __init__(self, message: str | tuple[Part, ...], reason: str) -> None:
        super().__init__(*((message,) if isinstance(message, str) else message))
        self.reason = reason


class RequestError(ServingError):
    """The server says the request is wrong (model, version, signature or input): a bad
    argument, not a server failure.
    """


@dataclasses.dataclass(frozen=True)
class Prediction:
    class_id: int
    class_name: str
    probabilities: list[float]


@dataclasses.dataclass(frozen=True)
class Answer:
    """The predictions and the version that made them."""

    version: int
    predictions: list[Prediction]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One ModelVersionStatus of TF Serving's model status answer."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def describe(self) -> str:
        error = f" ({self.error_code}: {self.error_message})" if self.error_code != "OK" else ""
        return f"version {self.version} {self.state}{error}"


class _Status(Exception):
    """An error answer from either front end: its kind, which the client acts on, and its code
    as the transport showed it (NOT_FOUND, HTTP 404), which messages quote.
    """

    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.kind, self.code, self.message = kind, code, message


class _Transport(Protocol):
    where: str

    def model_status(self, name: str, version: int | None,
                     timeout: float) -> list[VersionStatus]: ...

    def predict(self, name: str, version: int, signature: str, images: Sequence[bytes],
                timeout: float) -> list[Prediction]: ...

    def signature_names(self, name: str, version: int, timeout: float) -> list[str]: ...


class _Deadline:
    """One time budget for the whole call, so `timeout` means what a caller expects."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def remaining(self) -> float:
        return max(self.seconds - self.elapsed(), 0.0)

    def call_timeout(self) -> float:
        return max(self.remaining(), _MIN_CALL_S)


def rest_body(images: Sequence[bytes], signature: str = features.SERVING_SIGNATURE) -> dict:
    return {
        "signature_name": signature,
        "instances": [
            {features.SERVING_INPUT: {"b64": base64.b64encode(image).decode("ascii")}}
            for image in images
        ],
    }


class _Rest:
    """TF Serving's REST API (tensorflow_serving/model_servers/http_rest_api_handler.cc)."""

    def __init__(self, server: str) -> None:
        self.where = f"{server} (REST)"
        self._base = f"http://{server}/v1/models"

    def _url(self, name: str, version: int | None, suffix: str = "") -> str:
        url = f"{self._base}/{urllib.parse.quote(name, safe='')}"
        return (url if version is None else f"{url}/versions/{version}") + suffix

    def model_status(self, name: str, version: int | None,
                     timeout: float) -> list[VersionStatus]:
        body = _http(self._url(name, version), None, timeout)
        return [
            VersionStatus(int(s["version"]), s["state"],
                          s.get("status", {}).get("error_code", "OK"),
                          s.get("status", {}).get("error_message", ""))
            for s in body.get("model_version_status", [])
        ]

    def predict(self, name: str, version: int, signature: str, images: Sequence[bytes],
                timeout: float) -> list[Prediction]:
        data = json.dumps(rest_body(images, signature)).encode()
        body = _http(self._url(name, version, ":predict"), data, timeout)
        return [
            Prediction(int(p[features.OUTPUT_CLASS_IDS]), str(p[features.OUTPUT_CLASS_NAMES]),
                       [float(v) for v in p[features.OUTPUT_PROBABILITIES]])
            for p in body["predictions"]
        ]

    def signature_names(self, name: str, version: int, timeout: float) -> list[str]:
        # {"model_spec": ..., "metadata": {"signature_def": {"signature_def": {name: ...}}}}
        # (model_servers/http_rest_api_util.cc ToJsonString(GetModelMetadataResponse)).
        body = _http(self._url(name, version, "/metadata"), None, timeout)
        return sorted(body["metadata"]["signature_def"]["signature_def"])


def _http(url: str, data: bytes | None, timeout: float) -> dict:
    """The JSON answer, or a _Status carrying TF Serving's `{"error": ...}` message."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers),
                                    timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise _Status(_HTTP_KINDS.get(e.code, _OTHER), f"HTTP {e.code}", _error_text(e)) from e
    except TimeoutError as e:
        raise _Status(_DEADLINE, "timeout", str(e) or "timed out") from e
    except urllib.error.URLError as e:
        kind = _DEADLINE if isinstance(e.reason, TimeoutError) else _UNAVAILABLE
        raise _Status(kind, "unreachable", str(e.reason)) from e
    except ConnectionError as e:  # e.g. the server closed the connection while starting
        raise _Status(_UNAVAILABLE, "unreachable", str(e)) from e


def _error_text(error: urllib.error.HTTPError) -> str:
    """TF Serving's error body is `{"error": "<message>"}` (util/json_tensor.cc
    MakeJsonFromStatus); a proxy in front of it may send anything.
    """
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(error.reason)


class _Grpc:
    """TF Serving's gRPC API: PredictionService and ModelService on one channel."""

    def __init__(self, channel: Any, server: str) -> None:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.where = f"{server} (gRPC)"
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(channel)

    @staticmethod
    def _spec(name: str, version: int | None, signature: str = ""):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=name, signature_name=signature)
        if version is not None:
            spec.version.value = version
        return spec

    @staticmethod
    def _call(method: Callable, request: Any, timeout: float) -> Any:
        import grpc

        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            code = e.code().name
            raise _Status(_GRPC_KINDS.get(code, _OTHER), code, e.details() or "") from e

    def model_status(self, name: str, version: int | None,
                     timeout: float) -> list[VersionStatus]:
        from tensorflow_serving.apis import get_model_status_pb2, status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self._spec(name, version))
        response = self._call(self._models.GetModelStatus, request, timeout)
        states = get_model_status_pb2.ModelVersionStatus.State
        codes = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
        return [
            VersionStatus(s.version, states.Name(s.state),
                          codes.values_by_number[s.status.error_code].name,
                          s.status.error_message)
            for s in response.model_version_status
        ]

    def predict(self, name: str, version: int, signature: str, images: Sequence[bytes],
                timeout: float) -> list[Prediction]:
        import tensorflow as tf

        from serving.warmup import predict_request

        request = predict_request(images)
        request.model_spec.CopyFrom(self._spec(name, version, signature))
        response = self._call(self._predictions.Predict, request, timeout)
        outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
        return [
            Prediction(int(class_id), class_name.decode(), [float(v) for v in probabilities])
            for class_id, class_name, probabilities in zip(
                outputs[features.OUTPUT_CLASS_IDS], outputs[features.OUTPUT_CLASS_NAMES],
                outputs[features.OUTPUT_PROBABILITIES], strict=True,
            )
        ]

    def signature_names(self, name: str, version: int, timeout: float) -> list[str]:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._spec(name, version), metadata_field=["signature_def"])
        response = self._call(self._predictions.GetModelMetadata, request, timeout)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return sorted(signatures.signature_def)


def predict_rest(
    server: str,
    model_name: str,
    images: Sequence[bytes],
    signature: str = features.SERVING_SIGNATURE,
    timeout: float = DEFAULT_TIMEOUT_S,
    version: int | None = None,
) -> Answer:
    """Predict over REST once `version` (default: the newest) is AVAILABLE, within `timeout`."""
    return _predict(_Rest(server), model_name, images, signature, version, timeout)


# The same parameters as predict_rest: one call, two front ends (`duplicates` pairs them).
def predict_grpc(
    server: str,
    model_name: str,
    images: Sequence[bytes],
    signature: str = features.SERVING_SIGNATURE,
    timeout: float = DEFAULT_TIMEOUT_S,
    version: int | None = None,
) -> Answer:
    """Predict over gRPC once `version` (default: the newest) is AVAILABLE, within `timeout`."""
    import grpc

    with grpc.insecure_channel(server) as channel:
        return _predict(_Grpc(channel, server), model_name, images, signature, version, timeout)


def _predict(transport: _Transport, name: str, images: Sequence[bytes], signature: str,
             version: int | None, timeout: float) -> Answer:
    deadline = _Deadline(timeout)
    served: list[int] = []  # the version each attempt asked

    def attempt() -> Answer:
        served.append(_wait_for_version(transport, name, version, deadline))
        return Answer(served[-1], transport.predict(name, served[-1], signature, images,
                                                    deadline.call_timeout()))

    # NOT_FOUND: the version was unloaded since the status said AVAILABLE (a newer one replaced
    # it); UNAVAILABLE: e.g. a full batching queue. Both pass: look again, then ask again.
    passing = tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, _Status) and e.kind in (_NOT_FOUND, _UNAVAILABLE)),
        stop=lambda state: deadline.remaining() <= _FIRST_PAUSE_S,
        wait=tenacity.wait_fixed(_FIRST_PAUSE_S),
        reraise=True,
    )
    try:
        return passing(attempt)
    except _Status as e:
        raise _predict_error(transport, name, served[-1], signature, e, deadline) from e


def _wait_for_version(transport: _Transport, name: str, version: int | None,
                      deadline: _Deadline) -> int:
    """The version to ask, once AVAILABLE: the one requested, or the newest AVAILABLE one
    (what TF Serving's default Latest policy serves, core/manager.h ServableRequest::Latest).
    """
    seen = [""]  # the last state reported

    def look() -> int | str:
        now = _look(transport, name, version, deadline, seen[0])
        if isinstance(now, str) and now != seen[0]:
            log.info("%s: model %r: %s; waiting (%.1fs of %gs)", transport.where, name, now,
                     deadline.elapsed(), deadline.seconds)
            seen[0] = now
        return now

    def timed_out(state: tenacity.RetryCallState) -> int:
        raise _timed_out(transport, name, state.outcome.result(), deadline)

    # Pauses of 0.1 s doubling to 1 s between looks, never past the deadline.
    backoff = tenacity.wait_exponential(multiplier=_FIRST_PAUSE_S, max=_MAX_PAUSE_S)
    waiting = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda now: isinstance(now, str)),
        stop=lambda state: deadline.remaining() <= 0,
        wait=lambda state: min(backoff(state), deadline.remaining()),
        retry_error_callback=timed_out,
    )
    return waiting(look)


def _look(transport: _Transport, name: str, version: int | None, deadline: _Deadline,
          seen: str) -> int | str:
    """One model status request: the version to ask if one is AVAILABLE, else what to wait
    for (the versions' states, or that the server does not answer yet).
    """
    try:
        versions = transport.model_status(name, version, deadline.call_timeout())
    except _Status as e:
        if e.kind == _NOT_FOUND:
            raise _not_found(transport, name, version, e, deadline) from e
        if e.kind not in (_UNAVAILABLE, _DEADLINE):
            raise ServingError(f"{transport.where}: model status of {name!r} failed: "
                               f"{e.code}: {e.message}", SERVER_ERROR) from e
        # A request cut by the deadline keeps the last state seen: that is the news.
        return seen if e.kind == _DEADLINE and seen else f"{_NO_ANSWER} ({e.message})"
    available = [v.version for v in versions if v.state == AVAILABLE]
    if available:
        return max(available)
    if not any(v.state in _PENDING for v in versions):
        raise _not_loaded(transport, name, versions)
    return ", ".join(v.describe() for v in versions)


def _not_found(transport: _Transport, name: str, version: int | None, error: _Status,
               deadline: _Deadline) -> RequestError:
    """NOT_FOUND from the status API ('Could not find [any versions|version N] of model',
    model_servers/get_model_status_impl.cc): an unknown version of a known model, or an unknown
    model. TF Serving has no API that lists its models, so the message cannot name them.
    """
    unknown_model = RequestError((
        f"{transport.where}: the server has no model {name!r} ({error.message}). TF Serving "
        "does not list the models it serves: check ", Setting("predict.model_name"),
        " against the server's --model_name or the names in its --model_config_file."),
        UNKNOWN_MODEL)
    if version is None:
        return unknown_model
    try:
        versions = transport.model_status(name, None, deadline.call_timeout())
    except _Status as e:
        if e.kind == _NOT_FOUND:
            return unknown_model
        versions = []  # the model's other versions stay untold
    have = f"; it has {', '.join(v.describe() for v in versions)}" if versions else ""
    return RequestError((f"{transport.where}: model {name!r} has no version {version} "
                         f"({error.message}){have}. Check ", Setting("predict.model_version"),
                         "."), UNKNOWN_VERSION)


def _not_loaded(transport: _Transport, name: str, versions: list[VersionStatus]) -> ServingError:
    """Every version tracked has ended (END/UNLOADING): none loads, so waiting cannot help."""
    states = ", ".join(v.describe() for v in versions)
    return ServingError(f"{transport.where}: model {name!r} has no version loaded or loading: "
                        f"{states}. See the server's log.", NOT_LOADED)


def _timed_out(transport: _Transport, name: str, seen: str, deadline: _Deadline) -> ServingError:
    if seen.startswith(_NO_ANSWER):
        return ServingError(f"{transport.where}: {seen} after {deadline.elapsed():.1f}s. Is the "
                            "server running, and is this its address and port?", UNREACHABLE)
    return ServingError((f"{transport.where}: model {name!r} is still loading after "
                         f"{deadline.elapsed():.1f}s: {seen}. Raise ",
                         Setting("predict.timeout"), ", or see the server's log."), LOADING)


def _predict_error(transport: _Transport, name: str, version: int, signature: str,
                   error: _Status, deadline: _Deadline) -> ServingError:
    where = f"{transport.where}: model {name!r} version {version}"
    if error.kind == _REJECTED and _UNKNOWN_SIGNATURE.search(error.message):
        try:
            # Leave out internal entries such as __saved_model_init_op: not callable.
            names = [n for n in transport.signature_names(name, version, deadline.call_timeout())
                     if not n.startswith("__")]
            have = f"; it has {', '.join(names)}"
        except _Status:
            have = ""
        return RequestError(f"{where} has no signature {signature!r}{have} ({error.message})",
                            UNKNOWN_SIGNATURE)
    if error.kind == _REJECTED:
        return RequestError(f"{where} rejected the input ({error.code}: {error.message}). "
                            "Send image files the model can decode.", BAD_INPUT)
    if error.kind in (_NOT_FOUND, _UNAVAILABLE, _DEADLINE):
        return ServingError(f"{where}: no prediction within {deadline.seconds:g}s "
                            f"({error.code}: {error.message})", UNREACHABLE)
    return ServingError(f"{where}: predict failed ({error.code}: {error.message})", SERVER_ERROR)
