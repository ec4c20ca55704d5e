"""Source folders that fight back: links, special files, huge files, odd names, EXIF rotation.

Each must end in a quarantined entry (--skip-bad) or a one-line refusal (exit 2) naming the
file, never a traceback, a hang or a crash. CLI tests run `python -m pipeline ingest` in a
subprocess (with a timeout, so a hang fails instead of blocking the suite).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import imagegen
from cli import main
from ingest.dataset import IngestError, ingest
from ingest.imageinfo import read_header
from ingest.sources import NotReadable, read_file
from pipeline.workspace import source_fingerprint

REPO = Path(__file__).resolve().parent.parent


def run_ingest(src: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """`python -m pipeline ingest SRC OUT ...`, failing the test if it runs a minute."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "ingest", str(src), str(out), *options],
        cwd=REPO, capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def quarantine(out: Path) -> dict[str, str]:
    """Quarantined path (relative to nothing: as written) -> reason; the file must be UTF-8."""
    entries = json.loads((out / "quarantine.json").read_bytes().decode("utf-8"))
    return {entry["path"]: entry["reason"] for entry in entries}


def assert_quarantined(result: subprocess.CompletedProcess, out: Path, path: Path,
                       reason: str) -> None:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert reason in quarantine(out)[str(path)]


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in stderr
    return stderr


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """Enough images a class that no split loses a class when one file is left out."""
    imagegen.write_folder(tmp_path / "src", {"": 20})
    return tmp_path / "src"


# 1. Symlinks: followed, fingerprinted as followed, counted; loops and dangling links named.


def test_a_change_inside_a_symlinked_class_folder_changes_the_fingerprint(
        tmp_path: Path) -> None:
    imagegen.write_folder(tmp_path / "elsewhere", {"": 2})
    src = tmp_path / "src"
    src.mkdir()
    for name in imagegen.CLASS_NAMES:
        (src / name).symlink_to(tmp_path / "elsewhere" / name, target_is_directory=True)
    before = source_fingerprint(src)
    extra = tmp_path / "elsewhere" / "red" / "new.png"
    extra.write_bytes((tmp_path / "elsewhere" / "red" / "000.png").read_bytes())
    assert source_fingerprint(src) != before


def test_symlinked_class_folders_are_followed_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    imagegen.write_folder(src, {"": 4})
    (src / "red").rename(tmp_path / "red-local")
    (src / "red").symlink_to(tmp_path / "red-local", target_is_directory=True)
    info = ingest(src, tmp_path / "out")
    assert sum(info.split_counts.values()) == 12
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["symlinks_followed"] == 1


def test_a_symlink_loop_is_quarantined_with_skip_bad(src: Path, tmp_path: Path) -> None:
    loop = src / "red" / "loop"
    loop.symlink_to(src, target_is_directory=True)
    result = run_ingest(src, tmp_path / "out", "--skip-bad")
    assert_quarantined(result, tmp_path / "out", loop, "symlink loop")


def test_a_symlink_loop_is_refused_naming_it(src: Path, tmp_path: Path) -> None:
    (src / "red" / "loop").symlink_to(src / "red", target_is_directory=True)
    assert_refused(run_ingest(src, tmp_path / "out"), str(src / "red" / "loop"), "symlink loop")


def test_a_self_referencing_link_is_quarantined(src: Path, tmp_path: Path) -> None:
    link = src / "red" / "self.png"
    link.symlink_to(link)
    assert_quarantined(run_ingest(src, tmp_path / "out", "--skip-bad"), tmp_path / "out", link,
                       "symlink loop")


def test_a_dangling_link_is_quarantined_or_refused_with_the_reason(
        src: Path, tmp_path: Path) -> None:
    link = src / "red" / "gone.png"
    link.symlink_to(tmp_path / "missing.png")
    assert_refused(run_ingest(src, tmp_path / "refused"), str(link), "dangling symlink")
    assert_quarantined(run_ingest(src, tmp_path / "out", "--skip-bad"), tmp_path / "out", link,
                       "dangling symlink")


def test_a_dangling_class_folder_link_is_refused_even_with_skip_bad(
        src: Path, tmp_path: Path) -> None:
    (src / "purple").symlink_to(tmp_path / "unmounted", target_is_directory=True)
    assert_refused(run_ingest(src, tmp_path / "out", "--skip-bad"), str(src / "purple"),
                   "dangling symlink")


