"""`infer`: batch scoring into csv, JSON lines and TFRecord files, resumed after a kill, and its
refusals. The model is a small SavedModel with the pipeline's serving signature (encoded bytes
in, probabilities out, from the mean colour), written here in two versions: no training.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import imagegen
from cli import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_OK
from components.batch_inference import (
    ScoringSummary,
    _lock_path,
    read_bad,
    read_rows,
    score_folder,
)
from conftest import run_cli
from ingest.lock_holder import exclusive
from schema import features
from schema.errors import BadInput, MissingInput, Setting
from serving import batch_scoring
from serving.batch_scoring import SUFFIXES, bad_path

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("red", "green", "blue")  # the brightest channel, in RGB order
FORMATS = pytest.mark.parametrize("suffix", SUFFIXES)


class _TinyModel(tf.Module):
    """serving_default as the pipeline exports it, on a model that needs no training; `scale`
    divides the mean colour (another scale: another model, the same classes).
    """

    def __init__(self, scale: float = 16.0) -> None:
        super().__init__()
        self.scale = scale

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        def mean_rgb(data: tf.Tensor) -> tf.Tensor:
            pixels = tf.io.decode_image(data, channels=3, expand_animations=False)
            return tf.reduce_mean(tf.cast(pixels, tf.float32), axis=[0, 1])

        means = tf.map_fn(mean_rgb, image, fn_output_signature=tf.float32)
        probabilities = tf.nn.softmax(means / self.scale)
        class_ids = tf.argmax(probabilities, axis=-1)
        return {
            features.OUTPUT_CLASS_IDS: class_ids,
            features.OUTPUT_CLASS_NAMES: tf.gather(tf.constant(CLASSES), class_ids),
            features.OUTPUT_PROBABILITIES: probabilities,
        }


def _save_model(base: Path, versions: tuple[str, ...], scale: float = 16.0,
                classes: tuple[str, ...] = CLASSES) -> Path:
    module = _TinyModel(scale)
    signatures = {features.SERVING_SIGNATURE: module.serve.get_concrete_function()}
    for version in versions:
        tf.saved_model.save(module, str(base / version), signatures=signatures)
        (base / version / "assets").mkdir(exist_ok=True)
        (base / version / "assets" / features.LABELS_ASSET).write_text("\n".join(classes) + "\n")
    return base


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<base>/1 and <base>/2: the same small model in two versions, with their labels."""
    return _save_model(tmp_path_factory.mktemp("serving") / "colors", ("1", "2"))


# imagegen.write_folder's class folders are named after the dominant channel.
PER_SPLIT = {"a": 3, "b/c": 2}
N_IMAGES = sum(PER_SPLIT.values()) * len(imagegen.CLASS_NAMES)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """15 images in nested folders, a text file and a JPEG whose Huffman table is nonsense."""
    root = tmp_path / "images"
    imagegen.write_folder(root, PER_SPLIT)
    (root / "notes.txt").write_text("not an image")
    jpeg = imagegen.image_bytes("red", np.random.default_rng(1), fmt="JPEG")
    (root / "b" / "broken.jpg").write_bytes(imagegen.corrupt_jpeg(jpeg))
    return root


def _image_paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".png", ".jpg")
            and p.name != "broken.jpg"}


def _check_rows(output: Path, expected: set[str], version: str = "2") -> None:
    rows = list(read_rows(output))
    paths = [row.path for row in rows]
    assert sorted(paths) == sorted(expected), "every image exactly once"
    for row in rows:
        assert row.version == version
        assert len(row.top_ids) == 3 and list(row.top_probabilities) == sorted(
            row.top_probabilities, reverse=True)
        assert row.top_names == tuple(CLASSES[i] for i in row.top_ids)
        assert math.isclose(sum(row.probabilities), 1.0, abs_tol=1e-4)
        assert row.top_probabilities[0] == pytest.approx(max(row.probabilities), abs=1e-6)
        # The class is the folder name: the dominant colour.
        assert row.top_names[0] == Path(row.path).parent.name


