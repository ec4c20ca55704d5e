"""Several pushes to one model directory (components/push_lock.py, cleanup in pusher.py).

Two pipeline roots can push to one `<serving-dir>/<model-name>`. These pushes are real
push_model calls on tiny SavedModels, in threads or a second process, on a local folder (kernel
file lock) and on the objstore:// object store of test_pusher_object_store.py (lease). A verify
hook holds one push mid-way until the test has seen what the other does, so the interleavings
are fixed, not left to timing.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pusher_object_store import FAST, SCHEME, STORE, _local, _reset, _tiny_model
from tfx.dsl.io import fileio

from components.push_lock import (
    LEASE_FILE,
    LOCK_FILE,
    LockPolicy,
    PushLockLost,
    PushLockTimeout,
    _lock_current_file,
    machine,
    push_lock,
)
from components.pusher import (
    STAGING_PREFIX,
    publishing_marker,
    push_model,
    verify_saved_model,
)
from serving.model_dir import file_digests, is_local, join, served_versions

WAITS = "waits for another push to finish"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("tiny")
    return _tiny_model(root / "a", [0.0, 1.0, 2.0]), _tiny_model(root / "b", [2.0, 1.0, 0.0])


def _fresh_store(tmp_path: Path) -> Iterator[str]:
    STORE.root = str(tmp_path / "objstore")
    _reset()
    yield f"{SCHEME}bucket/m"
    _reset()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    yield from _fresh_store(tmp_path)


@pytest.fixture(params=["local", "object store"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The model directory, on a local path (file lock) or an object store (lease)."""
    if request.param == "local":
        yield str(tmp_path / "serving" / "m")
    else:
        yield from _fresh_store(tmp_path)


def _verify(staging: str) -> None:
    verify_saved_model(_local(staging))


def _listing(base: str) -> list[str]:
    return sorted(str(name).rstrip("/") for name in fileio.listdir(base))


class _Seen(logging.Handler):
    """Sets an event when a record containing `text` is logged, from whichever thread."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@contextlib.contextmanager
def _watch(logger_name: str, text: str) -> Iterator[threading.Event]:
    logger, handler = logging.getLogger(logger_name), _Seen(text)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.event
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _in_thread(results: dict, name: str, push: Callable[[], object]) -> threading.Thread:
    """Run push in a thread; its return value, or what it raised, lands in results[name]."""

    def run() -> None:
        try:
            results[name] = push()
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            results[name] = e

    thread = threading.Thread(target=run, name=f"push-{name}")
    thread.start()
    return thread


def _owner(created: float, machine_tag: str, pid: int) -> str:
    """An owner id as push_lock makes them: <created>-<machine>-<pid>-<random>."""
    return f"{int(created)}-{machine_tag}-{pid}-0123abcd"


def _leftover(base: str, name: str, age: float = 0.0) -> str:
    """A folder with one file in base, its files last changed age seconds ago."""
    path = join(base, name)
    fileio.makedirs(join(path, "variables"))
    with fileio.open(join(path, "variables", "variables.index"), "wb") as f:
        f.write(b"being written")
    when = time.time() - age
    for folder, _, files in os.walk(_local(path)):
        for file in files:
            os.utime(os.path.join(folder, file), (when, when))
        os.utime(folder, (when, when))
    return path


@pytest.mark.parametrize("path, local", [
    ("/srv/models/m", True),
    ("relative/m", True),
    ("file:///srv/models/m", True),
    ("gs://bucket/m", False),
    ("GS://bucket/m", False),
    ("s3://bucket/m", False),
    ("hdfs://namenode/m", False),
    ("objstore://bucket/m", False),
])
def test_the_scheme_decides_file_lock_or_lease_and_rename_or_copy(path: str, local: bool) -> None:
    """One rule (production.is_local) for the push lock and the Pusher's publishing."""
    assert is_local(path) is local


def test_a_file_url_base_is_locked_on_its_local_path(
    tmp_path: Path, models: tuple[str, str]
) -> None:
    base = tmp_path / "m"
    base.mkdir()
    with push_lock(f"file://{base}"), pytest.raises(PushLockTimeout, match=str(base / LOCK_FILE)):
        push_model(models[0], str(base), policy=LockPolicy(timeout=0.1, poll=0.02))
    assert push_model(models[0], f"file://{base}", now=lambda: 1000)[0] == 1000
    assert sorted(p.name for p in base.iterdir()) == ["1000"]


