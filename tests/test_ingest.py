import collections
import json
from pathlib import Path

import numpy as np
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


def test_train_and_test_folders_get_an_eval_split_carved_from_train(tmp_path: Path) -> None:
    files = imagegen.write_folder(tmp_path / "src", {"train": 10, "test": 3})
    info = ingest(tmp_path / "src", tmp_path / "out", workers=2, eval_fraction=0.2)

    assert info.class_names == imagegen.CLASS_NAMES
    assert info.split_counts == {"train": 24, "eval": 6, "test": 9}
    assert info.image_shape == (8, 8, 3)
    assert (tmp_path / "out" / "labels.txt").read_text().split() == list(imagegen.CLASS_NAMES)

    def expected(paths):
        return collections.Counter(
            (p.read_bytes(), imagegen.CLASS_NAMES.index(p.parent.name)) for p in paths
        )

    # Bytes pass through unchanged, each with the label of its class folder; test/ is kept
    # whole, and train + eval are exactly the train/ folder.
    assert collections.Counter(read_split(tmp_path / "out", "test")) == expected(files["test"])
    carved = collections.Counter(read_split(tmp_path / "out", "train"))
    carved.update(read_split(tmp_path / "out", "eval"))
    assert carved == expected(files["train"])
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    # Stratified: 20 % of each class.
    assert meta["splits"]["eval"]["per_class"] == {"blue": 2, "green": 2, "red": 2}
    assert meta["splits"]["eval"]["from"] == "carved from train/ (20% of each class)"
    assert meta["splits"]["test"]["from"] == "test/"


def test_three_split_folders_are_kept_as_given(tmp_path: Path) -> None:
    files = imagegen.write_folder(tmp_path / "src", {"train": 4, "validation": 2, "test": 3})
    info = ingest(tmp_path / "src", tmp_path / "out", eval_fraction=0.5)
    assert info.split_counts == {"train": 12, "eval": 6, "test": 9}
    for split, folder in (("train", "train"), ("eval", "validation"), ("test", "test")):
        assert sorted(image for image, _ in read_split(tmp_path / "out", split)) == sorted(
            p.read_bytes() for p in files[folder])


def test_carving_is_stratified_by_class_and_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"test": 2})
    # Unbalanced classes: 40 blue, 20 green, 10 red.
    for name, count in (("blue", 40), ("green", 20), ("red", 10)):
        folder = src / "train" / name
        folder.mkdir(parents=True)
        rng = np.random.default_rng(count)
        for i in range(count):
            (folder / f"{i:03d}.png").write_bytes(imagegen.image_bytes(name, rng))
    first = ingest(src, tmp_path / "a", eval_fraction=0.1)
    second = ingest(src, tmp_path / "b", eval_fraction=0.1, workers=1)
    assert first.per_class_counts["eval"] == {"blue": 4, "green": 2, "red": 1}
    assert first.per_class_counts == second.per_class_counts
    assert sorted(read_split(tmp_path / "a", "eval")) == sorted(read_split(tmp_path / "b", "eval"))


def test_two_split_folders_still_work_with_a_warning(tmp_path: Path, caplog) -> None:
    imagegen.write_folder(tmp_path / "src", {"train": 3, "val": 2})
    with caplog.at_level("WARNING"):
        info = ingest(tmp_path / "src", tmp_path / "out")
    assert info.split_counts == {"train": 9, "eval": 6}
    assert "has no test split" in caplog.text


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
        (lambda src: (src / "test" / "purple").mkdir(), r"only in .*test: \['purple'\]"),
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
    imagegen.write_folder(tmp_path / "src", {"train": 2, "val": 1, "test": 1})
    assert main(["ingest", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    assert "wrote 12 images" in capsys.readouterr().out
    assert load_dataset_info(tmp_path / "out").split_counts == {"train": 6, "eval": 3, "test": 3}


def _gray_png(size: int = 8) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (size, size), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _add_odd_size(src: Path) -> Path:
    odd = src / "train" / "red" / "big.png"
    odd.write_bytes(imagegen.image_bytes("red", np.random.default_rng(1), size=12))
    return odd


def test_mixed_sizes_are_refused_without_a_policy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    odd = _add_odd_size(src)
    with pytest.raises(IngestError, match="--resize") as error:
        ingest(src, tmp_path / "out")
    assert "12x12x3: 1 file(s), e.g. " + str(odd) in str(error.value)
    assert "8x8x3: 9 file(s)" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_resize_policy_accepts_mixed_sizes_and_sets_the_model_shape(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    _add_odd_size(src)
    info = ingest(src, tmp_path / "out", resize=(10, 10))
    assert info.image_shape == (10, 10, 3)
    saved = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert saved["image_shapes_seen"] == {"8x8x3": 9, "12x12x3": 1}
    assert saved["shape_policy"] == {"resize": [10, 10], "channels": None}
    assert info.split_counts == {"train": 4, "eval": 3, "test": 3}


def test_mixed_channels_need_a_channels_policy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    (src / "test" / "blue" / "gray.png").write_bytes(_gray_png())
    with pytest.raises(IngestError, match="--channels N"):
        ingest(src, tmp_path / "out")
    assert ingest(src, tmp_path / "out", channels=3).image_shape == (8, 8, 3)


def test_skip_bad_quarantines_bad_files_and_keeps_the_good_ones(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 6, "test": 1})
    (src / "train" / "red" / "notes.txt").write_text("hi")
    (src / "train" / "green" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "train" / "blue" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")  # unreadable
    with pytest.raises(IngestError, match="--skip-bad") as error:
        ingest(src, tmp_path / "out", skip_bad=False, workers=1)
    assert "gone.jpg" in str(error.value) or "notes.txt" in str(error.value)

    info = ingest(src, tmp_path / "out", skip_bad=True, eval_fraction=0.5)
    quarantine = json.loads((tmp_path / "out" / "quarantine.json").read_text())
    reasons = {Path(q["path"]).name: q["reason"] for q in quarantine}
    assert set(reasons) == {"notes.txt", "000.png", "gone.jpg"}
    assert "not an image file" in reasons["notes.txt"]
    assert "No such file" in reasons["gone.jpg"]
    # 18 generated train images (half carved for eval), one overwritten with a truncated PNG.
    assert info.split_counts["train"] + info.split_counts["eval"] == 17
    assert info.split_counts["test"] == 3
    assert len(read_split(tmp_path / "out", "train")) == info.split_counts["train"]
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["skipped_files"] == 3


def test_skip_bad_still_refuses_a_class_left_without_images(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    (src / "test" / "red" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(IngestError, match=r"test split has no images of class\(es\) \['red'\]"):
        ingest(src, tmp_path / "out", skip_bad=True)


def test_failed_ingest_leaves_the_previous_tfrecords_unchanged(tmp_path: Path) -> None:
    from conftest import snapshot

    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    ingest(src, tmp_path / "out")
    before = snapshot(tmp_path / "out")
    (src / "train" / "red" / "001.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    with pytest.raises(IngestError, match="001.jpg"):
        ingest(src, tmp_path / "out", overwrite=True)
    assert snapshot(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temp folders


def test_an_empty_dataset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(IngestError, match="no class folders found"):
        ingest(tmp_path / "src", tmp_path / "out")


def test_cli_ingest_policies(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    (src / "train" / "red" / "notes.txt").write_text("hi")
    assert main(["ingest", str(src), str(tmp_path / "bad"), "--resize", "8x"]) == 2
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    assert main(["ingest", str(src), str(tmp_path / "out"), "--skip-bad"]) == 0
    assert "skipped 1 bad file(s)" in capsys.readouterr().out
