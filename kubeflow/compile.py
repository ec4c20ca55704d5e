"""Thin Kubeflow runner: the shared pipeline factory compiled to a KFP v2 PipelineSpec.

`compile_pipeline` writes it twice: the pipeline package (PipelineSpec YAML, what the KFP UI and
`kfp.Client` upload) and TFX's PipelineJob JSON (what Vertex AI Pipelines runs). The spec runs
every component in one image that has this project installed (see the Dockerfile); Transform
and Trainer find `trainer.*` by module path inside it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from kubeflow.conformance import PACKAGE_SUFFIXES
from pipeline.config import DIRECT_MULTI_BEAM_ARGS, REPO_ROOT, PipelineConfig
from schema.errors import BadInput, Setting

# Beam on the cluster: the local runner (pipeline/beam_runner.py) inside the component pod
# unless overridden in config.
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


# compile-kfp's `--beam` unless another preset is named: Beam's local runner in the pod.
DEFAULT_BEAM_PRESET = "direct"


def beam_args(preset: str, **values: str) -> tuple[str, ...]:
    """A preset's Beam arguments; every {placeholder} it uses must be given."""
    if preset not in BEAM_PRESETS:
        raise BadInput(f"unknown Beam preset {preset!r}; choose from {sorted(BEAM_PRESETS)}")
    values = {key: value for key, value in values.items() if value is not None}
    filled = []
    for arg in BEAM_PRESETS[preset]:
        try:
            filled.append(arg.format(**values))
        except KeyError as e:
            flag = "--" + e.args[0].replace("_", "-")
            raise BadInput(f"Beam preset {preset!r} needs {flag} (for {arg})") from None
    return tuple(filled)


# The image's working directory (Dockerfile WORKDIR), where the repository's folders are copied.
IMAGE_WORKDIR = "/pipeline"


def image_path(local: str | Path) -> str:
    """Where the image holds a file of this repository (e.g. the curated schema)."""
    local = Path(local).resolve()
    if not local.is_relative_to(REPO_ROOT):
        raise BadInput(
            f"{local} is not in this repository, so the image does not contain it. Put it under "
            "schema/ before building the image, or copy it to the bucket and give its URI as ",
            Setting("compile.image_schema"), " (it is still read here, to check its classes)."
        )
    return f"{IMAGE_WORKDIR}/{local.relative_to(REPO_ROOT).as_posix()}"


def kfp_runner_fields(beam_pipeline_args: tuple[str, ...] = KFP_BEAM_ARGS) -> dict:
    """The PipelineConfig fields that make a config Kubeflow's: no local MLMD (the cluster
    provides it) and Beam on the cluster. The rest of the config is the same as a local run's.
    """
    return {"metadata_path": None, "orchestrator": "kubeflow",
            "beam_pipeline_args": beam_pipeline_args}


# What compile-kfp writes next to the pipeline package: the PipelineJob of TFX's runner.
PIPELINE_JOB_SUFFIX = ".pipeline_job.json"


@dataclasses.dataclass(frozen=True)
class CompiledPipeline:
    """The two files of one compilation, the same PipelineSpec in each.

    package: the PipelineSpec as YAML, as KFP's own compiler writes it. The KFP UI's upload,
        `kfp.Client().upload_pipeline`, `create_run_from_pipeline_package` and
        `kfp.components.load_component_from_file` read it as it is.
    pipeline_job: the PipelineJob JSON of TFX's KubeflowV2DagRunner (the spec plus a
        runtimeConfig), what Vertex AI Pipelines takes (`aiplatform.PipelineJob(template_path=)`).
    """

    package: Path
    pipeline_job: Path


def pipeline_job_path(package: str | Path) -> Path:
    """Where the PipelineJob JSON goes for a package path: `pipeline.yaml` ->
    `pipeline.pipeline_job.json`.
    """
    package = Path(package)
    return package.with_name(package.stem + PIPELINE_JOB_SUFFIX)


def check_package_path(output: str | Path) -> Path:
    """`output` as a Path, if it names a pipeline package (.yaml); a ValueError otherwise."""
    output = Path(output)
    if output.suffix not in PACKAGE_SUFFIXES:
        raise BadInput(
            Setting("compile.output", str(output)), ": a KFP pipeline package is a .yaml file "
            "(the KFP UI and kfp.Client read .yaml, .zip and .tar.gz only); name it "
            f"{output.stem}.yaml. The "
            f"PipelineJob JSON for Vertex AI is written next to it as "
            f"{pipeline_job_path(output).name}."
        )
    return output


def compile_pipeline(config: PipelineConfig, output: str | Path, image: str) -> CompiledPipeline:
    """Compile to the KFP pipeline package `output` (.yaml) and the PipelineJob next to it."""
    # Imported here, not at the top: the factory loads TFX, and the CLI checks --output first.
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    from pipeline.factory import (
        EXAMPLE_GEN_ID,
        create_pipeline,
        runtime_parameter_values,
        uncached_node_ids,
    )

    output = check_package_path(output)
    job_path = pipeline_job_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True),
        output_dir=str(job_path.parent),
        output_filename=job_path.name,
    )
    pipeline = create_pipeline(config)
    runner.run(pipeline, parameter_values=runtime_parameter_values(config), write_out=True)
    job = json.loads(job_path.read_text())
    spec = job["pipelineSpec"]
    root = spec["root"]
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
    # Likewise the pipeline root, which the PipelineJob holds as runtimeConfig.gcsOutputDirectory:
    # the KFP UI fills a new run's pipeline root from it (KFP's compiler sets it from
    # `@dsl.pipeline(pipeline_root=...)`).
    spec["defaultPipelineRoot"] = job["runtimeConfig"]["gcsOutputDirectory"]
    job_path.write_text(json.dumps(job, indent=2, sort_keys=True))
    write_pipeline_package(spec, output)
    return CompiledPipeline(package=output, pipeline_job=job_path)


def write_pipeline_package(spec: dict, path: Path) -> None:
    """Write a PipelineSpec as KFP's compiler does for a .yaml path.

    As kfp.compiler.pipeline_spec_builder.write_pipeline_spec_to_file: the spec through the
    PipelineSpec proto (which refuses unknown fields, as the API server's parser does), a header
    of comments naming the pipeline and its inputs, then the spec as a YAML document with sorted
    keys. KFP adds a PlatformSpec document only for Kubernetes-specific settings, which TFX does
    not compile.
    """
    import yaml
    from google.protobuf import json_format
    from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.MessageToDict(
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()))
    header = extract_comments_from_pipeline_spec(spec, None)
    # KFP's header quotes each default as it is; a default with line breaks (the push
    # destination's JSON) would end the comment and break the YAML, so its lines stay comments.
    header = "".join(line if line.startswith("#") else f"#      {line}"
                     for line in header.splitlines(keepends=True))
    with path.open("w") as f:
        f.write(header)
        yaml.dump_all([spec], f, sort_keys=True)
