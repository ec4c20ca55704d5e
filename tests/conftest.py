"""Shared fixtures. The pipeline runs are session-scoped: they take most of the suite's time
and several test modules inspect their results.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

import imagegen  # noqa: E402

# Session fixtures too costly to build once per pytest-xdist worker (whole pipeline runs).
SHARED_ACROSS_FILES = ("pipeline_runs", "prepared")

# Test layers (registered in pyproject.toml, described in tests/README.md). Every test gets
# exactly one, at collection:
#   e2e       the README's demo end to end through the CLI (marked per module: test_digits_demo);
#   pipeline  runs real TFX components (LocalDagRunner, an executor on Beam, tf.Transform) or
#             trains in a subprocess: marked per module or per test, or by using a fixture below;
#   unit      everything else: no pipeline run, seconds.
LAYERS = ("unit", "pipeline", "e2e")
# Fixtures that build pipeline runs (or tf.Transform on Beam); a test using one, directly or
# through another fixture, is `pipeline` at least.
PIPELINE_FIXTURES = frozenset({
    "pipeline_runs",  # conftest.py: five LocalDagRunner runs on one root
    "prepared",  # conftest.py: tf.Transform on Beam (tests/tiny_transform.py)
    "gate_runs",  # test_data_gate.py
    "transfer_runs",  # test_transfer.py
    "digits_run",  # test_digits_demo.py (e2e)
})


def layer_of(name: str, explicit: list[str], fixturenames: list[str] | tuple[str, ...]) -> str:
    """The layer of one test: its explicit layer marker, else `pipeline` if it uses a pipeline
    fixture, else `unit`. Raises pytest.UsageError on two layers, or on `unit` with a pipeline
    fixture: a unit test must not build a pipeline run.
    """
    layers = sorted(set(explicit))
    if len(layers) > 1:
        raise pytest.UsageError(f"{name}: more than one test layer marker {layers}; use one "
                                f"of {LAYERS} (tests/README.md)")
    heavy = sorted(PIPELINE_FIXTURES.intersection(fixturenames))
    if layers == ["unit"] and heavy:
        raise pytest.UsageError(f"{name} is marked `unit` but uses the pipeline fixture(s) "
                                f"{heavy}: mark it `pipeline` (tests/README.md)")
    if layers:
        return layers[0]
    return "pipeline" if heavy else "unit"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups and -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test its layer marker (see layer_of).

    Under `--dist loadgroup`, one group per test file (its module fixtures are built once),
    except that files using a costly session fixture form one group, so one worker builds it.
    """
    for item in items:
        explicit = [m.name for m in item.iter_markers() if m.name in LAYERS]
        layer = layer_of(item.nodeid, explicit, item.fixturenames)
        if not explicit:
            item.add_marker(getattr(pytest.mark, layer))
    shared: dict[Path, set[str]] = {}
    for item in items:
        shared.setdefault(item.path, set()).update(
            name for name in SHARED_ACROSS_FILES if name in item.fixturenames)
    for item in items:
        item.add_marker(pytest.mark.xdist_group("+".join(sorted(shared[item.path]))
                                                or item.path.name))


@pytest.fixture(autouse=True)
def _unit_tests_run_no_pipeline(request: pytest.FixtureRequest, monkeypatch) -> None:
    """A `unit` test that reaches LocalDagRunner fails, naming the fix (in this process; once
    TFX is imported, as it is after the suite's collection, so a lone small file stays quick).
    """
    if request.node.get_closest_marker("unit") is None or "tfx" not in sys.modules:
        return
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    def refuse(*args, **kwargs):
        # pytest.fail raises a BaseException: `run`'s own `except Exception` cannot turn it
        # into an exit code that the test might not even look at.
        pytest.fail(f"{request.node.nodeid} is a `unit` test but runs LocalDagRunner: mark it "
                    "`pipeline` (tests/README.md)", pytrace=False)

    for name in ("run", "run_with_ir"):
        monkeypatch.setattr(LocalDagRunner, name, refuse)


def run_artifact(metadata_path: str | Path, run_id: str, type_name: str):
    """The artifact of a type that a run wrote, from ML Metadata; None if it wrote none."""
    from report.summary import open_store

    store = open_store(str(metadata_path))
    run = next(c for c in store.get_contexts_by_type("pipeline_run") if c.name == run_id)
    return next((a for a in store.get_artifacts_by_context(run.id) if a.type == type_name),
                None)


def int_properties(artifact) -> dict[str, int]:
    """An ML Metadata artifact's integer custom properties."""
    return {name: value.int_value for name, value in artifact.custom_properties.items()
            if value.HasField("int_value")}


def run_cli(args: list[str]) -> tuple[int, list[str], list[str]]:
    """`python -m pipeline ARGS` in this process: (exit code, stdout lines, stderr lines); stderr
    is written on too, so a failing test shows the run's console.
    """
    import contextlib
    import io

    from cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    sys.stderr.write(err.getvalue())
    return code, out.getvalue().splitlines(), err.getvalue().splitlines()


PIPELINE_NAME = "test-pipeline"
MODEL_NAME = "colors"


