import collections
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import imagegen
from cli import main
from ingest.dataset import IngestError, ingest, load_dataset_info
from schema.errors import Setting

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


def _source_paths(out: Path, split: str) -> dict[str, bytes]:
    """The source path of each example of the split -> its image bytes."""
    from schema import features

    files = sorted(str(p) for p in (out / split).glob("*.tfrecord.gz"))
    found = {}
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, features.raw_example_spec())
        found[parsed[features.SOURCE_PATH_KEY].numpy().decode()] = parsed["image"].numpy()
    return found


@pytest.mark.parametrize("layout", ["classes", "splits"])
def test_each_example_names_its_file_relative_to_the_ingested_folder(
    tmp_path: Path, layout: str
) -> None:
    per_split = {"": 6} if layout == "classes" else {"train": 4, "val": 2, "test": 2}
    files = imagegen.write_folder(tmp_path / "src", per_split)
    ingest(tmp_path / "src", tmp_path / "out", workers=2)
    stored = {}
    for split in ("train", "eval", "test"):
        stored.update(_source_paths(tmp_path / "out", split))
    written = [p for paths in files.values() for p in paths]
    assert stored == {str(p.relative_to(tmp_path / "src")): p.read_bytes() for p in written}
    assert "test/red/000.png" in stored or layout == "classes"
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert "relative to `source`" in meta["features"]["source_path"]


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
    with pytest.raises(IngestError, match="already exists; use the ingest option overwrite"):
        ingest(tmp_path / "src", tmp_path / "out")
    assert ingest(tmp_path / "src", tmp_path / "out", overwrite=True).split_counts["train"] == 6


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda src: (src / "train" / "red" / "000.png").write_bytes(b"\x89PNG\r\n"), "000.png"),
        (lambda src: (src / "test" / "purple").mkdir(), r"only in .*test: \['purple'\]"),
        (lambda src: [p.unlink() for p in (src / "test" / "red").iterdir()], "empty class"),
    ],
    ids=["corrupt-image", "class-mismatch", "empty-class"],
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


