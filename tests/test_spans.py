"""Spans: `ingest --span` writes ROOT/span-N/, and a run on ROOT trains on the newest span."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

import imagegen
from cli import EXIT_BAD_INPUT, EXIT_DATA_REJECTED, main
from conftest import int_properties, run_artifact
from ingest.dataset import IngestError, load_dataset_info
from ingest.spans import ingest_span, next_span, span_dirs

N_CLASSES = len(imagegen.CLASS_NAMES)


def _span_source(tmp_path: Path, name: str, train: int, seed: int, size: int = 8) -> Path:
    imagegen.write_folder(tmp_path / name, {"train": train, "test": 4}, seed=seed, size=size)
    return tmp_path / name


def test_spans_are_numbered_refused_when_they_exist_and_replaced_on_request(
    tmp_path: Path, capsys
) -> None:
    root = tmp_path / "data"
    first = _span_source(tmp_path, "week1", 10, seed=1)
    second = _span_source(tmp_path, "week2", 12, seed=2)
    assert main(["ingest", str(first), str(root), "--span", "auto"]) == 0
    assert main(["ingest", str(second), str(root), "--span", "auto"]) == 0
    assert list(span_dirs(root)) == [1, 2] and next_span(root) == 3
    assert load_dataset_info(root / "span-2").split_counts["test"] == 4 * N_CLASSES

    assert main(["ingest", str(first), str(root), "--span", "2"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "span 2 already exists" in err and "--overwrite-span" in err and "(3)" in err
    assert load_dataset_info(root / "span-2").split_counts["test"] == 4 * N_CLASSES
    third = _span_source(tmp_path, "week2-fixed", 6, seed=3)
    assert main(["ingest", str(third), str(root), "--span", "2", "--overwrite-span"]) == 0
    assert load_dataset_info(root / "span-2").split_counts["train"] < 10 * N_CLASSES
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging left

    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", str(first), str(root), "--span", "next"])
    assert exit_info.value.code == EXIT_BAD_INPUT


def test_a_span_of_another_image_shape_is_refused_naming_both(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ingest_span(_span_source(tmp_path, "small", 10, seed=1), root, "auto")
    bigger = _span_source(tmp_path, "big", 10, seed=2, size=12)
    with pytest.raises(IngestError, match=r"12x12x3.*span 1.*8x8x3|8x8x3.*12x12x3"):
        ingest_span(bigger, root, "auto")
    assert list(span_dirs(root)) == [1]
    number, info = ingest_span(bigger, root, "auto", resize=(8, 8))
    assert number == 2 and info.image_shape == (8, 8, 3)


def _add_size(src: Path, size: int, class_name: str = "red") -> None:
    import numpy as np

    path = src / "train" / class_name / f"size{size}.png"
    path.write_bytes(imagegen.image_bytes(class_name, np.random.default_rng(size), size=size))


def test_spans_whose_sizes_vary_follow_each_other_but_channels_must_match(
    tmp_path: Path
) -> None:
    root = tmp_path / "data"
    first = _span_source(tmp_path, "mixed1", 4, seed=1)
    _add_size(first, 12)
    number, info = ingest_span(first, root, "auto")
    assert number == 1 and info.sizes_vary
    second = _span_source(tmp_path, "mixed2", 4, seed=2, size=10)  # other sizes than span 1
    _add_size(second, 30)
    _add_size(second, 31, "blue")
    number, info = ingest_span(second, root, "auto")
    assert number == 2 and info.sizes_vary and info.image_shape == (10, 10, 3)
    # One fixed size after spans whose sizes vary: Transform resizes the earlier ones.
    number, info = ingest_span(_span_source(tmp_path, "fixed", 4, seed=3, size=9), root, "auto")
    assert number == 3 and not info.sizes_vary
    # The channel count is still one for every span.
    from PIL import Image

    gray = _span_source(tmp_path, "gray", 4, seed=4, size=9)
    for path in list(gray.rglob("*.*")):
        Image.open(path).convert("L").save(path.with_name(path.stem + "-gray.png"))
        path.unlink()
    with pytest.raises(IngestError,
                       match=r"1 channel\(s\), but span 3 .* use the ingest option channels=3"):
        ingest_span(gray, root, "auto")
    number, info = ingest_span(gray, root, "auto", channels=3)
    assert number == 4 and info.image_shape == (9, 9, 3)


def test_an_empty_span_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert main(["ingest", str(tmp_path / "empty"), str(tmp_path / "data"),
                 "--span", "auto"]) == EXIT_BAD_INPUT
    assert not span_dirs(tmp_path / "data")


def _examples_of_run(metadata_path: Path, run_id: str):
    return run_artifact(metadata_path, run_id, "Examples")


# The facts the DataGate and the Trainer put on their outputs in ML Metadata (None: not set).
_GATE_PROPERTIES = ("class_map_changed", "baseline_version", "statistics_differences")
_TRAINER_PROPERTIES = ("skip_if_unchanged", "handed_on_version")


def _int_properties(metadata_path: Path, run_id: str, type_name: str,
                    names: tuple[str, ...]) -> dict[str, int | None]:
    """Those of the named integer custom properties the artifact of a type in a run has."""
    properties = int_properties(run_artifact(metadata_path, run_id, type_name))
    return {name: properties.get(name) for name in names}


@pytest.mark.pipeline
def test_a_rolling_window_of_spans_trains_on_them_and_gates_the_newest(
    tmp_path: Path, capsys
) -> None:
    """Spans through LocalDagRunner with a window of 2 and --skip-if-unchanged:
    1. spans 1-2: the window as ML Metadata records it; statistics and report of span 2 only;
    2. span 3, new images, warm-started: the gate compares span 3 with span 2, the statistics
       differ so it trains, and `lineage` follows the warm start back to run 1's model;
    3. span 4, span 3's images again: the served model is handed on, nothing new is pushed;
    4. span 5 with a renamed class: stopped by the gate.
    """
    from components.gate_report import GateReport
    from ingest.spans import WINDOW_PROPERTY
    from pipeline.workspace import Workspace
    from report import REPORT_JSON
    from report.summary import summarize_run, value
    from schema.curated import write_schema
    from trainer.record import SkipDecision, TrainingRecord

    root = tmp_path / "data"
    for span, train in ((1, 20), (2, 30)):
        ingest_span(_span_source(tmp_path, f"week{span}", train, seed=span), root, "auto")
    write_schema(N_CLASSES, tmp_path / "schema.pbtxt")
    work = tmp_path / "root"
    run = ["run", "--recipe", "classic",
           "--data", str(root), "--root", str(work), "--pipeline-name", "spans",
           "--serving-dir", str(tmp_path / "serving"), "--schema", str(tmp_path / "schema.pbtxt"),
           "--epochs", "1", "--batch-size", "8", "--min-accuracy", "0", "--max-regression", "1",
           "--spans", "2", "--skip-if-unchanged"]
    counts = {n: load_dataset_info(root / f"span-{n}").split_counts for n in (1, 2)}
    workspace = Workspace(work, "spans")

    def properties(run_id: str) -> tuple[dict[str, int | None], dict[str, int | None]]:
        """The gate's ValidatedStatistics' and the Trainer's Model's, in ML Metadata."""
        return (_int_properties(workspace.metadata_path, run_id,
                                "tfx_image.ValidatedStatistics", _GATE_PROPERTIES),
                _int_properties(workspace.metadata_path, run_id, "Model", _TRAINER_PROPERTIES))

    def last_run():
        summary = summarize_run(str(workspace.metadata_path), "spans")
        examples = _examples_of_run(workspace.metadata_path, summary.run_id)
        gate = GateReport.read(run_artifact(workspace.metadata_path, summary.run_id,
                                            "tfx_image.ValidatedStatistics").uri)
        return (summary, json.loads(value(examples, WINDOW_PROPERTY)),
                TrainingRecord.read(summary.tensorboard_dir), gate)

    # TFX builds an sdist of itself in a new temporary folder for every Beam executor;
    # the run removes its temporary files (pipeline/local_runner.py scoped_tempdir).
    leaked = set(Path(tempfile.gettempdir()).glob("tmp*/build/tfx"))
    assert main([*run, "--json"]) == 0
    assert set(Path(tempfile.gettempdir()).glob("tmp*/build/tfx")) == leaked
    assert not list((workspace.pipeline_root / ".tmp").iterdir())
    summary, window, record, _ = last_run()
    assert window == [1, 2] and summary.spans == [1, 2]
    assert record.skip_if_unchanged == SkipDecision(skip=False, why="no version is served yet")
    # Nothing served: no comparison to record on the gate's output.
    assert properties(summary.run_id) == (
        {"class_map_changed": 0, "baseline_version": None, "statistics_differences": None},
        {"skip_if_unchanged": 0, "handed_on_version": None})
    # The Trainer fitted both spans' train images and early-stopped on span 2's eval alone.
    assert record.num_train == counts[1]["train"] + counts[2]["train"]
    assert record.num_eval == counts[2]["eval"]
    # Statistics, gate and report: span 2 alone (no history split among them).
    report = json.loads((workspace.report_dir(summary.run_id) / REPORT_JSON).read_text())
    assert {s: v["examples"] for s, v in report["dataset"]["splits"].items()} == counts[2]
    assert report["dataset"]["span"] == 2 and report["dataset"]["dataset_json_matches_run"]
    assert report["dataset"]["window_spans"] == [1, 2]

    ingest_span(_span_source(tmp_path, "week3", 30, seed=3), root, "auto")
    counts[3] = load_dataset_info(root / "span-3").split_counts
    assert main([*run, "--warm-start"]) == 0
    summary, window, record, gate = last_run()
    assert window == [2, 3] and summary.spans == [2, 3]
    assert record.num_train == counts[2]["train"] + counts[3]["train"]
    assert record.warm_start.used
    assert gate.span == 3 and gate.baseline_span == 2
    assert "span 3 with span 2" in gate.drift_compared
    decision = record.skip_if_unchanged
    assert not decision.skip and "span 3 with span 2" in decision.why
    assert "the statistics differ" in decision.why, decision
    assert gate.baseline_version == record.warm_start.version and gate.comparison.differences
    assert properties(summary.run_id) == (
        {"class_map_changed": 0, "baseline_version": gate.baseline_version,
         "statistics_differences": len(gate.comparison.differences)},
        {"skip_if_unchanged": 0, "handed_on_version": None})
    # The lineage follows the warm start back to the model trained from scratch.
    first_version = record.warm_start.version
    served = summary.pushed_destination
    new_version = served.rsplit("/", 1)[1]
    capsys.readouterr()
    assert main(["lineage", "--model", new_version, "--root", str(work), "--pipeline-name",
                 "spans", "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)["warm_start_chain"]
    assert [(c["version"], c["spans"], c["warm_started_from"]) for c in chain] == [
        (new_version, [2, 3], first_version), (str(first_version), [1, 2], None)]

    # The same images again: equal statistics and training config (warm start not compared).
    versions = sorted(p.name for p in Path(served).parent.iterdir())
    ingest_span(tmp_path / "week3", root, "auto")
    assert main(run) == 0
    handed_on, window, record, gate = last_run()
    decision = record.skip_if_unchanged
    assert decision.skip and decision.origin == served, decision
    assert "span 4 with span 3" in decision.why and "equal in every split" in decision.why
    assert window == [3, 4] and not record.history
    assert properties(handed_on.run_id) == (
        {"class_map_changed": 0, "baseline_version": decision.version,
         "statistics_differences": 0},
        {"skip_if_unchanged": 1, "handed_on_version": decision.version})
    assert handed_on.already_served and handed_on.pushed_destination == served
    assert sorted(p.name for p in Path(served).parent.iterdir()) == versions
    # Evaluated on span 4's test split (span 3's images) without a baseline: the same score.
    assert handed_on.accuracy == summary.accuracy and handed_on.baseline_accuracy is None
    report = workspace.report_dir(handed_on.run_id)
    assert json.loads((report / REPORT_JSON).read_text())["training"]["skip_if_unchanged"]
    assert "handed on" in (report / "report.html").read_text()

    renamed = _span_source(tmp_path, "week5", 30, seed=5)
    for split in ("train", "test"):
        (renamed / split / "red").rename(renamed / split / "crimson")
    ingest_span(renamed, root, "auto")
    capsys.readouterr()
    assert main(run) == EXIT_DATA_REJECTED
    err = capsys.readouterr().err
    assert "the class map differs" in err and "(renamed 'red' -> 'crimson'?)" in err
    assert str(root / "span-5" / "dataset.json") in err
    # Span 4 in the window keeps the old class map: even accepted, the two cannot train together.
    assert "spans [4] of the window [4, 5] have another class map than span 5" in err
    assert main([*run, "--accept-new-classes"]) == EXIT_DATA_REJECTED
    err = capsys.readouterr().err
    assert "(at most 1 span(s))" in err and "shorten the window with --spans." in err


def _records(pattern: str) -> int:
    import tensorflow as tf

    files = tf.io.gfile.glob(pattern)
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


@pytest.mark.pipeline
def test_the_executor_resolves_the_window_itself_as_on_kubeflow(tmp_path: Path) -> None:
    """No driver on Kubeflow: the run-time parameters `span` and `span-window` reach the
    executor with the `{SPAN}` patterns unresolved, and it reads the window they name.
    """
    from tfx.dsl.components.base import base_beam_executor
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from components.example_gen import Executor
    from ingest.dataset import SPLITS
    from ingest.spans import HISTORY, WINDOW_PROPERTY, split_pattern
    from pipeline.config import LOCAL_BEAM_ARGS
    from pipeline.local_runner import scoped_tempdir

    root = tmp_path / "data"
    for span, train in ((1, 10), (2, 12), (3, 14)):
        ingest_span(_span_source(tmp_path, f"week{span}", train, seed=span), root, "auto")
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=s, pattern=split_pattern(s, True))
        for s in (*SPLITS, HISTORY)])
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    properties = {
        "input_base": str(root),
        "input_config": proto_utils.proto_to_json(input_config),
        "output_config": proto_utils.proto_to_json(example_gen_pb2.Output()),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        "target_span": 2,
        "span_window": 2,
    }
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(LOCAL_BEAM_ARGS), tmp_dir=str(tmp_path / "tmp"))
    with scoped_tempdir(tmp_path):  # TFX's Beam executors leave an sdist in the temp folder
        Executor(context).Do({}, {"examples": [examples]}, properties)

    counts = {n: load_dataset_info(root / f"span-{n}").split_counts for n in (1, 2)}
    assert examples.get_int_custom_property("span") == 2
    assert json.loads(examples.get_string_custom_property(WINDOW_PROPERTY)) == [1, 2]
    found = {split: _records(str(tmp_path / "examples" / f"Split-{split}" / "*"))
             for split in (*SPLITS, HISTORY)}
    assert found == {**counts[2], HISTORY: counts[1]["train"]}

    properties["target_span"] = 9
    with scoped_tempdir(tmp_path), pytest.raises(ValueError, match=r"span 9 does not exist"):
        Executor(context).Do({}, {"examples": [examples]}, properties)


def test_a_window_or_span_that_cannot_be_read_exits_2_before_anything_runs(
    tmp_path: Path, capsys
) -> None:
    root = tmp_path / "data"
    ingest_span(_span_source(tmp_path, "week1", 10, seed=1), root, "auto")
    other = _span_source(tmp_path, "week2", 10, seed=2)
    for split in ("train", "test"):
        (other / split / "red").rename(other / split / "crimson")
    ingest_span(other, root, "auto")
    plain = tmp_path / "plain"
    imagegen.write_folder(tmp_path / "images", {"train": 10, "test": 4})
    assert main(["ingest", str(tmp_path / "images"), str(plain)]) == 0
    base = ["run", "--recipe", "classic",
            "--root", str(tmp_path / "work"), "--serving-dir", str(tmp_path / "serving")]
    cases = {
        ("--data", str(root), "--span", "7"): "span 7 does not exist",
        ("--data", str(plain), "--spans", "2"): "holds no span-N folders",
        ("--data", str(plain), "--span", "1"): "holds no span-N folders",
    }
    for args, message in cases.items():
        capsys.readouterr()
        assert main([*base, *args]) == EXIT_BAD_INPUT, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "work" / "pipelines").exists()


def test_spans_of_different_class_maps_cannot_share_a_window(tmp_path: Path) -> None:
    from ingest.spans import mixed_class_maps

    root = tmp_path / "data"
    ingest_span(_span_source(tmp_path, "week1", 10, seed=1), root, "auto")
    ingest_span(_span_source(tmp_path, "week2", 10, seed=2), root, "auto")
    other = _span_source(tmp_path, "week3", 10, seed=3)
    for split in ("train", "test"):
        (other / split / "red").rename(other / split / "crimson")
    ingest_span(other, root, "auto")
    assert mixed_class_maps(str(root), [1, 2]) is None
    assert mixed_class_maps(str(root), [3]) is None
    message = mixed_class_maps(str(root), [1, 2, 3])
    assert "spans [1, 2] of the window [1, 2, 3]" in message and "(at most 1 span(s))" in message
    assert "crimson" in message
