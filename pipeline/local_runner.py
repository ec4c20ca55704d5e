"""Thin local runner: the shared pipeline factory on LocalDagRunner with a SQLite MLMD store."""

from __future__ import annotations

from pathlib import Path

from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from pipeline.config import PipelineConfig
from pipeline.factory import create_pipeline


def run_local(config: PipelineConfig) -> None:
    if not config.metadata_path:
        raise ValueError("a local run needs PipelineConfig.metadata_path (the SQLite MLMD file)")
    Path(config.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    LocalDagRunner().run(create_pipeline(config))
