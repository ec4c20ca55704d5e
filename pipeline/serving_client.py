"""A client for the pushed model behind TF Serving, over REST (8501) or gRPC (8500).

REST sends `{"signature_name": ..., "instances": [{"image": {"b64": ...}}]}`: TF Serving's
encoding of binary string inputs. gRPC sends a PredictRequest with a DT_STRING tensor. Both
carry the raw encoded image bytes to `serving_default`, which runs the Transform graph in the
model, so clients never preprocess. Retries cover UNAVAILABLE (a server starting or a version
loading); a wrong model name, signature or an unreachable server end in a ServingError that
says which.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from trainer import features

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RETRIES = 3
_BACKOFF_S = 0.5


class ServingError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Prediction:
    class_id: int
    class_name: str
    probabilities: list[float]


def rest_body(images: Sequence[bytes], signature: str = features.SERVING_SIGNATURE) -> dict:
    return {
        "signature_name": signature,
        "instances": [
            {features.SERVING_INPUT: {"b64": base64.b64encode(image).decode("ascii")}}
            for image in images
        ],
    }


def _retrying(call: Callable[[], Any], retries: int, retryable: Callable[[Exception], bool]):
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as e:  # noqa: BLE001 - filtered by `retryable`
            if attempt == retries or not retryable(e):
                raise
            time.sleep(_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def predict_rest(
    server: str,
    model_name: str,
    images: Sequence[bytes],
    signature: str = features.SERVING_SIGNATURE,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> list[Prediction]:
    url = f"http://{server}/v1/models/{model_name}:predict"
    data = json.dumps(rest_body(images, signature)).encode()

    def call() -> dict:
        request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def retryable(e: Exception) -> bool:
        if isinstance(e, urllib.error.HTTPError):
            return e.code == 503
        return isinstance(e, urllib.error.URLError | ConnectionError | TimeoutError)

    try:
        body = _retrying(call, retries, retryable)
    except urllib.error.HTTPError as e:
        detail = _error_text(e)
        if e.code == 404:
            raise ServingError(f"{url}: model {model_name!r} not found on the server "
                               f"({detail}). Check --model-name.") from e
        raise ServingError(f"{url}: HTTP {e.code}: {detail}") from e
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        raise ServingError(f"{url}: server unreachable after {retries + 1} attempts: {e}") from e
    return [
        Prediction(int(p[features.OUTPUT_CLASS_IDS]), str(p[features.OUTPUT_CLASS_NAMES]),
                   [float(v) for v in p[features.OUTPUT_PROBABILITIES]])
        for p in body["predictions"]
    ]


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return json.loads(error.read()).get("error", error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


def predict_grpc(
    server: str,
    model_name: str,
    images: Sequence[bytes],
    signature: str = features.SERVING_SIGNATURE,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
) -> list[Prediction]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from trainer.warmup import predict_request

    request = predict_request(images)
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def retryable(e: Exception) -> bool:
            return isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.UNAVAILABLE

        try:
            response = _retrying(lambda: stub.Predict(request, timeout=timeout), retries,
                                 retryable)
        except grpc.RpcError as e:
            code, detail = e.code(), e.details()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(f"{server}: server unreachable after {retries + 1} attempts "
                                   f"({detail})") from e
            if code == grpc.StatusCode.NOT_FOUND:
                raise ServingError(f"{server}: model {model_name!r} not found ({detail}). "
                                   "Check --model-name.") from e
            raise ServingError(f"{server}: {code.name}: {detail}") from e
    outputs = {key: tf.make_ndarray(value) for key, value in response.outputs.items()}
    return [
        Prediction(int(class_id), name.decode(), [float(v) for v in probabilities])
        for class_id, name, probabilities in zip(
            outputs[features.OUTPUT_CLASS_IDS], outputs[features.OUTPUT_CLASS_NAMES],
            outputs[features.OUTPUT_PROBABILITIES], strict=True,
        )
    ]