@FORMATS
def test_every_image_scored_once_and_bad_files_listed(model_base, images, tmp_path, suffix):
    output = tmp_path / "out" / f"scores{suffix}"
    seen = []
    summary = score_folder(images, model_base, output, batch_size=4, progress=seen.append)
    assert isinstance(summary, ScoringSummary)
    assert (summary.version, summary.version_path) == ("2", str(model_base / "2"))
    assert (summary.scored, summary.already_scored, summary.rows) == (N_IMAGES, 0, N_IMAGES)
    bad = dict(summary.bad)
    assert set(bad) == {"notes.txt", "b/broken.jpg"}
    assert "not a JPEG or PNG" in bad["notes.txt"]
    assert bad["b/broken.jpg"].startswith("the model cannot decode it: ")
    assert "Graph execution error" not in bad["b/broken.jpg"]
    assert {(b.path, b.reason) for b in read_bad(output)} == set(summary.bad)
    _check_rows(output, _image_paths(images))
    assert seen[-1].done == seen[-1].total == N_IMAGES + 2
    assert [p.done for p in seen] == sorted(p.done for p in seen)

    again = score_folder(images, model_base, output, batch_size=4)
    assert (again.scored, again.already_scored, again.already_bad, again.bad) == (
        0, N_IMAGES, 2, ())
    _check_rows(output, _image_paths(images))


@pytest.mark.parametrize("threads", [1, 2])
def test_one_or_two_scoring_threads_score_every_image_once(model_base, images, tmp_path,
                                                            threads):
    output = tmp_path / "scores.tfrecord"
    summary = score_folder(images, model_base, output, batch_size=2, scoring_threads=threads,
                           read_threads=3)
    assert (summary.scored, len(summary.bad)) == (N_IMAGES, 2)
    _check_rows(output, _image_paths(images))
    with pytest.raises(BadInput, match="Stopped at the first image that cannot be scored"):
        score_folder(images, model_base, tmp_path / "stop.jsonl", batch_size=2,
                     scoring_threads=threads, fail_on_bad=True)


def test_csv_has_a_column_per_class(model_base, images, tmp_path):
    output = tmp_path / "scores.csv"
    score_folder(images, model_base, output, top_k=2)
    header = output.read_text().splitlines()[0].split(",")
    assert header == ["path", "version", "model", "top1_id", "top1_name", "top1_probability",
                      "top2_id", "top2_name", "top2_probability", "probability:red",
                      "probability:green", "probability:blue"]
    # Another top-k does not fit the header: refused as soon as the header is read (not as a
    # damaged row), naming the setting; the file is left as it was.
    before = output.read_bytes()
    with pytest.raises(BadInput, match="its csv header does not match") as raised:
        score_folder(images, model_base, output, top_k=3)
    assert Setting("infer.top_k") in raised.value.settings
    assert output.read_bytes() == before


def test_a_csv_of_other_classes_is_refused_by_its_header(model_base, images, tmp_path):
    other = _save_model(tmp_path / "serving" / "shades", ("2",), classes=("r", "g", "b", "x"))
    output = tmp_path / "scores.csv"
    score_folder(images, model_base, output)
    assert len(list(read_rows(output))) >= 2
    before = output.read_bytes()
    with pytest.raises(BadInput, match="its csv header does not match this model's classes"):
        score_folder(images, other, output)
    assert output.read_bytes() == before


def test_the_cli_prints_the_summary(model_base, images, tmp_path):
    output = tmp_path / "scores.jsonl"
    code, out, err = run_cli(["infer", "--model-dir", str(model_base), str(images),
                              "--output", str(output), "--batch-size", "5"])
    assert code == EXIT_OK, err
    assert out[-1].startswith(f"scored {N_IMAGES} images, skipped 0 (already scored), 2 bad, in ")
    assert out[-1].endswith(f"images/s): {output} ({N_IMAGES} rows)")
    assert any("b/broken.jpg: the model cannot decode it" in line for line in err)
    assert "Traceback" not in "\n".join(err)
    code, out, _ = run_cli(["infer", "--model-dir", str(model_base / "2"), str(images),
                            "--output", str(output)])
    assert code == EXIT_OK
    assert out[-1].startswith(f"scored 0 images, skipped {N_IMAGES} (already scored), 0 bad")
    assert "2 by an earlier run, not retried" in out[-2]


# --- resuming ----------------------------------------------------------------------------