def test_two_pushes_to_one_model_directory_wait_for_each_other(
    base: str, models: tuple[str, str]
) -> None:
    a_staged, release_a = threading.Event(), threading.Event()
    staged: dict[str, str] = {}

    def verify_a(staging: str) -> None:
        staged["a"] = staging
        a_staged.set()
        assert release_a.wait(120)
        assert fileio.exists(staging), "the other push removed this push's staging folder"
        _verify(staging)

    def verify_b(staging: str) -> None:
        staged["b"] = staging
        _verify(staging)

    results: dict[str, object] = {}
    with _watch("components.push_lock", WAITS) as b_waits:
        a = _in_thread(results, "a", lambda: push_model(
            models[0], base, verify=verify_a, now=lambda: 1000, policy=FAST))
        assert a_staged.wait(120)
        b = _in_thread(results, "b", lambda: push_model(
            models[1], base, verify=verify_b, now=lambda: 1000, policy=FAST))
        try:
            assert b_waits.wait(120), "the second push did not wait for the first"
            assert "b" not in staged and fileio.exists(staged["a"])
        finally:
            release_a.set()
        a.join(120)
        b.join(120)

    assert results == {"a": (1000, f"{base}/1000", False), "b": (1001, f"{base}/1001", False)}
    assert staged["a"] != staged["b"]
    assert served_versions(base) == [1000, 1001]
    assert file_digests(join(base, "1000")) == file_digests(models[0])
    assert file_digests(join(base, "1001")) == file_digests(models[1])
    assert _listing(base) == ["1000", "1001"]  # no staging folder, lock file or lease left
    if base.startswith(SCHEME):  # the lease changed hands once, after the first push let go
        lease = join(base, LEASE_FILE)
        assert [op for op, path in STORE.changes if path == lease] == [
            "write", "remove", "write", "remove"]


def _push_and_hang(model_dir: str, base: str, marker: str) -> None:
    def hang(staging: str) -> None:
        Path(marker).write_text(staging)
        time.sleep(600)

    push_model(model_dir, base, verify=hang, now=lambda: 1000)


def test_a_killed_push_frees_the_directory_at_once_and_its_staging_is_removed(
    tmp_path: Path, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    base, marker = tmp_path / "m", tmp_path / "staged"
    holder = multiprocessing.get_context("spawn").Process(
        target=_push_and_hang, args=(models[0], str(base), str(marker)))
    holder.start()
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert holder.is_alive() and time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(PushLockTimeout, match=f"pid {holder.pid} on host "
                                                  f"{socket.gethostname()}"):
            push_model(models[1], str(base), now=lambda: 2000,
                       policy=LockPolicy(timeout=0.5, poll=0.05))
        assert Path(marker.read_text()).is_dir()  # the refused push touched nothing
    finally:
        holder.kill()
        holder.join(60)

    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="components.pusher"):
        version, _, existed = push_model(models[1], str(base), now=lambda: 2000, policy=FAST)
    assert time.monotonic() - start < 60
    assert (version, existed) == (2000, False)
    assert f"removing {marker.read_text()}" in caplog.text and "has ended" in caplog.text
    assert sorted(p.name for p in base.iterdir()) == ["2000"]