def _photo(height: int, width: int, class_name: str = "red", seed: int = 0) -> bytes:
    """A small colour PNG of height x width whose bright channel is the class's."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = imagegen.class_pixels(class_name, rng, max(height, width))[:height, :width]
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def test_mixed_sizes_are_accepted_stored_unchanged_and_summarized(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})  # 9 images of 8x8
    odd = _add_odd_size(src)  # 12x12
    tall = src / "test" / "blue" / "tall.png"
    tall.write_bytes(_photo(40, 6, "blue"))
    info = ingest(src, tmp_path / "out")

    assert info.sizes_vary
    assert info.image_shape == (8, 8, 3)  # the median height and width; the run decides
    assert info.split_counts == {"train": 4, "eval": 3, "test": 4}
    assert {odd.read_bytes(), tall.read_bytes()} <= _stored(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert saved["sizes_vary"] is True
    assert saved["image_shapes_seen"] == {"8x8x3": 9, "12x12x3": 1, "40x6x3": 1}
    sizes = saved["image_sizes"]
    assert sizes["count"] == 11 and sizes["distinct_sizes"] == 3
    assert sizes["height"] == {"min": 8, "median": 8, "max": 40}
    assert sizes["width"] == {"min": 6, "median": 8, "max": 12}
    assert sizes["short_side"] == {"min": 6, "median": 8, "max": 12}
    assert sizes["histogram"] == {"height": [[0, 32, 10], [32, 64, 1]], "width": [[0, 32, 11]]}
    assert sizes["short_side_counts"] == [[6, 1], [8, 9], [12, 1]]
    assert sizes["short_side_bin"] == 1
    assert saved["channels_chosen"]["channels"] == 3
    assert saved["channels_chosen"]["chosen_by"] == "ingest"

    assert info.sizes is not None
    assert info.sizes.count == 11 and info.sizes.short_side_max == 12
    assert [info.sizes.smaller_than(s) for s in (6, 7, 8, 9, 12, 13)] == [0, 1, 1, 10,
                                                                              10, 11]


def test_one_size_does_not_vary(tmp_path: Path) -> None:
    imagegen.write_folder(tmp_path / "src", {"train": 2, "test": 1})
    info = ingest(tmp_path / "src", tmp_path / "out")
    assert not info.sizes_vary and info.image_shape == (8, 8, 3)
    assert info.sizes.distinct_sizes == 1 and info.sizes.smaller_than(9) == 9
    saved = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert saved["channels_chosen"] == {"channels": 3, "chosen_by": "ingest",
                                        "why": "every image is colour", "gray_images": 0,
                                        "colour_images": 9}


def test_resize_policy_accepts_mixed_sizes_and_sets_the_model_shape(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    _add_odd_size(src)
    info = ingest(src, tmp_path / "out", resize=(10, 10))
    assert info.image_shape == (10, 10, 3)
    assert not info.sizes_vary  # --resize fixes what the model gets
    assert info.sizes.distinct_sizes == 2  # the sizes as stored, still summarized
    saved = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert saved["sizes_vary"] is False
    assert saved["image_shapes_seen"] == {"8x8x3": 9, "12x12x3": 1}
    assert saved["shape_policy"] == {"resize": [10, 10], "channels": None}
    assert info.split_counts == {"train": 4, "eval": 3, "test": 3}


def test_mixed_sizes_with_explicit_channels_and_resize_still_work(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    _add_odd_size(src)
    (src / "test" / "blue" / "gray.png").write_bytes(_gray_png(5))
    info = ingest(src, tmp_path / "a", channels=1)
    assert info.image_shape == (8, 8, 1) and info.sizes_vary
    info = ingest(src, tmp_path / "b", channels=3, resize=(6, 7))
    assert info.image_shape == (6, 7, 3) and not info.sizes_vary
    chosen = json.loads((tmp_path / "b" / "dataset.json").read_text())["channels_chosen"]
    assert chosen["chosen_by"] == "channels" and chosen["gray_images"] == 1


def test_image_shapes_seen_keeps_the_most_common_and_counts_the_rest(tmp_path: Path) -> None:
    from ingest.dataset import MAX_SHAPES_SEEN

    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})  # 9 images of 8x8
    for i in range(30):  # 30 more sizes, one image each
        class_name = imagegen.CLASS_NAMES[i % 3]
        (src / "train" / class_name / f"odd{i}.png").write_bytes(
            _photo(3 + i, 4 + i % 5, class_name, seed=i))
    ingest(src, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "dataset.json").read_text())
    seen = saved["image_shapes_seen"]
    assert len(seen) == MAX_SHAPES_SEEN + 1
    assert next(iter(seen.items())) == ("8x8x3", 9)  # most common first
    assert seen["other"] == 39 - sum(n for k, n in seen.items() if k != "other")
    assert sum(seen.values()) == 39
    assert saved["image_sizes"]["distinct_sizes"] == 31


def test_short_sides_are_binned_past_the_limit_and_smaller_than_stays_conservative() -> None:
    from ingest.dataset import MAX_SHORT_SIDES, image_sizes
    from ingest.manifest import ImageSizes

    shapes = collections.Counter({(side, side + 1, 3): 1 for side in range(1, MAX_SHORT_SIDES + 2)})
    raw = image_sizes(shapes)
    assert raw["short_side_bin"] == 16
    assert raw["short_side_counts"][:2] == [[0, 15], [16, 16]]
    sizes = ImageSizes.from_json(raw)
    for side in (160, 192, 224):  # multiples of the bin: exact
        assert sizes.smaller_than(side) == side - 1
    assert sizes.smaller_than(170) == 175  # 176 - 1: the bin [160, 176) counts whole
    exact = ImageSizes.from_json(image_sizes(collections.Counter({(300, 200, 3): 4,
                                                                 (150, 400, 1): 2})))
    assert (exact.short_side_bin, exact.smaller_than(160), exact.smaller_than(224)) == (1, 2, 6)
    assert exact.height_median == 300 and exact.width_median == 200  # lower medians


def test_an_old_dataset_json_without_sizes_still_loads(tmp_path: Path) -> None:
    imagegen.write_folder(tmp_path / "src", {"train": 2, "test": 1})
    ingest(tmp_path / "src", tmp_path / "out")
    path = tmp_path / "out" / "dataset.json"
    saved = json.loads(path.read_text())
    for key in ("sizes_vary", "image_sizes", "channels_chosen"):
        del saved[key]
    path.write_text(json.dumps(saved))
    info = load_dataset_info(tmp_path / "out")
    assert info.image_shape == (8, 8, 3)
    assert info.sizes_vary is False and info.sizes is None


def test_mixed_channels_become_colour_with_a_warning_and_a_record(tmp_path: Path,
                                                                  caplog) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    (src / "test" / "blue" / "gray.png").write_bytes(_gray_png())
    with caplog.at_level("WARNING"):
        info = ingest(src, tmp_path / "out")
    assert info.image_shape == (8, 8, 3) and not info.sizes_vary
    assert "1 of 10 images are gray" in caplog.text
    assert "set ingest's channels to 1" in caplog.text
    saved = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert saved["channels_chosen"]["channels"] == 3
    assert saved["channels_chosen"]["chosen_by"] == "ingest"
    assert saved["channels_chosen"]["gray_images"] == 1
    assert "replicated" in saved["channels_chosen"]["why"]
    assert saved["shape_policy"] == {"resize": None, "channels": None}
    assert ingest(src, tmp_path / "out1", channels=1).image_shape == (8, 8, 1)
    assert ingest(src, tmp_path / "out3", channels=3).image_shape == (8, 8, 3)


def test_files_that_are_not_images_are_left_out_and_listed_without_skip_bad(
        tmp_path: Path, caplog) -> None:
    """A stray GIF or notes file is not the user's data: listed and left out, never refused."""
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 3, "test": 1})
    (src / "train" / "red" / "imageNotFound.gif").write_bytes(b"GIF89a")
    (src / "test" / "blue" / "notes.txt").write_text("hi")
    info = ingest(src, tmp_path / "out", eval_fraction=0.34)
    quarantine = json.loads((tmp_path / "out" / "quarantine.json").read_text())
    assert {Path(q["path"]).name: q["reason"] for q in quarantine} == {
        "imageNotFound.gif": "not an image file (by extension)",
        "notes.txt": "not an image file (by extension)"}
    assert sum(info.split_counts.values()) == 12
    assert "left out 2 file(s) that are not images" in caplog.text


