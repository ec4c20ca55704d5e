"""One push at a time per model directory, whichever pipeline root, process or host it comes from.

The run lock (pipeline/lock.py) serializes runs on one pipeline root, but two roots can push to
one `<serving-dir>/<model-name>`. Unserialized, both would number a version from the same
listing, and one push's cleanup would delete the other's staging folder while it is written.
push_lock holds the model directory (the push base) for the whole push:

  * Local and POSIX paths, file://: a kernel file lock (flock) on `<base>/.push.lock`. It dies
    with its process, so a killed push never blocks the next one. The holder deletes the file
    when it is done (a successful push leaves only versions in the base); whoever locks the file
    checks that it is still the one at that path, so a deleted file is never locked twice.
  * Object stores (gs://, s3://, any other scheme): no locks, and TF's fileio has no "create
    only if absent". A lease object `<base>/.push.lease` names its holder and an expiry. A push
    takes a free lease (absent, expired, or its holder's process known to be gone) by writing
    it, waiting `settle` seconds and reading it back: the last writer wins, the others wait.
    The holder renews the lease from a thread and checks it before publishing. This is mutual
    exclusion only while every push's read-then-write takes less than `settle`, renewals are
    not stalled for `lease_ttl`, and clocks agree well within `lease_ttl` (docs/deploy.md).

Each push has an owner id, `<created>-<machine>-<pid>-<random>`, which also names its staging
folder: owner_alive tells, on the machine that made it, whether that push still runs, so cleanup
never takes the lock's word alone before deleting another push's work (components/pusher.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tfx.dsl.io import fileio

from ingest.lock_holder import describe_holder, holder_record, read_holder, write_holder
from ingest.processes import pid_running
from serving.model_dir import is_local

log = logging.getLogger(__name__)

LOCK_FILE = ".push.lock"
LEASE_FILE = ".push.lease"
_OWNER = re.compile(r"(\d+)-([0-9a-f]{8})-(\d+)-[0-9a-f]{8}")
# Owner ids of the pushes running in this process: the pid alone cannot tell them apart.
_LIVE: set[str] = set()


@dataclasses.dataclass(frozen=True)
class LockPolicy:
    """How long a push waits, and when a silent one counts as gone. Tests shorten these."""

    timeout: float = 900.0  # wait this long for another push to finish, then fail
    poll: float = 1.0  # seconds between tries
    lease_ttl: float = 120.0  # object stores: a lease not renewed for this long is free
    renew_every: float | None = None  # object stores: None renews every lease_ttl / 4
    settle: float = 2.0  # object stores: between writing the lease and reading it back
    # A leftover whose push is not known to be gone is removed once unchanged this long.
    stale_after: float = 3600.0


DEFAULT_POLICY = LockPolicy()


class PushLockTimeout(RuntimeError):
    """Another push held the model directory for longer than the policy's timeout."""


class PushLockLost(RuntimeError):
    """Another push took this push's lease (object stores): it must not publish."""


