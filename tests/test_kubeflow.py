"""The same pipeline factory compiled for Kubeflow Pipelines v2, validated as a PipelineSpec."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.cli import main

COMPONENTS = {
    "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
    "validated_statistics_resolver", "DataGate", "Transform", "Trainer", "Evaluator", "Pusher",
    # KFP v2 has no resolver node: TFX compiles the Resolver into one task per channel.
    "latest_blessed_model_resolver-model-resolver",
    "latest_blessed_model_resolver-model-blessing-resolver",
}


def _compile(tmp_path: Path, *extra: str) -> dict:
    output = tmp_path / "pipeline.json"
    assert main(["compile-kfp", "--output", str(output), "--image", "registry.example/tfx-img:1",
                 "--pipeline-root", "gs://bucket/root", "--data-root", "gs://bucket/data",
                 *extra]) == 0
    return json.loads(output.read_text())


def test_compiled_spec_is_a_valid_pipeline_spec(tmp_path: Path) -> None:
    job = _compile(tmp_path)
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == COMPONENTS
    # The gate holds Transform (and so everything after it) back on Kubeflow too.
    assert "DataGate" in spec.root.dag.tasks["Transform"].dependent_tasks
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    executors = spec.deployment_spec["executors"]
    images = {
        e["container"]["image"] for e in executors.values() if "container" in e
    }
    assert images == {"registry.example/tfx-img:1"}
    text = json.dumps(job)
    assert "gs://bucket/data" in text
    assert "trainer.preprocessing.preprocessing_fn" in text
    assert "trainer.run.run_fn" in text
    assert "serving_default" in text


def test_config_changes_reach_the_spec(tmp_path: Path) -> None:
    first = json.dumps(_compile(tmp_path, "--epochs", "3"))
    second = json.dumps(_compile(tmp_path, "--epochs", "7"))
    assert '\\"epochs\\": 3' in first and '\\"epochs\\": 7' in second
