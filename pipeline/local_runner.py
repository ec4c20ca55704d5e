"""Thin local runner: the shared pipeline factory on LocalDagRunner with a SQLite MLMD store."""

from __future__ import annotations

from pathlib import Path

from tfx.dsl.compiler.compiler import Compiler
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.proto.orchestration import pipeline_pb2

from pipeline.config import PipelineConfig
from pipeline.factory import create_pipeline, uncached_node_ids


def compile_local(config: PipelineConfig) -> pipeline_pb2.Pipeline:
    """The pipeline IR, with caching off for the nodes that read the served model."""
    pipeline = create_pipeline(config)
    ir = Compiler().compile(pipeline)
    uncached = set(uncached_node_ids(pipeline))
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in uncached:
            node.pipeline_node.execution_options.caching_options.enable_cache = False
    return ir


def run_local(config: PipelineConfig) -> None:
    if not config.metadata_path:
        raise ValueError("a local run needs PipelineConfig.metadata_path (the SQLite MLMD file)")
    Path(config.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    LocalDagRunner().run_with_ir(compile_local(config))
