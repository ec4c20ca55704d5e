"""Where ingest writes OUT: one ingest at a time, only its own folders replaced, an atomic swap
into place, and the cleanup after an ingest that was killed.

Lock: lock_holder.exclusive (a kernel flock, released when its process ends, even when killed)
on `.<name>.lock` beside OUT, outside the folder that is swapped. A span-N folder is covered by
its span root's lock, which `ingest --span` holds while it picks the number, so two `--span
auto` never take the same one. A second ingest is refused within half a second, naming the
holder (IngestBusyError). The holder deletes the lock file when done, so nothing is left beside
OUT (a killed one's is deleted by the next holder).

Ours: `--overwrite` replaces only a folder ingest wrote, one holding a dataset.json with class
names and splits, or a span root: at least one span-N folder, each holding such a dataset.json,
and nothing else but hidden staging leftovers of spans. An empty folder is used as if absent.

Swap: the finished `.<name>.tmp-<pid>` beside OUT is exchanged with OUT by renameat2
(RENAME_EXCHANGE) where Linux has it, so OUT exists at every instant; elsewhere by two renames
through `.<name>.old-<pid>`. Before an ingest into OUT starts, under the lock, leftovers of
processes no longer running are cleared: a missing OUT is renamed back from its `.old-<pid>`,
and the other `.tmp-<pid>` / `.old-<pid>` folders are deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from ingest import spans
from ingest.errors import IngestBusyError, IngestError
from ingest.lock_holder import describe_holder, exclusive
from ingest.manifest import DATASET_INFO, DatasetManifest
from ingest.processes import libc, pid_running
from schema.errors import Setting

log = logging.getLogger(__name__)

# The files of an ingest output (ingest/dataset.py writes them; the run's fingerprint is
# pipeline/workspace.py's).
LABELS_FILE = "labels.txt"
QUARANTINE_FILE = "quarantine.json"
SOURCE_FINGERPRINT = "source_fingerprint.json"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>[1-9]\d*)$")
# How long a second ingest tries for the lock: long enough to outlast a holder that deleted the
# lock file as it finished (filelock then retries), short enough to be a refusal at once.
_LOCK_WAIT_S = 0.5
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging(out: Path, kind: str, pid: int | None = None) -> Path:
    """`.<name>.tmp-<pid>` (the folder being written) or `.<name>.old-<pid>` beside out."""
    return out.parent / f".{out.name}.{kind}-{os.getpid() if pid is None else pid}"


def overlaps(a: Path, b: Path) -> bool:
    """Whether two resolved paths are one folder, or one is inside the other."""
    return a == b or a in b.parents or b in a.parents


def check_paths(src: Path, out: Path) -> None:
    """Refuses an OUT that is SRC, inside it or around it: replacing OUT would delete images."""
    if overlaps(src, out):
        raise IngestError(f"output {out} and source {src} overlap (one is inside the other); "
                          "pick an OUT outside the source folder and not holding it.")


def check_not_file(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise IngestError(f"{out} is a file, not a folder: OUT must be a folder path; remove "
                          "the file yourself or pick another OUT.")


def check_target(out: Path, overwrite: bool) -> None:
    """Refuses a file, an existing folder without overwrite, and any folder not ours."""
    check_not_file(out)
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise IngestError(f"{out} already exists; use ", Setting("ingest.overwrite"),
                          " to replace it.")
    if not is_ours(out):
        raise IngestError(
            f"{out} is not a dataset written by ingest (no {DATASET_INFO} of ingest's in it or "
            "in its span-N folders, or files beside them that ingest does not write), and ",
            Setting("ingest.overwrite"), " replaces only those: remove it yourself, or pick "
            "another OUT.")


# What an ingest output holds besides its split folders: ingest's files, and the fingerprint
# `run --data FOLDER` keeps beside the TFRecords it ingested (pipeline/workspace.py).
_OUTPUT_FILES = frozenset({DATASET_INFO, LABELS_FILE, QUARANTINE_FILE, SOURCE_FINGERPRINT})
_SHARD = re.compile(r"^data-\d{5}-of-\d{5}\.tfrecord\.gz$")


def shard_name(index: int, count: int) -> str:
    """The file name of shard `index` of a split's `count`: what _SHARD recognises as ours."""
    return f"data-{index:05d}-of-{count:05d}.tfrecord.gz"