# 2. Only regular files are read, content first, up to a size limit.


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_png_is_quarantined_not_read(src: Path, tmp_path: Path) -> None:
    fifo = src / "red" / "x.png"
    os.mkfifo(fifo)
    assert_quarantined(run_ingest(src, tmp_path / "out", "--skip-bad"), tmp_path / "out", fifo,
                       "not a regular file (FIFO)")
    assert_refused(run_ingest(src, tmp_path / "refused"), str(fifo), "FIFO")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_read_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """A file swapped for a FIFO after the walk: the open descriptor is checked."""
    fifo = tmp_path / "swapped.png"
    os.mkfifo(fifo)

    def hung(*_):
        raise TimeoutError("read_file blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        with pytest.raises(NotReadable, match="not a regular file"):
            read_file(str(fifo))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_link_to_dev_zero_is_quarantined(src: Path, tmp_path: Path) -> None:
    link = src / "red" / "zero.png"
    link.symlink_to("/dev/zero")
    assert_quarantined(run_ingest(src, tmp_path / "out", "--skip-bad"), tmp_path / "out", link,
                       "not a regular file (character device)")


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes returned by each os.read in this process."""
    reads: list[int] = []
    real = os.read

    def counting(fd: int, n: int) -> bytes:
        data = real(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting)
    return reads


def test_a_large_non_image_is_refused_after_its_first_chunk(
        src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = src / "red" / "video.jpg"
    with open(big, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42")
        f.truncate(64 << 20)  # sparse: no disk used
    reads = count_reads(monkeypatch)
    ingest(src, tmp_path / "out", skip_bad=True, workers=1)
    assert "not a JPEG or PNG by its content" in quarantine(tmp_path / "out")[str(big)]
    assert sum(reads) < 1 << 20


def test_a_file_over_the_default_size_limit_is_not_read(
        src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default follows --max-pixels: 8 bytes a pixel plus 16 MiB."""
    big = src / "red" / "huge.jpg"
    with open(big, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.truncate(17 << 20)
    reads = count_reads(monkeypatch)
    ingest(src, tmp_path / "out", skip_bad=True, workers=1, max_pixels=10_000)
    assert "over max_file_bytes" in quarantine(tmp_path / "out")[str(big)]
    assert sum(reads) < 1 << 20


def test_max_file_bytes_option_quarantines_larger_files(src: Path, tmp_path: Path) -> None:
    big = src / "red" / "big.png"
    noise = Image.frombytes("RGB", (100, 100), os.urandom(100 * 100 * 3))
    noise.save(big)
    assert big.stat().st_size > 10_000
    result = run_ingest(src, tmp_path / "out", "--skip-bad", "--max-file-bytes", "10000")
    assert_quarantined(result, tmp_path / "out", big, "over max_file_bytes")
    assert_refused(run_ingest(src, tmp_path / "refused", "--max-file-bytes", "10000"),
                   str(big), "over max_file_bytes")


# 3. File and folder names that are not UTF-8.


def bad_name(folder: Path, name: bytes) -> Path:
    """folder/name with name's bytes as they are; skips where the file system refuses them."""
    path = Path(os.fsdecode(os.fsencode(folder) + b"/" + name))
    try:
        path.write_bytes(b"")
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    path.unlink()
    return path


def test_a_file_name_that_is_not_utf8_is_quarantined_escaped(src: Path, tmp_path: Path) -> None:
    path = bad_name(src / "red", b"bad\xff.png")
    path.write_bytes((src / "red" / "000.png").read_bytes())
    result = run_ingest(src, tmp_path / "out", "--skip-bad")
    shown = str(src / "red") + "/bad\\xff.png"
    assert_quarantined(result, tmp_path / "out", Path(shown), "not valid UTF-8")
    (tmp_path / "out" / "dataset.json").read_bytes().decode("utf-8")
    assert_refused(run_ingest(src, tmp_path / "refused"), shown, "not valid UTF-8")


def test_a_class_folder_name_that_is_not_utf8_is_refused_escaped(
        src: Path, tmp_path: Path) -> None:
    folder = bad_name(src, b"gr\xfcn")
    (src / "green").rename(folder)
    for options in ((), ("--skip-bad",)):
        assert_refused(run_ingest(src, tmp_path / "out", *options), str(src) + "/gr\\xfcn",
                       "not valid UTF-8", "rename")


def test_a_source_path_that_is_not_utf8_is_refused_escaped(tmp_path: Path) -> None:
    src = bad_name(tmp_path, b"d\xe4ten")
    imagegen.write_folder(src, {"": 4})
    assert_refused(run_ingest(src, tmp_path / "out", "--skip-bad"), str(tmp_path) + "/d\\xe4ten",
                   "not valid UTF-8")


# 4. Class names that would break labels.txt.


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "cr\rhere", "sep\u2028here"])
def test_a_class_name_with_a_control_character_is_refused(
        src: Path, tmp_path: Path, name: str) -> None:
    (src / "green").rename(src / name)
    with pytest.raises(IngestError, match="rename the folder") as refused:
        ingest(src, tmp_path / "out")
    assert repr(str(src / name)) in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_class_name_with_a_newline(src: Path, tmp_path: Path, capsys) -> None:
    (src / "green").rename(src / "gr\neen")
    assert main(["ingest", str(src), str(tmp_path / "out"), "--skip-bad"]) == 2
    err = capsys.readouterr().err
    assert "gr\\neen" in err and "Traceback" not in err


# 5. EXIF orientation: counted and warned about, pixels kept as stored.


def rotated_jpeg(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_header_reads_the_exif_orientation(orientation: int) -> None:
    assert read_header(rotated_jpeg(orientation)).orientation == orientation


def test_exif_rotated_images_are_counted_warned_about_and_stored_unchanged(
        src: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    photo = src / "red" / "phone.jpg"
    photo.write_bytes(rotated_jpeg(6))
    ingest(src, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["exif_rotated"]["count"] == 1
    assert meta["exif_rotated"]["examples"] == ["red/phone.jpg"]
    warnings = [r.getMessage() for r in caplog.records if "EXIF orientation" in r.getMessage()]
    assert len(warnings) == 1 and "trained as stored" in warnings[0]
    shards = b"".join(gzip.decompress(p.read_bytes())
                      for p in (tmp_path / "out").glob("*/*.tfrecord.gz"))
    assert photo.read_bytes() in shards  # the file's bytes, not turned pixels