@functools.cache
def machine() -> str:
    """A tag for this host, boot and pid namespace: where a pid names the same process."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def new_owner() -> str:
    return f"{int(time.time())}-{machine()}-{os.getpid()}-{secrets.token_hex(4)}"


def owner_created(owner: str) -> float | None:
    """When the push with this owner id started; None for names in another format."""
    match = _OWNER.fullmatch(owner)
    return float(match.group(1)) if match else None


def owner_alive(owner: str) -> bool | None:
    """Whether the push with this owner id still runs; None when this machine cannot tell."""
    match = _OWNER.fullmatch(owner)
    if match is None or match.group(2) != machine():
        return None
    pid = int(match.group(3))
    if pid == os.getpid():
        return owner in _LIVE
    return pid_running(pid)


def _local_path(base: str) -> str:
    return re.sub(r"^[Ff][Ii][Ll][Ee]://", "", str(base))


def _lock_name(holder: dict) -> str:
    return f"{describe_holder(holder)}, push {holder.get('owner', '?')}"


class Hold:
    """The model directory, held by one push. check() raises if the hold was lost."""

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def check(self) -> None:
        """A kernel lock cannot be lost while its process lives."""


@contextlib.contextmanager
def push_lock(base: str, policy: LockPolicy = DEFAULT_POLICY) -> Iterator[Hold]:
    """Hold base for one push: a file lock on local paths, a lease on object stores."""
    owner = new_owner()
    _LIVE.add(owner)
    try:
        lock = _file_lock if is_local(base) else _lease_lock
        with lock(str(base).rstrip("/"), owner, policy) as hold:
            yield hold
    finally:
        _LIVE.discard(owner)


class _Waiting:
    """Waits between tries: says once whom it waits for, fails at the deadline naming them."""

    def __init__(self, base: str, policy: LockPolicy, released: str) -> None:
        self.base, self.policy, self.released = base, policy, released
        self.deadline = time.monotonic() + policy.timeout
        self.announced = False

    def wait(self, holder: dict, where: str) -> None:
        if time.monotonic() >= self.deadline:
            raise PushLockTimeout(
                f"gave up after {self.policy.timeout:g} s waiting for another push to "
                f"{self.base} to finish ({_lock_name(holder)}; {where}). A killed push "
                f"releases it {self.released}; stop that push if it is stuck.")
        if not self.announced:
            log.info("push to %s waits for another push to finish (%s)", self.base,
                     _lock_name(holder))
            self.announced = True
        time.sleep(self.policy.poll)


@contextlib.contextmanager
def _file_lock(base: str, owner: str, policy: LockPolicy) -> Iterator[Hold]:
    path = os.path.join(_local_path(base), LOCK_FILE)
    handle = _wait_for_file_lock(path, base, policy)
    try:
        write_holder(handle, {**holder_record(), "owner": owner})
        yield Hold(owner)
    finally:
        with contextlib.suppress(FileNotFoundError):  # deleted by hand: nothing to hand on
            os.unlink(path)  # while still locked: see _lock_current_file
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _wait_for_file_lock(path: str, base: str, policy: LockPolicy) -> IO[str]:
    waiting = _Waiting(base, policy, "at once")
    while True:
        handle = open(path, "a+")  # noqa: SIM115 - returned open, or closed below
        state = _lock_current_file(handle, path)
        if state == "locked":
            return handle
        holder = read_holder(handle)
        handle.close()
        if state == "busy":
            waiting.wait(holder, f"lock {path}")


def _lock_current_file(handle: IO[str], path: str) -> str:
    """Lock handle's file: "locked", "busy", or "replaced" when its holder deleted it meanwhile.

    A releasing holder deletes the file before unlocking it; a lock on that deleted file locks
    nothing anyone else would look at, so the caller opens the path again.
    """
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    try:
        current = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        current = False
    if not current:
        fcntl.flock(handle, fcntl.LOCK_UN)
    return "locked" if current else "replaced"


def _read_lease(path: str) -> dict | None:
    """The lease record; None when there is none, {} when it cannot be read as one."""
    try:
        with fileio.open(path, "r") as f:
            record = json.loads(f.read())
    except Exception:  # absent (removed meanwhile), or not JSON
        return {} if fileio.exists(path) else None
    return record if isinstance(record, dict) else {}


def _write_lease(path: str, owner: str, policy: LockPolicy) -> None:
    record = {**holder_record(), "owner": owner, "expires": time.time() + policy.lease_ttl}
    with fileio.open(path, "w") as f:
        f.write(json.dumps(record))


def _why_free(path: str, lease: dict | None, policy: LockPolicy) -> str | None:
    """Why nobody holds this lease (absent, expired, holder gone, old and unreadable), or None."""
    if lease is None:
        return "absent"
    if not lease.get("owner") or not isinstance(lease.get("expires"), int | float):
        return "unreadable and not written for a lease's life" if _older_than(
            path, policy.lease_ttl) else None
    if lease["expires"] <= time.time():
        return "expired"
    if owner_alive(str(lease["owner"])) is False:
        return "its push has ended"
    return None


def _older_than(path: str, seconds: float) -> bool:
    """Whether the store says path was last written over `seconds` ago; True if it is gone."""
    try:
        written = fileio.stat(path).mtime_nsec / 1e9
    except Exception:  # removed meanwhile
        return True
    return time.time() - written > seconds


def _take_lease(path: str, base: str, owner: str, policy: LockPolicy) -> None:
    """Write the lease when it is free, and keep it if it still names us `settle` s later."""
    waiting = _Waiting(base, policy, f"when its lease expires ({policy.lease_ttl:g} s)")
    while True:
        lease = _read_lease(path)
        why = _why_free(path, lease, policy)
        if why is not None:
            if why != "absent":
                log.warning("taking over the push lease %s (%s): %s", path, why,
                            _lock_name(lease or {}))
            _write_lease(path, owner, policy)
            time.sleep(policy.settle)
            lease = _read_lease(path)
            if lease and lease.get("owner") == owner:
                return
        waiting.wait(lease or {}, f"lease {path}")


class _Lease(Hold):
    """A held lease on an object store, renewed from a thread until released."""

    def __init__(self, path: str, owner: str, policy: LockPolicy) -> None:
        super().__init__(owner)
        self.path, self.policy = path, policy
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, daemon=True,
                                        name=f"push-lease-{owner}")

    def start(self) -> None:
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        interval = self.policy.renew_every or self.policy.lease_ttl / 4
        while self.lost is None and not self._stop.wait(interval):
            try:
                self._renew()
            except Exception as e:  # a store hiccup: the next renewal may succeed
                log.warning("could not renew the push lease %s: %s", self.path, e)

    def _renew(self) -> None:
        lease = _read_lease(self.path)
        if not lease or lease.get("owner") != self.owner:
            self.lost = f"the lease now names {_lock_name(lease or {})}"
            return
        _write_lease(self.path, self.owner, self.policy)

    def check(self) -> None:
        """Raise unless the store still holds our unexpired lease: call before publishing."""
        lease = _read_lease(self.path)
        if self.lost is None and (not lease or lease.get("owner") != self.owner):
            self.lost = f"the lease now names {_lock_name(lease or {})}"
        elif self.lost is None and lease["expires"] <= time.time():
            self.lost = "the lease expired: its renewals stalled"
        if self.lost is not None:
            raise PushLockLost(f"push {self.owner} lost its lease on {self.path} ({self.lost}); "
                               "it stops before publishing")

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        lease = _read_lease(self.path)
        if lease and lease.get("owner") == self.owner:
            fileio.remove(self.path)
        else:
            log.warning("push %s did not hold %s any more when done (%s); left it alone",
                        self.owner, self.path, _lock_name(lease or {}))


@contextlib.contextmanager
def _lease_lock(base: str, owner: str, policy: LockPolicy) -> Iterator[Hold]:
    path = f"{base}/{LEASE_FILE}"
    _take_lease(path, base, owner, policy)
    lease = _Lease(path, owner, policy)
    lease.start()
    try:
        yield lease
    finally:
        lease.release()
