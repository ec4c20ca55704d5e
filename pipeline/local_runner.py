"""Thin local runner: the shared pipeline factory on LocalDagRunner with a SQLite MLMD store."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def scoped_tempdir(parent: Path) -> Iterator[Path]:
    """Temporary files of one run in a folder of their own, removed when the run ends.

    TFX and Beam leave files there: without `no_tfx_sdist`, every Beam executor leaves an sdist
    of TFX in a fresh temporary folder, and /tmp grows with every run.
    Worker processes inherit TMPDIR, so theirs go here too.
    """
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(path), str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def no_tfx_sdist() -> Iterator[None]:
    """TFX's Beam executors without the sdist of TFX they build for remote Beam workers.

    `BaseBeamExecutor.__init__` calls `dependency_utils.make_beam_dependency_flags`, which
    packs TFX into an sdist unless the Beam args name a package or an SDK image. Local runs use
    Beam's FnApiRunner (pipeline/beam_runner.py), whose workers import TFX from this
    environment, so the sdist is never read: building it is time lost in every Beam component.
    Checked against TFX 1.16.0 (tfx/dsl/components/base/base_beam_executor.py); Kubeflow pods,
    which do not run this, are unchanged.
    """
    from tfx.utils import dependency_utils

    original = dependency_utils.make_beam_dependency_flags
    dependency_utils.make_beam_dependency_flags = list
    try:
        yield
    finally:
        dependency_utils.make_beam_dependency_flags = original


def run_local(config: PipelineConfig) -> None:
    if not config.metadata_path:
        raise ValueError("a local run needs PipelineConfig.metadata_path (the SQLite MLMD file)")
    Path(config.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    with scoped_tempdir(Path(config.pipeline_root) / ".tmp"), no_tfx_sdist():
        LocalDagRunner().run_with_ir(compile_local(config))