# Runs on one pipeline root, in order: a good model; an unchanged re-run (everything cached, the
# evaluation reused); a new model with the first as baseline; an untrained candidate, gated only
# by the no-regression threshold; the second's config again after the served version was rolled
# back to the first model (cached training, but the Evaluator must compare with what is served).
# The second and the worse run also score a folder of unlabelled images (--infer-data): with the
# version the second pushed, and (the worse one pushing none) with the served one, that version.
# The second trains on streamed examples: its cache budget holds 26 of the 69 train+eval images.
# It must be blessed against the first: one of the 18 test images is 5.6 points, and training on
# CPU threads is not bit-reproducible from one suite run to the next, hence --max-regression 0.1.
RUNS = {
    "first": ["--epochs", "8"],
    "rerun": ["--epochs", "8"],
    # Refit on train + eval (a fixed schedule: early stopping off), streamed past the budget.
    "second": ["--epochs", "9", "--cache-budget", "5kB", "--max-regression", "0.1", "--refit",
               "--set", "early_stopping_patience=0"],
    "worse": ["--epochs", "0", "--min-accuracy", "0"],
    "after_rollback": ["--epochs", "9", "--cache-budget", "5kB", "--max-regression", "0.1",
                       "--refit", "--set", "early_stopping_patience=0"],
}


INFER_RUNS = ("second", "worse")


@dataclasses.dataclass
class PipelineRuns:

    root: Path
    serving_dir: Path
    images: Path
    # validation/ (the Trainer's eval split: early stopping, warm-up requests) and test/ (the
    # Evaluator's split: reported accuracy and blessing).
    eval_files: list[Path]
    test_files: list[Path]
    schema: Path
    exit_codes: dict[str, int]
    # Unlabelled images (and one file that is not an image) the BulkInferrer scores.
    unlabelled: Path
    unlabelled_images: list[Path]
    # Serving-dir snapshot (relative path -> bytes) after each run.
    snapshots: dict[str, dict[str, bytes]]
    # MLMD pipeline_run context name of each run.
    run_ids: dict[str, str]
    # The version made, before the run "after_rollback", from the first run's model.
    rolled_back_to: str = ""

    @property
    def metadata_path(self) -> str:
        return str(self.root / "metadata" / f"{PIPELINE_NAME}.sqlite")

    @property
    def model_base(self) -> Path:
        return self.serving_dir / MODEL_NAME

    def report_dir(self, name: str) -> Path:
        """Where `run` wrote the report of the named run."""
        from pipeline.workspace import Workspace

        return Workspace(self.root, PIPELINE_NAME).report_dir(self.run_ids[name])


def ended_pid() -> int:
    """The pid of a process that has ended (and was reaped): an owner known to be gone."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _roll_back(model_base: Path, first_snapshot: dict[str, bytes]) -> str:
    """Serve the first run's model again, as a new version: what an operator's rollback does."""
    import shutil

    (first_version,) = {path.split("/")[1] for path in first_snapshot}
    newest = max(int(p.name) for p in model_base.iterdir() if p.name.isdigit())
    shutil.copytree(model_base / first_version, model_base / str(newest + 1))
    return str(newest + 1)


@pytest.fixture(scope="session")
def pipeline_runs(tmp_path_factory: pytest.TempPathFactory) -> PipelineRuns:
    from cli import main
    from schema.curated import write_schema

    base = tmp_path_factory.mktemp("e2e")
    images = base / "images"
    files = imagegen.write_folder(images, {"train": 16, "validation": 7, "test": 6})
    schema = base / "schema.pbtxt"
    write_schema(len(imagegen.CLASS_NAMES), schema)
    unlabelled = base / "unlabelled"
    unlabelled_images = imagegen.write_folder(unlabelled / "batch-1", {"": 2}, seed=5)[""]
    (unlabelled / "batch-1" / "notes.txt").write_text("not an image\n")
    runs = PipelineRuns(
        root=base / "root", serving_dir=base / "serving", images=images,
        eval_files=files["validation"], test_files=files["test"], schema=schema,
        unlabelled=unlabelled, unlabelled_images=unlabelled_images,
        exit_codes={}, snapshots={}, run_ids={},
    )
    common = [
        "run", "--recipe", "classic", "--data", str(images), "--root", str(runs.root),
        "--serving-dir", str(runs.serving_dir), "--pipeline-name", PIPELINE_NAME,
        "--model-name", MODEL_NAME, "--schema", str(schema), "--batch-size", "16",
        # Flip augmentation and flip test-time augmentation in the serving signature (the
        # colour classes are mirror-symmetric). The fast recipe's model, schedule, weight
        # averaging and bfloat16 paths are covered in test_recipe.py.
        "--flip",
    ]
    from report.summary import summarize_run

    for name, extra in RUNS.items():
        if name == "after_rollback":
            runs.rolled_back_to = _roll_back(runs.model_base, runs.snapshots["first"])
        infer = ["--infer-data", str(unlabelled)] if name in INFER_RUNS else []
        runs.exit_codes[name] = main(common + extra + infer)
        runs.snapshots[name] = snapshot(runs.serving_dir)
        runs.run_ids[name] = summarize_run(runs.metadata_path, PIPELINE_NAME).run_id
    return runs


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    """Tiny TFRecords and their Transform graph (tests/tiny_transform.py), shared by modules."""
    import tiny_transform

    return tiny_transform.prepare(tmp_path_factory.mktemp("prepared"))