def test_skip_bad_quarantines_bad_files_and_keeps_the_good_ones(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 6, "test": 1})
    (src / "train" / "red" / "notes.txt").write_text("hi")
    (src / "train" / "green" / "000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "train" / "blue" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")  # unreadable
    with pytest.raises(IngestError, match="the ingest option skip_bad") as error:
        ingest(src, tmp_path / "out", skip_bad=False, workers=1)
    assert error.value.settings == (Setting("ingest.skip_bad"),)
    assert "gone.jpg" in str(error.value) and "notes.txt" not in str(error.value)

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


def test_a_refusal_names_the_flag_on_the_cli_and_the_setting_elsewhere(tmp_path: Path,
                                                                        capsys) -> None:
    """The same refusal: the CLI says `--skip-bad`; str(), what Kubeflow's log shows, no flag."""
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    (src / "train" / "red" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(IngestError) as error:
        ingest(src, tmp_path / "out", workers=1)
    text = str(error.value)
    assert "bad.png" in text and "or use the ingest option skip_bad to leave them out" in text
    assert "--" not in text.replace(str(tmp_path), "")

    assert main(["ingest", str(src), str(tmp_path / "out"), "--workers", "1"]) == 2
    shown = capsys.readouterr().err
    assert "bad.png" in shown and "or use --skip-bad to leave them out" in shown
    assert "skip_bad" not in shown


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


# Decoding every image (ingest/decode.py).

CORRUPTERS = {"jpg": ("JPEG", imagegen.corrupt_jpeg), "png": ("PNG", imagegen.corrupt_png)}


@pytest.mark.parametrize("ext", sorted(CORRUPTERS))
def test_corrupt_data_behind_intact_markers_is_refused_or_quarantined(tmp_path, ext) -> None:
    from ingest.imageinfo import image_shape

    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "val": 1, "test": 1})
    fmt, corrupt = CORRUPTERS[ext]
    bad = src / "train" / "green" / f"bad.{ext}"
    bad.write_bytes(corrupt(imagegen.image_bytes("green", np.random.default_rng(5), fmt=fmt)))
    assert image_shape(bad.read_bytes()) == (8, 8, 3)  # headers and end markers look fine

    with pytest.raises(IngestError, match=f"bad.{ext}: corrupt") as error:
        ingest(src, tmp_path / "out")
    assert "or use the ingest option skip_bad to leave them out" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]

    ingest(src, tmp_path / "out", skip_bad=True)
    quarantine = json.loads((tmp_path / "out" / "quarantine.json").read_text())
    assert [Path(q["path"]).name for q in quarantine] == [f"bad.{ext}"]
    assert "corrupt" in quarantine[0]["reason"]