def _cut_last_record(output: Path) -> None:
    """What a kill in the middle of a write leaves: the last record half written."""
    data = output.read_bytes()
    last = list(read_rows(output))[-1]
    if output.suffix == ".tfrecord":
        cut = len(data) - 30
    else:
        start = data.rindex(b"\n", 0, len(data) - 1) + 1
        assert last.path.encode() in data[start:]
        cut = start + (len(data) - start) // 2
    output.write_bytes(data[:cut])


@FORMATS
def test_a_torn_last_record_is_cut_and_its_image_scored_again(model_base, images, tmp_path,
                                                              suffix):
    output = tmp_path / f"scores{suffix}"
    score_folder(images, model_base, output, batch_size=4)
    _cut_last_record(output)
    assert len(list(read_rows(output))) == N_IMAGES - 1
    summary = score_folder(images, model_base, output, batch_size=4)
    assert (summary.scored, summary.already_scored, summary.rows) == (1, N_IMAGES - 1, N_IMAGES)
    _check_rows(output, _image_paths(images))


@FORMATS
def test_garbage_after_the_rows_is_cut(model_base, images, tmp_path, suffix):
    output = tmp_path / f"scores{suffix}"
    score_folder(images, model_base, output)
    with open(output, "ab") as handle:
        handle.write(b'{"path": "a/x' if suffix == ".jsonl" else b"a/x.png,2,1,bl"
                     if suffix == ".csv" else b"\x10\x00\x00")
    with open(bad_path(output), "ab") as handle:
        handle.write(b'{"path": "no')
    summary = score_folder(images, model_base, output)
    assert (summary.scored, summary.already_bad) == (0, 2)
    _check_rows(output, _image_paths(images))
    assert len(list(read_bad(output))) == 2


@FORMATS
def test_names_with_quotes_commas_and_line_breaks_survive_a_torn_resume(model_base, tmp_path,
                                                                        suffix):
    images = tmp_path / "images"
    imagegen.write_folder(images, {"": 1})
    odd = images / "red" / 'a "quoted", odd\nname.png'
    odd.write_bytes(imagegen.image_bytes("red", np.random.default_rng(2)))  # walked last
    expected = _image_paths(images)
    output = tmp_path / f"scores{suffix}"
    # One scoring thread: rows in the walk's order, so the odd name is the last row, the torn one.
    score_folder(images, model_base, output, batch_size=2, scoring_threads=1)
    assert list(read_rows(output))[-1].path == "red/a \"quoted\", odd\nname.png"
    data = output.read_bytes()
    output.write_bytes(data[:-12])
    summary = score_folder(images, model_base, output, batch_size=2, scoring_threads=1)
    assert summary.scored == 1
    _check_rows(output, expected)


def _damage_a_middle_row(output: Path) -> None:
    lines = output.read_bytes().splitlines(keepends=True)
    lines[3] = b"not a row\n"
    output.write_bytes(b"".join(lines))


def test_a_damaged_row_before_the_end_is_refused(model_base, images, tmp_path):
    output = tmp_path / "scores.jsonl"
    score_folder(images, model_base, output)
    _damage_a_middle_row(output)
    with pytest.raises(BadInput, match="is damaged .* and is not the last one"):
        score_folder(images, model_base, output)


def _torn(output: Path) -> bool:
    """Whether the output ends in a torn record, as a kill mid-write leaves it."""
    scan = batch_scoring._Scan()
    for _ in batch_scoring._scan(output, output.suffix, scan):
        pass
    return scan.torn


