"""kubeflow/serving/: the TF Serving config and Kubernetes manifests agree with each other,
with the TensorFlow the model is exported with, and with where the Pusher writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import tensorflow as tf
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

SERVING = Path(__file__).resolve().parent.parent / "kubeflow" / "serving"


def _model_config() -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse((SERVING / "models.config").read_text(),
                             model_server_config_pb2.ModelServerConfig())


def _container() -> dict:
    deployment = yaml.safe_load((SERVING / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_models_config_parses_and_points_into_the_models_volume() -> None:
    (model,) = _model_config().model_config_list.config
    assert model.model_platform == "tensorflow"
    mount = next(m["mountPath"] for m in _container()["volumeMounts"] if m["name"] == "models")
    # The Pusher writes <serving-dir>/<model-name>/<version>/; TF Serving reads <base_path>.
    assert model.base_path == f"{mount}/{model.name}"


def test_image_matches_the_exporting_tensorflow_and_ports() -> None:
    container = _container()
    image, tag = container["image"].split(":")
    assert image == "tensorflow/serving"
    assert tag.split(".")[:2] == tf.__version__.split(".")[:2]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert (args["port"], args["rest_api_port"]) == ("8500", "8501")
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    service = yaml.safe_load((SERVING / "service.yaml").read_text())
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
    assert service["spec"]["selector"] == {"app": "tf-serving"}
    # Config files come from the ConfigMap that kustomize generates from this folder.
    kustomization = yaml.safe_load((SERVING / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    for key in ("model_config_file", "batching_parameters_file"):
        assert Path(args[key]).name in generator["files"]
        assert (SERVING / Path(args[key]).name).is_file()


def test_readiness_probe_is_the_model_status_endpoint() -> None:
    (model,) = _model_config().model_config_list.config
    probe = _container()["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{model.name}", "port": 8501}


def test_batching_parameters_are_consistent() -> None:
    text = (SERVING / "batching_parameters.txt").read_text()
    values = {k: int(v) for k, v in re.findall(r"^(\w+) \{ value: (\d+) \}", text, re.M)}
    allowed = [int(v) for v in re.findall(r"^allowed_batch_sizes: (\d+)", text, re.M)]
    assert set(values) == {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                           "num_batch_threads"}
    assert allowed == sorted(allowed) and allowed[-1] == values["max_batch_size"]
    limit = _container()["resources"]["limits"]["cpu"]
    assert values["num_batch_threads"] == int(limit)
