"""One run per pipeline root at a time; a killed run leaves no stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import EXIT_BUSY, main
from pipeline.lock import RunLockedError, run_lock

REPO = Path(__file__).resolve().parent.parent


def test_a_second_run_on_the_same_root_is_refused(tmp_path: Path, caplog) -> None:
    root = tmp_path / "root"
    lock = root / "metadata" / "busy.lock"
    with run_lock(lock, "the first run"):
        code = main(["run", "--recipe", "classic", "--root", str(root), "--pipeline-name", "busy",
                     "--serving-dir", str(tmp_path / "serving")])
    assert code == EXIT_BUSY
    assert "pipeline 'busy'" in caplog.text and "already running" in caplog.text
    assert "Wait for it to finish, or use another --root" in caplog.text
    # Refused before touching anything: no MLMD store, no data, no serving dir.
    assert sorted(p.name for p in (root / "metadata").iterdir()) == ["busy.lock"]
    assert not (root / "data").exists() and not (tmp_path / "serving").exists()


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    lock = tmp_path / "p.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from pipeline.lock import run_lock\n"
         f"with run_lock(Path({str(lock)!r}), 'holder'):\n"
         "    print('locked', flush=True); time.sleep(600)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"), run_lock(lock, "second"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a killed process's flock
        try:
            with run_lock(lock, "after the kill"):
                break
        except RunLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
