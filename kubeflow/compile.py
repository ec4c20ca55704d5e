"""Thin Kubeflow runner: the shared pipeline factory compiled to a KFP v2 PipelineSpec.

The spec runs every component in one image that has this project installed (see
kubeflow/Dockerfile); Transform and Trainer find `trainer.*` by module path inside it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PipelineConfig
from pipeline.factory import create_pipeline

# Beam on the cluster: DirectRunner inside the component pod unless overridden in config.
KFP_BEAM_ARGS = ("--runner=DirectRunner", "--direct_running_mode=multi_processing",
                 "--direct_num_workers=0")


def kfp_config(**fields) -> PipelineConfig:
    """A PipelineConfig for Kubeflow: no local MLMD (the cluster provides it)."""
    fields.setdefault("beam_pipeline_args", KFP_BEAM_ARGS)
    return PipelineConfig(metadata_path=None, orchestrator="kubeflow", **fields)


def compile_pipeline(config: PipelineConfig, output: str | Path, image: str) -> Path:
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    runner.run(create_pipeline(config), write_out=True)
    return output