def test_a_png_whose_pixel_data_crc_is_wrong_is_refused(tmp_path: Path) -> None:
    import struct

    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    path = src / "test" / "red" / "000.png"
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") - 4
    data[start + 8 + struct.unpack(">I", data[start:start + 4])[0]] ^= 0xFF  # Pillow ignores it
    path.write_bytes(bytes(data))
    with pytest.raises(IngestError, match="000.png: corrupt PNG: wrong CRC in chunk IDAT"):
        ingest(src, tmp_path / "out")


def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "val": 1, "test": 1})
    bomb = src / "train" / "red" / "bomb.png"
    bomb.write_bytes(imagegen.png_header_only(100_000, 100_000))  # 10 gigapixels claimed
    with pytest.raises(IngestError, match=r"bomb.png: 100000x100000 = 10,000,000,000 pixels, "
                                          r"over the limit of 50,000,000 \(max_pixels\)"):
        ingest(src, tmp_path / "out")
    bomb.unlink()
    big = src / "train" / "red" / "big.png"
    big.write_bytes(imagegen.image_bytes("red", np.random.default_rng(1), size=20))
    with pytest.raises(IngestError, match="big.png: 20x20 = 400 pixels, over the limit of 300"):
        ingest(src, tmp_path / "out", max_pixels=300, resize=(8, 8))
    info = ingest(src, tmp_path / "out", max_pixels=300, resize=(8, 8), skip_bad=True)
    quarantine = json.loads((tmp_path / "out" / "quarantine.json").read_text())
    assert "400 pixels" in quarantine[0]["reason"]
    assert sum(info.split_counts.values()) == 12  # all but big.png
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["max_pixels"] == 300


def test_files_that_are_not_jpeg_or_png_by_content_are_refused(tmp_path: Path) -> None:
    import io

    from PIL import Image

    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    (src / "train" / "red" / "moving.png").write_bytes(buffer.getvalue())
    with pytest.raises(IngestError, match=r"moving.png: not a JPEG or PNG by its content \(GIF\)"):
        ingest(src, tmp_path / "out")


# Formats and modes: stored unchanged, decoded by the model in each; counted.

COLOUR_KINDS = ("JPEG CMYK", "PNG P", "PNG RGB 16-bit", "PNG RGBA", "PNG RGBA 16-bit")
GRAY_KINDS = ("JPEG L", "PNG L 1-bit", "PNG L 16-bit", "PNG LA", "PNG LA 16-bit")


def _add_kinds(src: Path, kinds: Sequence[str]) -> dict[str, Path]:
    """One file of each kind in train/<class>/, classes taking turns."""
    rng = np.random.default_rng(3)
    files = {}
    for i, kind in enumerate(kinds):
        class_name = imagegen.CLASS_NAMES[i % 3]
        ext = "jpg" if kind.startswith("JPEG") else "png"
        path = src / "train" / class_name / f"{kind.replace(' ', '_')}.{ext}"
        path.write_bytes(imagegen.kind_bytes(kind, class_name, rng))
        files[kind] = path
    return files


def _stored(out: Path) -> set[bytes]:
    return {image for split in ("train", "eval", "test") for image, _ in read_split(out, split)}