# A child that pauses in the middle of each batch's write, so a kill leaves a torn record.
_SLOW_WRITER = """
import sys, time
from serving import batch_scoring

def append(handle, data):
    if data:
        handle.write(data[:len(data) // 2]); handle.flush()
        time.sleep(0.3)
        handle.write(data[len(data) // 2:]); handle.flush()

batch_scoring.OutputWriter._append = staticmethod(append)
from cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.pipeline  # a fresh `python -m pipeline` per format: seconds each, not a unit test
@FORMATS
def test_killed_mid_run_then_resumed_scores_every_image_once(model_base, tmp_path, suffix):
    images = tmp_path / "many"
    imagegen.write_folder(images, {"": 14})
    expected = _image_paths(images)
    output = tmp_path / f"scores{suffix}"
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, "infer", "--model-dir", str(model_base),
         str(images), "--output", str(output), "--batch-size", "3"],
        cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            # Killed in the middle of a batch's write, after at least two whole batches.
            if output.is_file() and len(list(read_rows(output))) >= 6 and _torn(output):
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"the child ended ({child.returncode}) or wrote nothing in time")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    before = len(list(read_rows(output)))
    assert 6 <= before < len(expected), "killed mid-run"
    assert _torn(output), "killed mid-write"
    summary = score_folder(images, model_base, output, batch_size=3)
    assert summary.already_scored == before
    assert summary.scored == len(expected) - before
    _check_rows(output, expected)


# --- refusals ----------------------------------------------------------------------------


def _gzip_tfrecord(path: Path) -> None:
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        writer.write(b"someone else's record")


@pytest.mark.parametrize("name, write", [
    ("a.tfrecord", _gzip_tfrecord),
    ("b.jsonl", lambda path: path.write_bytes(b'{"user": 1}\n')),
    ("b2.jsonl", lambda path: path.write_bytes(b'{"user": 1}')),
    ("c.csv", lambda path: path.write_bytes(b"user,data\n")),
    ("c2.csv", lambda path: path.write_bytes(b"user,data\n1,2\n3,4\n")),
    ("d.jsonl", lambda path: path.write_bytes(b'{"user": 1}\n{"user": 2}\n')),
])
def test_a_file_infer_did_not_write_is_refused_untouched(model_base, images, tmp_path, name,
                                                         write):
    output = tmp_path / name
    write(output)
    before = output.read_bytes()
    with pytest.raises(BadInput, match="is not an infer output") as raised:
        score_folder(images, model_base, output)
    assert Setting("infer.overwrite") in raised.value.settings
    assert output.read_bytes() == before, "not cut, not replaced"
    assert not bad_path(output).exists()
    # --overwrite replaces it, as asked.
    summary = score_folder(images, model_base, output, overwrite=True)
    assert summary.rows == N_IMAGES


def test_a_sidecar_infer_did_not_write_is_refused_untouched(model_base, images, tmp_path):
    output = tmp_path / "scores.jsonl"
    bad_path(output).write_bytes(b"my notes")
    with pytest.raises(BadInput, match="is not an infer output"):
        score_folder(images, model_base, output)
    assert bad_path(output).read_bytes() == b"my notes"
    assert not output.exists()


@FORMATS
def test_an_empty_output_or_a_csv_with_only_its_header_is_resumed(model_base, images,
                                                                  tmp_path, suffix):
    output = tmp_path / f"scores{suffix}"
    output.touch()  # created, then killed before its first batch
    assert score_folder(images, model_base, output).rows == N_IMAGES
    if suffix == ".csv":
        header = output.read_bytes().splitlines(keepends=True)[0]
        output.write_bytes(header)
        bad_path(output).unlink()
        summary = score_folder(images, model_base, output)
        assert (summary.scored, summary.already_scored) == (N_IMAGES, 0)
    _check_rows(output, _image_paths(images))


def test_another_model_with_the_same_version_name_is_refused(model_base, images, tmp_path):
    other = _save_model(tmp_path / "serving" / "other", ("1",), scale=8.0)
    output = tmp_path / "scores.tfrecord"
    first = score_folder(images, model_base / "1", output)
    written = {r.model for r in read_rows(output)}
    assert len(written) == 1 and "" not in written
    before = output.read_bytes()
    with pytest.raises(BadInput) as raised:
        score_folder(images, other, output)
    text = str(raised.value)
    (ours,) = written
    theirs = batch_scoring.model_fingerprint(other / "1")
    assert ours != theirs
    assert f"holds rows of model {ours} (version 1)" in text
    assert f"this model is {theirs} (version 1)" in text
    assert Setting("infer.overwrite") in raised.value.settings
    assert output.read_bytes() == before
    assert first.rows == N_IMAGES


@pytest.mark.parametrize("suffix", [".jsonl", ".tfrecord"])
def test_another_models_classes_are_refused(model_base, images, tmp_path, suffix):
    other = _save_model(tmp_path / "serving" / "shades", ("2",), classes=("r", "g", "b"))
    output = tmp_path / f"scores{suffix}"
    score_folder(images, model_base, output)
    with pytest.raises(BadInput, match="holds rows of a model with other classes"):
        score_folder(images, other, output)


def test_rows_written_before_the_model_was_recorded_are_read_and_resumed(model_base, images,
                                                                         tmp_path):
    output = tmp_path / "scores.jsonl"
    score_folder(images, model_base, output)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    for line in lines:
        del line["model"]
    output.write_text("".join(json.dumps(line) + "\n" for line in lines[:-1]))
    assert {r.model for r in read_rows(output)} == {""}
    summary = score_folder(images, model_base, output)
    assert (summary.scored, summary.already_scored) == (1, N_IMAGES - 1)
    _check_rows(output, _image_paths(images))
    # An old csv (no model column) is read; resuming it is refused, naming --overwrite.
    old_csv = tmp_path / "old.csv"
    score_folder(images, model_base, old_csv)
    rows = old_csv.read_bytes().splitlines(keepends=True)
    old = [line.replace(b",model,", b",", 1) if i == 0 else
           line.replace(b"," + line.split(b",")[2] + b",", b",", 1)
           for i, line in enumerate(rows)]
    old_csv.write_bytes(b"".join(old))
    assert {r.model for r in read_rows(old_csv)} == {""}
    _check_rows(old_csv, _image_paths(images))
    with pytest.raises(BadInput, match="written before infer recorded the model"):
        score_folder(images, model_base, old_csv)


def test_an_error_that_is_not_the_images_fails_the_call_and_lists_nothing(model_base, images,
                                                                          tmp_path, monkeypatch):
    output = tmp_path / "scores.jsonl"
    real = batch_scoring.Scorer.probabilities
    calls = []

    def once(self, batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise tf.errors.ResourceExhaustedError(None, None, "out of memory")
        return real(self, batch)

    monkeypatch.setattr(batch_scoring.Scorer, "probabilities", once)
    with pytest.raises(tf.errors.ResourceExhaustedError):
        score_folder(images, model_base, output, batch_size=4, scoring_threads=1)
    assert len(calls) == 1, "not retried image by image"
    assert list(read_bad(output)) == [] and list(read_rows(output)) == []
    summary = score_folder(images, model_base, output, batch_size=4, scoring_threads=1)
    assert (summary.scored, len(summary.bad)) == (N_IMAGES, 2)
    _check_rows(output, _image_paths(images))


def test_another_versions_output_is_refused_unless_overwritten(model_base, images, tmp_path):
    output = tmp_path / "scores.csv"
    score_folder(images, model_base / "1", output)
    code, _, err = run_cli(["infer", "--model-dir", str(model_base), str(images),
                            "--output", str(output)])
    text = "\n".join(err)
    assert code == EXIT_BAD_INPUT and "Traceback" not in text, text
    assert "holds rows of model version 1, and this model is version 2" in text
    assert "--overwrite" in text
    assert {r.version for r in read_rows(output)} == {"1"}, "left as it was"
    code, out, err = run_cli(["infer", "--model-dir", str(model_base), str(images),
                              "--output", str(output), "--overwrite"])
    assert code == EXIT_OK, err
    assert out[-1].startswith(f"scored {N_IMAGES} images")
    _check_rows(output, _image_paths(images), version="2")
    assert len(list(read_bad(output))) == 2, "the sidecar started afresh too"


@pytest.mark.parametrize("case", ["empty folder", "bad suffix", "inside source",
                                  "missing source", "missing model"])
def test_refusals_exit_2_with_one_line(model_base, images, tmp_path, case):
    source, model, output = images, model_base, tmp_path / "scores.csv"
    if case == "empty folder":
        source = tmp_path / "empty"
        (source / "sub").mkdir(parents=True)
        (source / ".hidden.png").write_bytes(b"x")
        expect = "no files found to score"
    elif case == "bad suffix":
        output = tmp_path / "scores.parquet"
        expect = "must end in one of .csv, .jsonl, .tfrecord"
    elif case == "inside source":
        output = images / "a" / "scores.jsonl"
        expect = "is inside the source folder"
    elif case == "missing source":
        source = tmp_path / "nowhere"
        expect = "no such folder"
    else:
        model = tmp_path / "no-model"
        expect = "no such model directory"
    code, _, err = run_cli(["infer", "--model-dir", str(model), str(source),
                            "--output", str(output)])
    text = "\n".join(err)
    assert code == EXIT_BAD_INPUT, text
    assert expect in text and "Traceback" not in text
    assert not output.exists()
    if case.startswith("missing"):
        with pytest.raises(MissingInput):
            score_folder(source, model, output)


def test_fail_on_bad_stops_at_the_first_bad_image_keeping_the_rows(model_base, tmp_path):
    images = tmp_path / "images"
    imagegen.write_folder(images, {"": 2})
    (images / "green" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    output = tmp_path / "scores.jsonl"
    code, _, err = run_cli(["infer", "--model-dir", str(model_base), str(images),
                            "--output", str(output), "--batch-size", "2", "--fail-on-bad"])
    text = "\n".join(err)
    assert code == EXIT_BAD_INPUT, text
    assert "green/zz.png: the model cannot decode it" in text and "--fail-on-bad" in text
    kept = {r.path for r in read_rows(output)}
    assert {"blue/000.png", "blue/001.jpg", "green/000.png", "green/001.jpg"} <= kept
    assert list(read_bad(output)) == [], "not listed: it is tried again next time"
    # Without it, the rest is scored and the image listed.
    summary = score_folder(images, model_base, output, batch_size=2)
    assert [path for path, _ in summary.bad] == ["green/zz.png"]
    assert summary.rows == 6


def test_a_second_infer_on_the_same_output_is_refused_naming_the_holder(model_base, images,
                                                                        tmp_path):
    output = tmp_path / "scores.jsonl"

    def busy(holder: dict) -> Exception:
        return AssertionError("the test takes the free lock")

    with exclusive(_lock_path(output), busy):
        code, _, err = run_cli(["infer", "--model-dir", str(model_base), str(images),
                                "--output", str(output)])
    text = "\n".join(err)
    assert code == EXIT_BUSY, text
    assert f"is being written by another infer (pid {os.getpid()}" in text
    assert not output.exists()


# --- an ingest output as the source -------------------------------------------------------


def test_an_ingest_output_is_scored_by_source_path(model_base, tmp_path):
    images = tmp_path / "images"
    imagegen.write_folder(images, {"": 6})
    ingested = tmp_path / "ingested"
    code, _, err = run_cli(["ingest", str(images), str(ingested), "--workers", "1"])
    assert code == EXIT_OK, err
    output = tmp_path / "scores.tfrecord"
    summary = score_folder(ingested, model_base, output, batch_size=5)
    assert summary.source_kind == "ingest output"
    assert (summary.scored, summary.bad) == (18, ())
    _check_rows(output, _image_paths(images))
    # The output may not go into the ingest output either.
    with pytest.raises(BadInput, match="inside the source folder"):
        score_folder(ingested, model_base, ingested / "scores.csv")


def test_rows_read_back_as_json(model_base, images, tmp_path):
    output = tmp_path / "scores.jsonl"
    score_folder(images, model_base, output)
    first = json.loads(output.read_text().splitlines()[0])
    assert set(first) == {"path", "version", "model", "top_ids", "top_names",
                          "top_probabilities", "probabilities"}
    assert len(first["model"]) == 16


def test_progress_is_a_bar_on_a_terminal_and_periodic_lines_otherwise(monkeypatch, caplog):
    import io

    from cli import infer
    from components.batch_inference import ScoringProgress

    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = infer._Progress()
    bar(ScoringProgress(done=25, total=100, elapsed=5.0, scored=20, already_scored=5))
    bar.close()
    assert "[#######.......................] 25/100 25%  5.0 img/s  ETA 0:00:15" in (
        terminal.getvalue())
    assert terminal.getvalue().endswith("\n")

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    lines = infer._Progress()
    with caplog.at_level("INFO", logger="pipeline"):
        for second in (1.0, 2.0, infer.LOG_INTERVAL_S + 1, infer.LOG_INTERVAL_S + 2):
            lines(ScoringProgress(done=int(second), total=None, elapsed=second, scored=1))
    lines.close()
    assert piped.getvalue() == ""
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "[infer] 11 images"]
