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


def test_runtime_parameters_feed_the_tasks_with_the_compiled_defaults(tmp_path: Path) -> None:
    job = _compile(tmp_path, "--epochs", "5", "--serving-dir", "gs://bucket/serving")
    spec = job["pipelineSpec"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "data-root", "trainer-config", "push-destination"}
    defaults = {k: v["stringValue"] for k, v in job["runtimeConfig"]["parameters"].items()}
    assert defaults["data-root"] == "gs://bucket/data"
    assert json.loads(defaults["trainer-config"])["epochs"] == 5
    push = json.loads(defaults["push-destination"])
    assert push["filesystem"]["baseDirectory"].startswith("gs://bucket/serving/")
    tasks = spec["root"]["dag"]["tasks"]

    def source(task: str, parameter: str) -> str:
        return tasks[task]["inputs"]["parameters"][parameter]["componentInputParameter"]

    assert source("ImportExampleGen", "input_base") == "data-root"
    assert source("Trainer", "custom_config") == "trainer-config"
    assert source("Pusher", "push_destination") == "push-destination"


def test_beam_presets_compile_for_dataflow_flink_and_spark(tmp_path: Path, caplog) -> None:
    dataflow = json.dumps(_compile(tmp_path, "--beam", "dataflow", "--project", "p1",
                                   "--region", "europe-west4"))
    for arg in ("--runner=DataflowRunner", "--project=p1", "--region=europe-west4",
                "--temp_location=gs://bucket/root/beam-tmp",
                "--sdk_container_image=registry.example/tfx-img:1"):
        assert arg in dataflow
    for runner in ("flink", "spark"):
        text = json.dumps(_compile(tmp_path, "--beam", runner, "--job-endpoint", "js:8099"))
        assert "--runner=PortableRunner" in text and "--job_endpoint=js:8099" in text
        assert "--environment_config=registry.example/tfx-img:1" in text
        assert "DirectRunner" not in text
    assert "--direct_running_mode=multi_processing" in json.dumps(_compile(tmp_path))
    output = tmp_path / "bad.json"
    assert main(["compile-kfp", "--output", str(output), "--beam", "dataflow"]) == 2
    assert "needs --project" in caplog.text
    assert not output.exists()