def test_colour_modes_make_a_3_channel_model_and_are_stored_unchanged(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    files = _add_kinds(src, COLOUR_KINDS)
    info = ingest(src, tmp_path / "out")
    assert info.image_shape == (8, 8, 3)  # RGBA is not 4 channels: the decoder drops alpha
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["image_modes"] == {"PNG RGB": 6, "JPEG RGB": 3, **{k: 1 for k in COLOUR_KINDS}}
    assert meta["converted"] == {"count": 0, "from": {}, "to": None}
    assert {p.read_bytes() for p in files.values()} <= _stored(tmp_path / "out")


def test_gray_and_colour_mixed_make_colour_and_cmyk_becomes_gray_png_for_gray(
    tmp_path: Path
) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "test": 1})
    files = _add_kinds(src, COLOUR_KINDS + GRAY_KINDS)
    # Without --channels, ingest chooses colour: every file, CMYK too, is stored as it is.
    info = ingest(src, tmp_path / "colour")
    assert info.image_shape == (8, 8, 3)
    meta = json.loads((tmp_path / "colour" / "dataset.json").read_text())
    assert meta["converted"] == {"count": 0, "from": {}, "to": None}
    assert meta["channels_chosen"]["gray_images"] == len(GRAY_KINDS)
    stored = _stored(tmp_path / "colour")
    assert {p.read_bytes() for p in files.values()} <= stored
    for image in stored:
        assert tf.io.decode_image(image, channels=3, expand_animations=False).shape[-1] == 3
    with pytest.raises(IngestError, match="channels=4 would make a model that refuses every"):
        ingest(src, tmp_path / "out", channels=4)

    ingest(src, tmp_path / "out", channels=1)
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["image_shape"] == [8, 8, 1]
    assert sum(meta["image_modes"].values()) == 9 + len(COLOUR_KINDS + GRAY_KINDS)
    assert meta["converted"] == {"count": 1, "from": {"JPEG CMYK": 1}, "to": "PNG L"}
    stored = _stored(tmp_path / "out")
    cmyk = files.pop("JPEG CMYK").read_bytes()
    assert cmyk not in stored  # TF cannot decode a CMYK JPEG to gray: re-encoded
    assert {p.read_bytes() for p in files.values()} <= stored
    for image in stored:  # what Transform will do, for every stored image
        assert tf.io.decode_image(image, channels=1, expand_animations=False).shape[-1] == 1


# Duplicates: the same decoded pixels in two splits is leakage.

def _resaved(png: bytes) -> bytes:
    """The same pixels in different bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", compress_level=0)
    assert buffer.getvalue() != png
    return buffer.getvalue()


def test_the_same_image_in_two_splits_is_refused_unless_allowed(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 3, "val": 2, "test": 2})
    original = src / "train" / "red" / "000.png"
    copy = src / "test" / "red" / "copy.png"
    copy.write_bytes(_resaved(original.read_bytes()))
    also = src / "val" / "blue" / "001.jpg"
    (src / "train" / "blue" / "again.jpg").write_bytes(also.read_bytes())
    within = src / "train" / "green" / "twin.png"
    within.write_bytes((src / "train" / "green" / "002.png").read_bytes())

    assert main(["ingest", str(src), str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "2 image(s) are in more than one split" in error
    assert f"train: {original} = test: {copy}" in error
    assert f"train: {src / 'train' / 'blue' / 'again.jpg'} = eval: {also}" in error
    assert "--allow-duplicates" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]

    assert main(["ingest", str(src), str(tmp_path / "out"), "--allow-duplicates"]) == 0
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["duplicates"] == {
        "across_splits": 2,
        "across_splits_files": [["train/blue/again.jpg", "val/blue/001.jpg"],
                                ["train/red/000.png", "test/red/copy.png"]],
        "within_split": {"train": 1, "eval": 0, "test": 0},
        "allowed": True,
    }


def test_duplicates_within_a_split_are_counted_not_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"train": 2, "val": 1, "test": 2})
    for n in range(2):
        (src / "test" / "red" / f"extra{n}.png").write_bytes(
            (src / "test" / "red" / "000.png").read_bytes())
    info = ingest(src, tmp_path / "out")
    assert info.split_counts["test"] == 8
    duplicates = json.loads((tmp_path / "out" / "dataset.json").read_text())["duplicates"]
    assert duplicates["within_split"] == {"train": 0, "eval": 0, "test": 2}
    assert duplicates["across_splits"] == 0
