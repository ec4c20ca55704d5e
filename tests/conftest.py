"""Shared fixtures. The pipeline runs are session-scoped: they take most of the suite's time
and several test modules inspect their results."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import imagegen  # noqa: E402

PIPELINE_NAME = "test-pipeline"
MODEL_NAME = "colors"


@dataclasses.dataclass
class PipelineRuns:
    """Three runs on one pipeline root: good, cached re-run, deliberately worse candidate."""

    root: Path
    serving_dir: Path
    images: Path
    eval_files: list[Path]
    schema: Path
    exit_codes: list[int]
    # Serving-dir snapshot (relative path -> bytes) after each run.
    snapshots: list[dict[str, bytes]]

    @property
    def metadata_path(self) -> str:
        return str(self.root / "metadata" / f"{PIPELINE_NAME}.sqlite")

    @property
    def model_base(self) -> Path:
        return self.serving_dir / MODEL_NAME


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory: pytest.TempPathFactory) -> PipelineRuns:
    from pipeline.cli import main
    from pipeline.schema import write_schema

    base = tmp_path_factory.mktemp("e2e")
    images = base / "images"
    files = imagegen.write_folder(images, {"train": 16, "test": 6})
    schema = base / "schema.pbtxt"
    write_schema(len(imagegen.CLASS_NAMES), schema)
    runs = PipelineRuns(
        root=base / "root", serving_dir=base / "serving", images=images,
        eval_files=files["test"], schema=schema, exit_codes=[], snapshots=[],
    )
    common = [
        "run", "--data", str(images), "--root", str(runs.root),
        "--serving-dir", str(runs.serving_dir), "--pipeline-name", PIPELINE_NAME,
        "--model-name", MODEL_NAME, "--schema", str(schema), "--batch-size", "16",
        # The fast recipe (bfloat16 where supported, flip augmentation + flip TTA in serving)
        # with a learning rate for 48 images.
        "--recipe", "fast", "--learning-rate", "0.05",
    ]
    # 1: a good model; 2: unchanged re-run (cached Trainer, first model as baseline);
    # 3: an untrained candidate, gated only by the no-regression threshold.
    for extra in (
        ["--epochs", "8"],
        ["--epochs", "8"],
        ["--epochs", "0", "--min-accuracy", "0"],
    ):
        runs.exit_codes.append(main(common + extra))
        runs.snapshots.append(snapshot(runs.serving_dir))
    return runs