def test_cleanup_spares_live_pushes_work_and_removes_abandoned_leftovers(
    base: str, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    running = subprocess.Popen(["sleep", "300"])
    ended = subprocess.Popen(["true"])
    ended.wait()
    now = time.time()
    try:
        live = _leftover(base, STAGING_PREFIX + _owner(now, machine(), running.pid))
        elsewhere = _leftover(base, STAGING_PREFIX + _owner(now, "0badf00d", 4242))
        copying = _leftover(base, "5000")  # a version another push may be copying
        with fileio.open(publishing_marker(base, 5000), "w") as f:
            f.write(_owner(now, "0badf00d", 4244))
        dead = _leftover(base, STAGING_PREFIX + _owner(now, machine(), ended.pid))
        old = _leftover(base, STAGING_PREFIX + _owner(now - 7200, "0badf00d", 4243), age=7200)
        # Not named by a push of ours (an old format, a user's folder): never removed.
        legacy = _leftover(base, STAGING_PREFIX + "0" * 32, age=7200)
        foreign = _leftover(base, "4000", age=7200)

        with caplog.at_level(logging.WARNING, logger="components.pusher"):
            version, _, _ = push_model(models[0], base, verify=_verify, now=lambda: 1000,
                                       policy=FAST)
        assert version == 5001  # above the version left alone
        left = set(_listing(base))
        assert {p.rsplit("/", 1)[1] for p in (live, elsewhere, copying, legacy, foreign)} <= left
        assert not {p.rsplit("/", 1)[1] for p in (dead, old)} & left
        for path in (live, elsewhere, copying):
            assert f"leaving {path} alone" in caplog.text
        assert f"removing {dead}, left by an interrupted push: its push" in caplog.text
        assert f"removing {old}, left by an interrupted push: nothing in it changed" in caplog.text
        assert file_digests(live) == file_digests(elsewhere)  # untouched: one file each
    finally:
        running.kill()
        running.wait()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="components.pusher"):
        push_model(models[1], base, verify=_verify, now=lambda: 1000, policy=FAST)
    assert f"removing {live}, left by an interrupted push: its push" in caplog.text
    assert f"leaving {elsewhere} alone" in caplog.text  # only its age can tell, and it is young

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="components.pusher"):
        push_model(models[0], base, verify=_verify, now=lambda: 1000,
                   policy=LockPolicy(poll=0.01, settle=0.01, stale_after=0))
    assert f"removing {elsewhere}, left by an interrupted push: nothing" in caplog.text
    assert f"removing {copying}: a version without saved_model.pb" in caplog.text
    assert _listing(base) == [STAGING_PREFIX + "0" * 32, "4000", "5001", "5002", "5003"]


def _write_lease(base: str, owner: str, pid: int, host: str, expires_in: float) -> None:
    with fileio.open(join(base, LEASE_FILE), "w") as f:
        f.write(f'{{"owner": "{owner}", "pid": {pid}, "host": "{host}", '
                f'"started": {time.time()}, "expires": {time.time() + expires_in}}}')


def test_a_lease_is_taken_only_when_expired_or_its_holder_is_gone(
    store: str, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    fileio.makedirs(store)
    _write_lease(store, _owner(time.time(), "0badf00d", 4242), 4242, "elsewhere", 60)
    with pytest.raises(PushLockTimeout, match="pid 4242 on host elsewhere.*when its lease "
                                              "expires"):
        push_model(models[0], store, verify=_verify, policy=LockPolicy(
            timeout=0.3, poll=0.05, settle=0.01))
    assert _listing(store) == [LEASE_FILE]  # the waiting push wrote nothing

    _write_lease(store, _owner(time.time(), "0badf00d", 4242), 4242, "elsewhere", 0.5)
    with caplog.at_level(logging.WARNING, logger="components.push_lock"):
        assert push_model(models[0], store, verify=_verify, now=lambda: 1000, policy=FAST)[0] \
            == 1000
    assert "taking over the push lease" in caplog.text and "(expired)" in caplog.text

    ended = subprocess.Popen(["true"])
    ended.wait()
    _write_lease(store, _owner(time.time(), machine(), ended.pid), ended.pid, "here", 600)
    caplog.clear()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="components.push_lock"):
        assert push_model(models[1], store, verify=_verify, now=lambda: 1000, policy=FAST)[0] \
            == 1001
    assert time.monotonic() - start < 30  # not the 600 s of the lease
    assert "(its push has ended)" in caplog.text
    assert _listing(store) == ["1000", "1001"]


