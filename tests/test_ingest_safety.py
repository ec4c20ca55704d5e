"""What ingest must never do to OUT or SRC, whatever runs beside it or kills it (ingest/output.py,
ingest/processes.py): delete SRC or a folder it did not write, lose a span to a concurrent
ingest, leave no OUT after a kill, leave workers behind, or answer with a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import imagegen
from cli import EXIT_BAD_INPUT, EXIT_BUSY, main
from conftest import ended_pid
from ingest import output
from ingest.dataset import IngestError, ingest, load_dataset_info
from ingest.spans import span_dirs

REPO = Path(__file__).resolve().parent.parent


def _source(tmp_path: Path, name: str = "src", seed: int = 0, per_class: int = 3) -> Path:
    imagegen.write_folder(tmp_path / name, {"train": per_class, "test": 1}, seed=seed)
    return tmp_path / name


def _source_of(out: Path) -> str:
    return json.loads((out / "dataset.json").read_text())["source"]


def _one_line_error(err: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# 1. --overwrite deletes only what ingest wrote, and never SRC.


@pytest.mark.parametrize("where", ["src-inside-out", "src-is-out", "out-inside-src"])
def test_overwrite_refuses_an_output_that_overlaps_the_source(tmp_path: Path, where) -> None:
    out = tmp_path / "out"
    ingest(_source(tmp_path, "first"), out)
    src = {"src-inside-out": out / "images", "src-is-out": out,
           "out-inside-src": tmp_path / "first"}[where]
    if where == "src-inside-out":
        imagegen.write_folder(src, {"train": 3, "test": 1})
    target = tmp_path / "first" / "out" if where == "out-inside-src" else out
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(IngestError, match="overlap") as error:
        ingest(src, target, overwrite=True)
    assert str(src) in str(error.value) and str(target) in str(error.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_overwrite_refuses_a_folder_ingest_did_not_write(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code = main(["ingest", str(_source(tmp_path)), str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    _one_line_error(err)
    assert str(out) in err and "remove it yourself" in err and "another OUT" in err
    assert (out / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "src"]


@pytest.mark.parametrize("added", ["notes.txt", "train/photo.jpg", "extra/a.png"])
def test_overwrite_refuses_an_output_that_holds_files_ingest_did_not_write(
    tmp_path: Path, capsys, added: str
) -> None:
    out = tmp_path / "out"
    ingest(_source(tmp_path), out)
    (out / added).parent.mkdir(exist_ok=True)
    (out / added).write_text("the user's")
    assert main(["ingest", str(_source(tmp_path, "second", seed=1)), str(out),
                 "--overwrite"]) == EXIT_BAD_INPUT
    _one_line_error(capsys.readouterr().err)
    assert (out / added).read_text() == "the user's"
    assert _source_of(out) == str(tmp_path / "src")


@pytest.mark.parametrize("extra", [None, "notes", ".git"])
def test_overwrite_replaces_a_span_root_only_when_it_holds_nothing_but_spans(
    tmp_path: Path, extra
) -> None:
    root = tmp_path / "spans"
    assert main(["ingest", str(_source(tmp_path, "week1")), str(root), "--span", "auto"]) == 0
    if extra:
        (root / extra).mkdir()
    src = _source(tmp_path, "week2", seed=1)
    if extra:
        with pytest.raises(IngestError, match="remove it yourself"):
            ingest(src, root, overwrite=True)
        assert list(span_dirs(root)) == [1] and (root / extra).is_dir()
    else:
        ingest(src, root, overwrite=True)
        assert _source_of(root) == str(src) and not span_dirs(root)


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--span", "auto"]])
def test_an_output_that_is_a_file_is_refused_in_one_line(
    tmp_path: Path, capsys, flags
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["ingest", str(_source(tmp_path)), str(afile), *flags]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    _one_line_error(err)
    assert f"{afile} is a file" in err
    assert afile.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "src"]


def test_an_empty_existing_folder_is_used_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert ingest(_source(tmp_path), tmp_path / "out").split_counts["test"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


# 2. One ingest per OUT at a time; span numbers are chosen under the lock.


def _blocking_source(tmp_path: Path, copies: int = 120) -> Path:
    """A source that keeps both workers busy for a minute or more: copies of a 49-megapixel
    PNG of one colour, small on disk, each decoded in full (ingest refuses FIFOs, which would
    block a worker for ever, before any worker starts).
    """
    from PIL import Image

    src = _source(tmp_path, "blocking")
    buffer = io.BytesIO()
    Image.new("RGB", (7000, 7000), (200, 30, 30)).save(buffer, "PNG", compress_level=9)
    for i in range(copies):
        (src / "train" / "red" / f"large-{i:03d}.png").write_bytes(buffer.getvalue())
    return src


# `python -m pipeline` as a terminal starts it: with Ctrl-C's handler. A process started in
# the background by a non-interactive shell (`make test &`, nohup, some CI agents) inherits
# SIGINT ignored, and Python keeps it so; the test must not depend on how it was launched.
_AS_A_TERMINAL_STARTS_IT = ("import runpy, signal, sys; "
                            "signal.signal(signal.SIGINT, signal.default_int_handler); "
                            "sys.argv[0] = 'pipeline'; "
                            "runpy.run_module('pipeline', run_name='__main__', alter_sys=True)")


def _start_ingest(src: Path, out: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _AS_A_TERMINAL_STARTS_IT, "ingest", str(src), str(out),
         "--workers", "2", *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)


def _wait_for_workers(process: subprocess.Popen, count: int = 2) -> list[int]:
    """The pids of the ingest's worker processes, once it has them."""
    psutil = pytest.importorskip("psutil")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        children = psutil.Process(process.pid).children(recursive=True)
        if len(children) >= count:
            time.sleep(1)  # into their jobs: the initializer has run
            return [child.pid for child in children]
        time.sleep(0.1)
    raise AssertionError("the ingest started no workers")


