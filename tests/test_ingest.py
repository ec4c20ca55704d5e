import collections
import json
from pathlib import Path

import pytest
import tensorflow as tf

import imagegen
from pipeline.cli import main
from pipeline.ingest import IngestError, ingest, load_dataset_info

SPEC = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}


def read_split(out: Path, split: str) -> list[tuple[bytes, int]]:
    files = sorted(str(p) for p in (out / split).glob("*.tfrecord.gz"))
    assert files, f"no shards in {out / split}"
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, SPEC)
        rows.append((parsed["image"].numpy(), int(parsed["label"])))
    return rows


def test_split_layout_round_trip(tmp_path: Path) -> None:
    files = imagegen.write_folder(tmp_path / "src", {"train": 7, "test": 3})
    info = ingest(tmp_path / "src", tmp_path / "out", workers=2)

    assert info.class_names == imagegen.CLASS_NAMES
    assert info.split_counts == {"train": 21, "eval": 9}
    assert info.image_shape == (8, 8, 3)
    assert (tmp_path / "out" / "labels.txt").read_text().split() == list(imagegen.CLASS_NAMES)
    for split, folder_split in (("train", "train"), ("eval", "test")):
        rows = read_split(tmp_path / "out", split)
        expected = collections.Counter(
            (p.read_bytes(), imagegen.CLASS_NAMES.index(p.parent.name)) for p in files[folder_split]
        )
        # Bytes pass through unchanged, each with the label of its class folder.
        assert collections.Counter(rows) == expected
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["splits"]["eval"]["per_class"] == {"blue": 3, "green": 3, "red": 3}


def test_flat_layout_hash_split_is_deterministic(tmp_path: Path) -> None:
    imagegen.write_folder(tmp_path / "src", {"": 40})
    first = ingest(tmp_path / "src", tmp_path / "a", eval_fraction=0.25)
    second = ingest(tmp_path / "src", tmp_path / "b", eval_fraction=0.25, workers=1)
    assert first.split_counts == second.split_counts
    assert sum(first.split_counts.values()) == 120
    assert 10 <= first.split_counts["eval"] <= 50
    assert sorted(read_split(tmp_path / "a", "eval")) == sorted(read_split(tmp_path / "b", "eval"))


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    imagegen.write_folder(tmp_path / "src", {"train": 2, "eval": 1})
    ingest(tmp_path / "src", tmp_path / "out")
    with pytest.raises(IngestError, match="--overwrite"):
        ingest(tmp_path / "src", tmp_path / "out")
    assert ingest(tmp_path / "src", tmp_path / "out", overwrite=True).split_counts["train"] == 6


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda src: (src / "train" / "red" / "notes.txt").write_text("hi"), "notes.txt"),
        (lambda src: (src / "train" / "red" / "000.png").write_bytes(b"\x89PNG\r\n"), "000.png"),
        (lambda src: (src / "test" / "purple").mkdir(), "only in"),
        (lambda src: [p.unlink() for p in (src / "test" / "red").iterdir()], "empty class"),
    ],
    ids=["non-image-file", "corrupt-image", "class-mismatch", "empty-class"],
)
def test_bad_input_is_refused_and_nothing_is_written(tmp_path, break_it, message) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 2})
    break_it(src)
    with pytest.raises(IngestError, match=message):
        ingest(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cli_reports_bad_input_with_exit_code_2(tmp_path: Path, capsys) -> None:
    assert main(["ingest", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_ingest(tmp_path: Path, capsys) -> None:
    imagegen.write_folder(tmp_path / "src", {"train": 2, "val": 1})
    assert main(["ingest", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    assert "wrote 9 images" in capsys.readouterr().out
    assert load_dataset_info(tmp_path / "out").split_counts == {"train": 6, "eval": 3}
