"""Spans: `ingest --span` writes ROOT/span-N/, and a run on ROOT trains on the newest span."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imagegen
from pipeline.cli import EXIT_BAD_INPUT, EXIT_DATA_REJECTED, main
from pipeline.ingest import IngestError, load_dataset_info
from pipeline.spans import ingest_span, next_span, span_dirs

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


def test_an_empty_span_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert main(["ingest", str(tmp_path / "empty"), str(tmp_path / "data"),
                 "--span", "auto"]) == EXIT_BAD_INPUT
    assert not span_dirs(tmp_path / "data")


def test_a_run_on_a_span_root_trains_on_the_newest_span(tmp_path: Path, capsys) -> None:
    """Then a span whose class map differs from the served model's is stopped by the gate."""
    from pipeline.report import REPORT_JSON
    from pipeline.schema import write_schema
    from pipeline.summary import summarize_run
    from pipeline.workspace import Workspace

    root = tmp_path / "data"
    ingest_span(_span_source(tmp_path, "week1", 20, seed=1), root, "auto")
    ingest_span(_span_source(tmp_path, "week2", 30, seed=2), root, "auto")
    write_schema(N_CLASSES, tmp_path / "schema.pbtxt")
    work = tmp_path / "root"
    run = ["run", "--data", str(root), "--root", str(work), "--pipeline-name", "spans",
           "--serving-dir", str(tmp_path / "serving"), "--schema", str(tmp_path / "schema.pbtxt"),
           "--epochs", "1", "--batch-size", "8", "--min-accuracy", "0"]
    assert main([*run, "--json"]) == 0
    workspace = Workspace(work, "spans")
    summary = summarize_run(str(workspace.metadata_path), "spans")
    assert summary.spans == [2]
    report = json.loads((workspace.report_dir(summary.run_id) / REPORT_JSON).read_text())
    newest = load_dataset_info(root / "span-2").split_counts
    assert {s: v["examples"] for s, v in report["dataset"]["splits"].items()} == newest
    assert report["dataset"]["span"] == 2 and report["dataset"]["dataset_json_matches_run"]

    renamed = _span_source(tmp_path, "week3", 30, seed=3)
    for split in ("train", "test"):
        (renamed / split / "red").rename(renamed / split / "crimson")
    ingest_span(renamed, root, "auto")
    capsys.readouterr()
    assert main(run) == EXIT_DATA_REJECTED
    err = capsys.readouterr().err
    assert "the class map differs" in err and "(renamed 'red' -> 'crimson'?)" in err
    assert str(root / "span-3" / "dataset.json") in err