def _gone(pids: list[int], within: float) -> bool:
    psutil = pytest.importorskip("psutil")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def blocked_span_ingest(tmp_path: Path):
    """An `ingest --span auto` into tmp_path/spans that holds the lock until killed."""
    process = _start_ingest(_blocking_source(tmp_path), tmp_path / "spans", "--span", "auto")
    workers = _wait_for_workers(process)
    yield process, workers
    _kill_group(process)


def test_a_second_ingest_into_a_locked_output_is_refused_with_exit_4(
    tmp_path: Path, capsys, blocked_span_ingest
) -> None:
    holder, _ = blocked_span_ingest
    root = tmp_path / "spans"
    code = main(["ingest", str(_source(tmp_path)), str(root), "--span", "auto"])
    err = capsys.readouterr().err
    assert code == EXIT_BUSY
    _one_line_error(err)
    assert f"pid {holder.pid} on host" in err and str(root) in err
    # A plain ingest into one of its spans takes the same lock.
    assert main(["ingest", str(_source(tmp_path)), str(root / "span-1")]) == EXIT_BUSY

    _kill_group(holder)  # the lock dies with its holder
    assert main(["ingest", str(_source(tmp_path)), str(root), "--span", "auto"]) == 0
    assert list(span_dirs(root)) == [1] and _source_of(root / "span-1") == str(tmp_path / "src")
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # the killed one's staging
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocking", "spans", "src"]


def test_concurrent_span_auto_ingests_never_lose_a_span(tmp_path: Path) -> None:
    root = tmp_path / "spans"
    # Enough images that each ingest outlasts the other's start-up: both choose a number at once.
    sources = [_source(tmp_path, f"week{i}", seed=i, per_class=300) for i in (1, 2)]
    processes = [_start_ingest(src, root, "--span", "auto") for src in sources]
    results = [(process.wait(timeout=120), process.communicate()[1]) for process in processes]
    codes = [code for code, _ in results]
    assert set(codes) <= {0, EXIT_BUSY} and 0 in codes, results
    kept = sorted(_source_of(folder) for folder in span_dirs(root).values())
    assert kept == sorted(str(src) for src, code in zip(sources, codes, strict=True) if code == 0)


# 3. A killed ingest never leaves OUT missing; its leftovers are cleared by the next one.