def is_dataset(folder: Path) -> bool:
    """Whether folder holds a dataset.json as ingest writes it, and nothing ingest does not
    write: a file put in it since (notes, images) is not ours to delete with it.
    """
    try:
        manifest = DatasetManifest.read(folder)
    except (OSError, ValueError):  # a RecordError is a ValueError: not a dataset.json of ours
        return False
    if manifest is None:
        return False
    splits = manifest.splits
    for child in folder.iterdir():
        if child.name in _OUTPUT_FILES and child.is_file() and not child.is_symlink():
            continue
        if child.name not in splits or child.is_symlink() or not child.is_dir():
            return False
        if any(not _SHARD.match(shard.name) or not shard.is_file() for shard in child.iterdir()):
            return False
    return True


def is_ours(out: Path) -> bool:
    """A dataset ingest wrote, or a span root holding nothing but such span-N datasets."""
    if is_dataset(out):
        return True
    span_folders = {path.name for path in spans.span_dirs(out).values() if is_dataset(path)}
    if not span_folders:
        return False
    for child in out.iterdir():
        leftover = _LEFTOVER.match(child.name)
        if child.name not in span_folders and not (
                leftover and spans.is_span_name(leftover["name"])):
            return False
    return True


@dataclasses.dataclass(frozen=True)
class Leftover:
    path: Path
    name: str
    kind: str
    pid: int


def leftovers(parent: Path) -> list[Leftover]:
    """Staging folders in parent of ingests whose process no longer runs (by pid, here)."""
    found = []
    if not parent.is_dir():
        return found
    for child in parent.iterdir():
        match = _LEFTOVER.match(child.name)
        if match and child.is_dir() and not child.is_symlink() and not pid_running(
                int(match["pid"])):
            found.append(Leftover(child, match["name"], match["kind"], int(match["pid"])))
    return found


def recover(out: Path) -> None:
    """Undoes what a killed ingest into out left; call it holding out's lock."""
    mine = [left for left in leftovers(out.parent) if left.name == out.name]
    olds = [left.path for left in mine if left.kind == "old"]
    if olds and not out.exists():
        restored = max(olds, key=lambda path: path.stat().st_mtime)
        restored.rename(out)
        log.warning("%s was missing after an ingest was killed while replacing it; restored "
                    "the previous version from %s", out, restored.name)
    for left in mine:
        if left.path.exists():
            log.info("removing %s, left by ingest process %d that no longer runs",
                     left.path, left.pid)
            shutil.rmtree(left.path)


def recover_spans(root: Path) -> None:
    """recover() for every span of root with leftovers, before a span number is chosen."""
    for name in sorted({left.name for left in leftovers(root) if spans.is_span_name(left.name)}):
        recover(root / name)


def lock_folder(out: Path) -> Path:
    """The folder whose lock covers out: its span root for a span-N folder, else out."""
    return out.parent if spans.is_span_name(out.name) else out


def cannot_write(out: Path, error: OSError) -> IngestError:
    """One line for an OUT the system refuses (read-only, denied, a file in the path)."""
    where = f" ({error.filename})" if error.filename else ""
    return IngestError(f"cannot write {out}: {error.strerror or error}{where}. Pick an OUT in a "
                       "folder you can write to.")


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Holds `.<name>.lock` beside folder, or raises IngestBusyError naming its holder."""
    path = folder.parent / f".{folder.name}.lock"

    def busy(holder: dict) -> IngestBusyError:
        return IngestBusyError(
            f"another ingest is writing {folder} ({describe_holder(holder)}, lock {path}); "
            "wait for it to finish, or pick another OUT.")

    with contextlib.ExitStack() as stack:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive(path, busy, timeout=_LOCK_WAIT_S, remove=True))
        except OSError as e:
            raise cannot_write(folder, e) from None
        yield


@contextlib.contextmanager
def claimed(out: Path, overwrite: bool, lock_held: bool = False) -> Iterator[Path]:
    """Locks out (unless the caller holds its lock), recovers, checks; yields the staging path.

    The staging folder is removed on the way out, whatever happened.
    """
    lock = contextlib.nullcontext() if lock_held else locked(lock_folder(out))
    with lock:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            recover(out)
        except OSError as e:
            raise cannot_write(out, e) from None
        check_target(out, overwrite)
        tmp = staging(out, "tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@functools.cache
def _renameat2():
    """The C library's renameat2, or None where it has none (not Linux, glibc before 2.28)."""
    if sys.platform != "linux":
        return None
    try:
        function = libc().renameat2
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange(first: Path, second: Path) -> bool:
    """Swaps two existing paths in one step; False where the system or filesystem cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def publish(tmp: Path, out: Path) -> None:
    """Puts the finished tmp in out's place and deletes what out held."""
    if not out.exists():
        tmp.rename(out)
    elif exchange(tmp, out):
        shutil.rmtree(tmp)
    else:
        old = staging(out, "old")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
