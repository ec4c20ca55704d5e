"""bench/export_splits.py: ingest's splits as arrays, pixel for pixel what the Transform decodes."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import tensorflow as tf

from imagegen import CLASS_NAMES, write_folder
from ingest.dataset import ingest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "export_splits.py"


def _export(ingested: Path, output: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(ingested), str(output)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def _keyed(images: np.ndarray, labels: np.ndarray) -> Counter:
    pairs = zip(images, labels, strict=True)
    return Counter((image.tobytes(), int(label)) for image, label in pairs)


def test_exported_splits_hold_every_image_once_with_its_label(tmp_path: Path) -> None:
    written = write_folder(tmp_path / "src", {"train": 10, "test": 4})
    info = ingest(tmp_path / "src", tmp_path / "out", eval_fraction=0.2, workers=1)

    result = _export(tmp_path / "out", tmp_path / "splits.npz")
    assert result.returncode == 0, result.stderr
    arrays = np.load(tmp_path / "splits.npz")

    assert list(arrays["class_names"]) == list(info.class_names)
    for split in ("train", "eval", "test"):
        assert arrays[f"{split}_images"].dtype == np.uint8
        assert arrays[f"{split}_images"].shape == (info.split_counts[split], 8, 8, 3)

    # The source files decoded by TensorFlow, as the Transform graph decodes them (PNG and JPEG).
    def expected(files: list[Path]) -> Counter:
        return Counter(
            (tf.io.decode_image(path.read_bytes(), channels=3).numpy().tobytes(),
             sorted(CLASS_NAMES).index(path.parent.name))
            for path in files
        )

    exported_train = (_keyed(arrays["train_images"], arrays["train_labels"])
                      + _keyed(arrays["eval_images"], arrays["eval_labels"]))
    assert exported_train == expected(written["train"])
    assert _keyed(arrays["test_images"], arrays["test_labels"]) == expected(written["test"])


def test_a_folder_not_written_by_ingest_is_refused_by_name(tmp_path: Path) -> None:
    result = _export(tmp_path, tmp_path / "splits.npz")
    assert result.returncode != 0
    assert f"{tmp_path / 'dataset.json'} not found" in result.stderr
    assert not (tmp_path / "splits.npz").exists()