def test_a_kill_between_the_two_renames_is_recovered_by_the_next_ingest(
    tmp_path: Path, caplog
) -> None:
    out = tmp_path / "out"
    first = _source(tmp_path, "first")
    ingest(first, out)
    dead = ended_pid()
    out.rename(output.staging(out, "old", dead))  # the state the two renames' kill left
    half_written = output.staging(out, "tmp", dead)
    (half_written / "train").mkdir(parents=True)
    second = _source(tmp_path, "second", seed=1)

    with caplog.at_level("WARNING"), pytest.raises(IngestError, match="option overwrite"):
        ingest(second, out)  # OUT is back, so it exists
    assert "restored the previous version" in caplog.text
    assert _source_of(out) == str(first) and load_dataset_info(out).split_counts["test"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "out", "second"]
    ingest(second, out, overwrite=True)
    assert _source_of(out) == str(second)


def test_leftovers_of_running_processes_and_other_names_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    dead = ended_pid()
    kept = [output.staging(out, "tmp", os.getppid()), tmp_path / f".out.tmp-{dead}x",
            tmp_path / f".other.old-{dead}", tmp_path / f".out.old-{dead}.bak"]
    for folder in kept:
        folder.mkdir()
    output.staging(out, "old", dead).write_text("a file, not our folder")
    kept.append(output.staging(out, "old", dead))
    output.staging(out, "tmp", dead).mkdir()
    ingest(_source(tmp_path), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in kept] + ["out", "src"])


@pytest.mark.parametrize("atomic", [True, False])
def test_publish_replaces_the_output_with_or_without_an_atomic_exchange(
    tmp_path: Path, monkeypatch, atomic
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if atomic and not output.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here")
    (tmp_path / "a").rmdir()
    (tmp_path / "b").rmdir()
    if not atomic:
        monkeypatch.setattr(output, "exchange", lambda first, second: False)
    out = tmp_path / "out"
    ingest(_source(tmp_path, "first"), out)
    ingest(_source(tmp_path, "second", seed=1), out, overwrite=True)
    assert _source_of(out) == str(tmp_path / "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "out", "second"]


# 4. Workers die with their ingest; Ctrl-C is one line and exit 130.


def test_workers_die_with_a_killed_ingest(tmp_path: Path) -> None:
    process = _start_ingest(_blocking_source(tmp_path), tmp_path / "out")
    workers = _wait_for_workers(process)
    process.kill()
    process.wait(timeout=30)
    try:
        assert _gone(workers, within=5), f"workers {workers} outlived their killed ingest"
    finally:
        _kill_group(process)


def _kill_group(process: subprocess.Popen) -> None:
    """Ends what is left of the ingest's process group: its workers, if they outlived it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()


def test_ctrl_c_stops_the_workers_and_exits_130_without_a_traceback(tmp_path: Path) -> None:
    process = _start_ingest(_blocking_source(tmp_path), tmp_path / "out")
    workers = _wait_for_workers(process)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole process group
    try:
        process.wait(timeout=30)
        assert _gone(workers, within=5), f"workers {workers} outlived the interrupted ingest"
        err = process.stderr.read()
    finally:
        _kill_group(process)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocking"]  # no staging, no lock


# 5. An OUT the system refuses is one line naming it, not a traceback.


@pytest.mark.parametrize("where", ["under-a-file", "sysfs"])
def test_an_output_the_system_refuses_is_one_line(tmp_path: Path, capsys, where) -> None:
    if where == "under-a-file":
        (tmp_path / "afile").write_text("")
        out = tmp_path / "afile" / "deeper" / "out"
    else:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no sysfs here")
        out = Path("/sys") / f"ingest-test-{os.getpid()}"
    assert main(["ingest", str(_source(tmp_path)), str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    _one_line_error(err)
    assert f"cannot write {out}" in err and "folder you can write to" in err


def test_a_read_only_filesystem_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    def read_only(path, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(path))

    src = _source(tmp_path)
    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["ingest", str(src), str(tmp_path / "new" / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    _one_line_error(err)
    assert "Read-only file system" in err and str(tmp_path / "new" / "out") in err
