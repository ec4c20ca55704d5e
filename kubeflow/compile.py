"""Thin Kubeflow runner: the shared pipeline factory compiled to a KFP v2 PipelineSpec.

The spec runs every component in one image that has this project installed (see the
Dockerfile); Transform and Trainer find `trainer.*` by module path inside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import DIRECT_MULTI_BEAM_ARGS, REPO_ROOT, PipelineConfig
from pipeline.factory import (
    EXAMPLE_GEN_ID,
    create_pipeline,
    runtime_parameter_values,
    uncached_node_ids,
)

# Beam on the cluster: DirectRunner inside the component pod unless overridden in config.
KFP_BEAM_ARGS = DIRECT_MULTI_BEAM_ARGS

# Beam at scale for StatisticsGen, Transform and Evaluator. Placeholders are filled from
# `beam_args`; the workers run the pipeline image, so they have this project and its lock.
BEAM_PRESETS: dict[str, tuple[str, ...]] = {
    "direct": KFP_BEAM_ARGS,
    "dataflow": (
        "--runner=DataflowRunner",
        "--project={project}",
        "--region={region}",
        "--temp_location={pipeline_root}/beam-tmp",
        "--experiments=use_runner_v2",
        "--sdk_container_image={image}",
    ),
    # Flink and Spark through Beam's portable runner and their job servers.
    "flink": (
        "--runner=PortableRunner",
        "--job_endpoint={job_endpoint}",
        "--environment_type=DOCKER",
        "--environment_config={image}",
    ),
    "spark": (
        "--runner=PortableRunner",
        "--job_endpoint={job_endpoint}",
        "--environment_type=DOCKER",
        "--environment_config={image}",
        "--spark_submit_uber_jar",
    ),
}


def beam_args(preset: str, **values: str) -> tuple[str, ...]:
    """A preset's Beam arguments; every {placeholder} it uses must be given."""
    if preset not in BEAM_PRESETS:
        raise ValueError(f"unknown Beam preset {preset!r}; choose from {sorted(BEAM_PRESETS)}")
    values = {key: value for key, value in values.items() if value is not None}
    filled = []
    for arg in BEAM_PRESETS[preset]:
        try:
            filled.append(arg.format(**values))
        except KeyError as e:
            flag = "--" + e.args[0].replace("_", "-")
            raise ValueError(f"Beam preset {preset!r} needs {flag} (for {arg})") from None
    return tuple(filled)


# The image's working directory (Dockerfile WORKDIR), where the repository's folders are copied.
IMAGE_WORKDIR = "/pipeline"


def image_path(local: str | Path) -> str:
    """Where the image holds a file of this repository (e.g. the curated schema)."""
    local = Path(local).resolve()
    if not local.is_relative_to(REPO_ROOT):
        raise ValueError(
            f"{local} is not in this repository, so the image does not contain it. Put it under "
            "schema/ before building the image, or copy it to the bucket and pass its URI with "
            "--image-schema (it is still read here, to check its classes)."
        )
    return f"{IMAGE_WORKDIR}/{local.relative_to(REPO_ROOT).as_posix()}"


def kfp_config(**fields) -> PipelineConfig:
    """A PipelineConfig for Kubeflow: no local MLMD (the cluster provides it)."""
    fields.setdefault("beam_pipeline_args", KFP_BEAM_ARGS)
    return PipelineConfig(metadata_path=None, orchestrator="kubeflow", **fields)


def compile_pipeline(config: PipelineConfig, output: str | Path, image: str) -> Path:
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    pipeline = create_pipeline(config)
    runner.run(pipeline, parameter_values=runtime_parameter_values(config), write_out=True)
    job = json.loads(output.read_text())
    root = job["pipelineSpec"]["root"]
    uncached = uncached_node_ids(pipeline)
    if config.spans:
        # `span` 0 reads the newest span, which changes between runs with the same parameters
        # (a recurring run): KFP's cache key holds the parameters, not the folder's content.
        uncached.append(EXAMPLE_GEN_ID)
    for node_id in uncached:
        root["dag"]["tasks"][node_id]["cachingOptions"] = {"enableCache": False}
    # The uploaded spec carries the compiled values as defaults: the open-source API server
    # never sees the PipelineJob's runtimeConfig, and refuses a run lacking any parameter.
    for name, default in job["runtimeConfig"]["parameterValues"].items():
        root["inputDefinitions"]["parameters"][name]["defaultValue"] = default
    output.write_text(json.dumps(job, indent=2, sort_keys=True))
    return output