def test_a_push_that_outlasts_its_lease_ttl_keeps_renewing_it(
    store: str, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    policy = LockPolicy(poll=0.01, settle=0.01, lease_ttl=1.0)  # renewed every 0.25 s
    release_a = threading.Event()

    def slow_verify(staging: str) -> None:
        assert release_a.wait(120)
        _verify(staging)

    results: dict[str, object] = {}
    # caplog first: it sets the logger's level, which _watch lowers to INFO.
    with caplog.at_level(logging.WARNING, logger="components.push_lock"), \
            _watch("components.push_lock", WAITS) as b_waits:
        a = _in_thread(results, "a", lambda: push_model(
            models[0], store, verify=slow_verify, now=lambda: 1000, policy=policy))
        try:
            deadline = time.monotonic() + 120
            while not fileio.exists(join(store, LEASE_FILE)):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            b = _in_thread(results, "b", lambda: push_model(
                models[1], store, verify=_verify, now=lambda: 1000, policy=policy))
            assert b_waits.wait(120)
            time.sleep(3 * policy.lease_ttl)  # three lifetimes of a lease nobody renewed
            assert "b" not in results
        finally:
            release_a.set()
        a.join(120)
        b.join(120)
    assert results == {"a": (1000, f"{store}/1000", False), "b": (1001, f"{store}/1001", False)}
    assert "taking over" not in caplog.text
    lease_writes = [op for op, path in STORE.changes if path == join(store, LEASE_FILE)]
    assert lease_writes.count("write") > 4  # renewals


def test_a_push_whose_lease_was_taken_does_not_publish(
    store: str, models: tuple[str, str]
) -> None:
    other = _owner(time.time(), "0badf00d", 4242)

    def lose_the_lease(staging: str) -> None:
        _verify(staging)
        _write_lease(store, other, 4242, "elsewhere", 60)

    with pytest.raises(PushLockLost, match="pid 4242 on host elsewhere"):
        push_model(models[0], store, verify=lose_the_lease, now=lambda: 1000, policy=FAST)
    assert _listing(store) == [LEASE_FILE]  # no version, its own staging removed
    with fileio.open(join(store, LEASE_FILE), "r") as f:
        assert other in f.read()  # the new holder's lease is left alone


def test_a_stalled_push_overtaken_on_an_object_store_keeps_its_staging_and_stops(
    store: str, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Renewals stall past the lease's life: the next push goes ahead but spares A's work."""
    stalled = LockPolicy(poll=0.01, settle=0.01, lease_ttl=0.5, renew_every=3600)
    a_staged, b_done = threading.Event(), threading.Event()
    staged: dict[str, bool] = {}

    def verify_a(staging: str) -> None:
        a_staged.set()
        assert b_done.wait(120)
        staged["a survived"] = fileio.exists(staging)
        _verify(staging)

    results: dict[str, object] = {}
    with caplog.at_level(logging.WARNING):
        a = _in_thread(results, "a", lambda: push_model(
            models[0], store, verify=verify_a, now=lambda: 1000, policy=stalled))
        assert a_staged.wait(120)
        try:
            results["b"] = push_model(models[1], store, verify=_verify, now=lambda: 1000,
                                      policy=FAST)
        finally:
            b_done.set()
        a.join(120)

    assert results["b"] == (1000, f"{store}/1000", False)
    assert isinstance(results["a"], PushLockLost), results["a"]
    assert staged == {"a survived": True}
    assert "(expired)" in caplog.text and f"leaving {store}/{STAGING_PREFIX}" in caplog.text
    assert served_versions(store) == [1000]
    assert file_digests(join(store, "1000")) == file_digests(models[1])
    assert _listing(store) == ["1000"]


def test_a_lock_file_deleted_by_its_releasing_holder_is_not_held(tmp_path: Path) -> None:
    """A holder deletes the lock file when done; locking the deleted file would hold nothing."""
    path = tmp_path / LOCK_FILE
    with open(path, "a+") as old:
        path.unlink()
        path.write_text("")  # the next push's file
        assert _lock_current_file(old, str(path)) == "replaced"
    with open(path, "a+") as current, open(path, "a+") as other:
        assert _lock_current_file(current, str(path)) == "locked"
        assert _lock_current_file(other, str(path)) == "busy"


def test_a_lock_file_left_by_a_killed_push_is_reused_then_removed(
    tmp_path: Path, models: tuple[str, str]
) -> None:
    base = tmp_path / "m"
    push_model(models[0], str(base), now=lambda: 1000)
    assert not (base / LOCK_FILE).exists()
    (base / LOCK_FILE).write_text('{"pid": 1, "host": "left by a killed push"}')
    push_model(models[1], str(base), now=lambda: 2000)
    assert sorted(p.name for p in base.iterdir()) == ["1000", "2000"]
