"""The atomic, verified, de-duplicating push (components/pusher.py) on a real pushed model."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from components.push_lock import LOCK_FILE
from components.pusher import (
    STAGING_PREFIX,
    PushVerificationError,
    model_digest,
    push_model,
    served_versions,
)
from conftest import PipelineRuns, snapshot


@pytest.fixture
def model_dir(pipeline_runs: PipelineRuns, tmp_path: Path) -> Path:
    """A copy of a SavedModel the pipeline pushed."""
    newest = max(served_versions(str(pipeline_runs.model_base)))
    copy = tmp_path / "model"
    shutil.copytree(pipeline_runs.model_base / str(newest), copy)
    return copy


def test_push_verifies_renames_into_place_and_does_not_duplicate(
    model_dir: Path, tmp_path: Path
) -> None:
    base = tmp_path / "serving" / "m"
    version, target, existed = push_model(str(model_dir), str(base), now=lambda: 1000)
    assert (version, existed) == (1000, False)
    assert target == f"{base}/1000"
    assert model_digest(target) == model_digest(str(model_dir))
    assert sorted(p.name for p in base.iterdir()) == ["1000"]  # no staging folder left

    again = push_model(str(model_dir), str(base), now=lambda: 2000)
    assert again == (1000, target, True)
    assert served_versions(str(base)) == [1000]


def test_versions_only_grow_even_when_the_clock_goes_back(model_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "m"
    newer = base / "5000"  # a newer version of another model, pushed by someone else
    shutil.copytree(model_dir, newer)
    (newer / "assets" / "extra.txt").write_text("another model")
    version, _, _ = push_model(str(model_dir), str(base), now=lambda: 1000)
    assert version == 5001
    assert served_versions(str(base)) == [5000, 5001]


def test_a_model_that_fails_verification_is_not_pushed(model_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "m"
    push_model(str(model_dir), str(base), now=lambda: 1000)
    before = snapshot(base)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(PushVerificationError, match="does not load"):
        push_model(str(broken), str(base), now=lambda: 2000)
    assert snapshot(base) == before


def _push_and_die(model_dir: str, base: str) -> None:
    def crash(staging: str) -> None:
        os._exit(9)  # killed after the copy, before the rename

    push_model(model_dir, base, verify=crash, now=lambda: 2000)


def test_a_crash_mid_push_leaves_served_versions_untouched(
    model_dir: Path, tmp_path: Path
) -> None:
    base = tmp_path / "m"
    first = tmp_path / "first"
    shutil.copytree(model_dir, first)
    (first / "assets" / "extra.txt").write_text("an older model")
    push_model(str(first), str(base), now=lambda: 1000)
    before = snapshot(base)

    process = multiprocessing.get_context("spawn").Process(
        target=_push_and_die, args=(str(model_dir), str(base))
    )
    process.start()
    process.join(120)
    assert process.exitcode == 9
    assert served_versions(str(base)) == [1000]
    left = {k for k in snapshot(base) if not k.startswith(STAGING_PREFIX)}
    assert left == set(before) | {LOCK_FILE}  # a killed push cannot delete its lock file
    assert any(p.name.startswith(STAGING_PREFIX) for p in base.iterdir())

    version, _, existed = push_model(str(model_dir), str(base), now=lambda: 3000)
    assert (version, existed) == (3000, False)
    # The dead push's staging folder is removed, the lock file reused and deleted.
    assert sorted(p.name for p in base.iterdir()) == ["1000", "3000"]
