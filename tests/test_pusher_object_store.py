"""Pushing to a store without atomic rename (components/pusher.py, copy protocol).

The store is a TFX fileio plugin for a made-up objstore:// scheme, kept in a local folder,
that behaves like an object store: it has no folder rename, an object being written appears,
whole, when its writer closes it, it logs every change in order, and it can "crash" at any
change (that change and every later one fail, as if the process had died, so no cleanup code
gets to run). TF's own ram:// filesystem would let TF load the model straight
from the store, but it cannot tell `assets/` from `assets.extra/` (it lists by string prefix),
so TF loads the staged model through the store's local folder instead. The model is a tiny
SavedModel with the pipeline's signatures, labels and warm-up requests, so the Pusher's real
verification runs on it; no pipeline run is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import tensorflow as tf
from tfx.dsl.io import fileio, filesystem_registry
from tfx.dsl.io.plugins.tensorflow_gfile import TensorflowFilesystem

from components.push_lock import LockPolicy, machine
from components.pusher import (
    STAGING_PREFIX,
    PushVerificationError,
    publishing_marker,
    push_model,
    verify_saved_model,
)
from conftest import ended_pid
from schema import features
from serving.model_dir import (
    STATISTICS_DIR,
    file_digests,
    incomplete_versions,
    join,
    model_digest,
    production_model,
    served_versions,
    version_folders,
)
from serving.warmup import write_warmup_requests

LABELS = ["red", "green", "blue"]


class SimulatedCrash(Exception):
    """The pushing process died here."""


SCHEME = "objstore://"


@dataclasses.dataclass
class StoreState:
    root: str = ""  # the local folder that holds objstore://
    changes: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # Index into `changes` of the change that crashes; None: never.
    crash_at: int | None = None
    crashed: bool = False
    # Copies to this path are written with wrong bytes (a corrupted upload).
    corrupt: str | None = None


STORE = StoreState()


def _local(path) -> str:
    path = str(path)
    return f"{STORE.root}/{path[len(SCHEME):]}" if path.startswith(SCHEME) else path


def _in_store(path: str) -> str:
    return SCHEME + str(path)[len(STORE.root) + 1:]


def _change(operation: str, path) -> None:
    if STORE.crashed or (STORE.crash_at is not None and len(STORE.changes) >= STORE.crash_at):
        STORE.crashed = True
        raise SimulatedCrash(f"crashed at {operation} {path}")
    STORE.changes.append((operation, str(path)))


class _Upload:
    """An object being written: invisible until closed, then all there (GCS and S3 uploads)."""

    def __init__(self, name: str, mode: str) -> None:
        self.target = _local(name)
        uploads = f"{STORE.root}.uploads"
        os.makedirs(uploads, exist_ok=True)
        self.partial = f"{uploads}/{uuid.uuid4().hex}"
        self.file = TensorflowFilesystem.open(self.partial, mode)

    def write(self, data) -> None:
        self.file.write(data)

    def close(self) -> None:
        self.file.close()
        os.replace(self.partial, self.target)

    def __enter__(self) -> _Upload:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# One method per filesystem operation, each recording the change and delegating to the local
# disk: alike by design (`duplicates` pairs them).
class ObjectStore(TensorflowFilesystem):
    """objstore:// as an object store: no folder rename, every change logged, crashes on demand."""

    SUPPORTED_SCHEMES = [SCHEME]

    @staticmethod
    def open(name, mode="r"):
        if mode.startswith("r"):
            return TensorflowFilesystem.open(_local(name), mode)
        _change("write", name)
        return _Upload(name, mode)

    @staticmethod
    def copy(src, dst, overwrite=False):
        _change("write", dst)
        if str(dst) == STORE.corrupt:
            with TensorflowFilesystem.open(_local(dst), "wb") as f:
                f.write(b"corrupted in transit")
            return
        TensorflowFilesystem.copy(_local(src), _local(dst), overwrite=overwrite)

    @staticmethod
    def exists(path):
        return TensorflowFilesystem.exists(_local(path))

    @staticmethod
    def glob(pattern):
        return [_in_store(path) for path in TensorflowFilesystem.glob(_local(pattern))]

    @staticmethod
    def isdir(path):
        return TensorflowFilesystem.isdir(_local(path))

    @staticmethod
    def listdir(path):
        return TensorflowFilesystem.listdir(_local(path))

    @staticmethod
    def stat(path):
        return TensorflowFilesystem.stat(_local(path))

    @staticmethod
    def walk(top, topdown=True, onerror=None):
        for folder, folders, files in TensorflowFilesystem.walk(_local(top), topdown, onerror):
            yield _in_store(folder), folders, files

    @staticmethod
    def makedirs(path):
        _change("mkdir", path)
        TensorflowFilesystem.makedirs(_local(path))

    @staticmethod
    def mkdir(path):
        _change("mkdir", path)
        TensorflowFilesystem.mkdir(_local(path))

    @staticmethod
    def remove(path):
        _change("remove", path)
        TensorflowFilesystem.remove(_local(path))

    @staticmethod
    def rmtree(path):
        _change("rmtree", path)
        TensorflowFilesystem.rmtree(_local(path))

    @staticmethod
    def rename(src, dst, overwrite=False):
        raise OSError(f"object stores cannot rename {src}")


filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY.register(ObjectStore, priority=0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """A fresh base on the object store, and a clean change log."""
    STORE.root = str(tmp_path / "objstore")
    _reset()
    yield f"{SCHEME}bucket/m"
    _reset()


def _reset(crash_at: int | None = None) -> None:
    STORE.changes.clear()
    STORE.crash_at, STORE.crashed, STORE.corrupt = crash_at, False, None


# The push lease without the production pauses (settle: 2 s per push).
FAST = LockPolicy(poll=0.01, settle=0.01)


def _push(model_dir: str, base: str, **kwargs) -> tuple[int, str, bool]:
    """push_model with its real verification, which TF runs on the store's local folder."""
    kwargs.setdefault("policy", FAST)
    return push_model(model_dir, base, verify=lambda staging: verify_saved_model(_local(staging)),
                      **kwargs)


class _Classifier(tf.Module):
    """Constant probabilities over LABELS: enough for the Pusher's checks."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = tf.Variable(logits)

    def _probabilities(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.tile(self.logits[tf.newaxis], [tf.shape(batch)[0], 1])
        return {features.OUTPUT_PROBABILITIES: tf.nn.softmax(logits)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._probabilities(image)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def from_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._probabilities(examples)


def _tiny_model(path: Path, logits: list[float]) -> str:
    module = _Classifier(logits)
    tf.saved_model.save(module, str(path), signatures={
        features.SERVING_SIGNATURE: module.serve.get_concrete_function(),
        features.EXAMPLES_SIGNATURE: module.from_examples.get_concrete_function(),
    })
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / features.LABELS_ASSET).write_text("\n".join(LABELS) + "\n")
    png = tf.io.encode_png(tf.zeros([4, 4, 3], tf.uint8)).numpy()
    write_warmup_requests(str(path), [png])
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two different models: the one served, and the candidate pushed after it."""
    root = tmp_path_factory.mktemp("tiny")
    return _tiny_model(root / "a", [0.0, 1.0, 2.0]), _tiny_model(root / "b", [2.0, 1.0, 0.0])


def _version_files(base: str, version: int) -> dict[str, str]:
    return file_digests(join(base, str(version)))


def _listing(base: str) -> list[str]:
    return sorted(str(name).rstrip("/") for name in fileio.listdir(base))


def _assert_nothing_partial_is_loadable(base: str, models: tuple[str, str]) -> None:
    """Every folder TF Serving could load holds exactly one model's files."""
    whole = [file_digests(model) for model in models]
    for version in served_versions(base):
        assert _version_files(base, version) in whole, f"version {version} is partial"




def test_saved_model_pb_is_written_last_after_a_verified_copy(
    store: str, models: tuple[str, str]
) -> None:
    statistics = f"{STATISTICS_DIR}/Split-train/FeatureStats.pb"

    def add_statistics(staging: str) -> None:
        fileio.makedirs(join(staging, STATISTICS_DIR, "Split-train"))
        with fileio.open(join(staging, statistics), "wb") as f:
            f.write(b"statistics")

    version, target, existed = _push(models[0], store, now=lambda: 1000,
                                     add_files=add_statistics)
    assert (version, target, existed) == (1000, f"{store}/1000", False)
    in_version = [(op, path) for op, path in STORE.changes if path.startswith(target + "/")]
    writes = [path[len(target) + 1:] for op, path in in_version if op == "write"]
    assert in_version[-1] == ("write", f"{target}/saved_model.pb")
    assert writes.count("saved_model.pb") == 1
    assert set(writes) == set(file_digests(models[0])) | {statistics}
    assert _version_files(store, 1000) == {
        **file_digests(models[0]), statistics: hashlib.sha256(b"statistics").hexdigest()}
    assert model_digest(target) == model_digest(models[0])
    assert _listing(store) == ["1000"]  # the staging folder is gone
    assert served_versions(store) == [1000]

    assert _push(models[0], store, now=lambda: 2000) == (1000, target, True)


def test_a_crash_at_any_change_leaves_nothing_partial_and_the_next_push_recovers(
    store: str, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    served, candidate = models
    # A clean push first, to count the changes a push makes and find the last version write.
    _push(served, store, now=lambda: 1000)
    _reset()
    _push(candidate, store, now=lambda: 2000)
    changes = list(STORE.changes)
    last_write = changes.index(("write", f"{store}/2000/saved_model.pb"))
    assert len(changes) > last_write + 1  # the staging folder is removed after it

    for crash_at in range(len(changes)):
        base = f"{store}-crash-{crash_at}"
        _reset()
        _push(served, base, now=lambda: 1000)
        _reset(crash_at=crash_at)
        with pytest.raises(SimulatedCrash):
            _push(candidate, base, now=lambda: 2000)
        _reset()

        complete = crash_at > last_write
        assert served_versions(base) == ([1000, 2000] if complete else [1000]), crash_at
        assert production_model(base).version == (2000 if complete else 1000)
        _assert_nothing_partial_is_loadable(base, models)
        began_version = any(path.startswith(f"{store}/2000") for _, path in changes[:crash_at])
        left_incomplete = began_version and not complete
        assert incomplete_versions(base) == ([2000] if left_incomplete else []), crash_at

        # The next push removes the leftovers, with a clock gone back: the new version is
        # still larger than every numeric folder, an incomplete one included.
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="components.pusher"):
            version, _, existed = _push(candidate, base, now=lambda: 1500)
        assert existed is complete, crash_at
        assert version == (2000 if complete else 2001 if left_incomplete else 1500), crash_at
        if left_incomplete:
            assert "without saved_model.pb" in caplog.text
        assert not any(name.startswith(STAGING_PREFIX) for name in _listing(base))
        assert incomplete_versions(base) == []
        assert _version_files(base, version) == file_digests(candidate)
        assert served_versions(base) == [1000, version]


def test_a_copy_that_differs_is_removed_before_saved_model_pb_is_written(
    store: str, models: tuple[str, str]
) -> None:
    _push(models[0], store, now=lambda: 1000)
    before = {name: file_digests(join(store, name)) for name in _listing(store)}
    STORE.corrupt = f"{store}/2000/variables/variables.index"
    with pytest.raises(PushVerificationError, match="variables/variables.index"):
        _push(models[1], store, now=lambda: 2000)
    assert ("write", f"{store}/2000/saved_model.pb") not in STORE.changes
    assert {name: file_digests(join(store, name)) for name in _listing(store)} == before


def test_a_saved_model_pb_that_differs_is_deleted_first(
    store: str, models: tuple[str, str]
) -> None:
    _push(models[0], store, now=lambda: 1000)
    _reset()
    STORE.corrupt = f"{store}/2000/saved_model.pb"
    with pytest.raises(PushVerificationError, match="saved_model.pb differs"):
        _push(models[1], store, now=lambda: 2000)
    # Object stores delete object by object: the proto goes before the files it needs.
    removals = [change for change in STORE.changes if change[0] in ("remove", "rmtree")]
    assert removals[:2] == [("remove", f"{store}/2000/saved_model.pb"),
                            ("rmtree", f"{store}/2000")]
    assert _listing(store) == ["1000"]


def test_a_version_without_saved_model_pb_is_removed_only_when_a_push_of_ours_left_it(
    tmp_path: Path, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "m"
    push_model(models[0], str(base), now=lambda: 1000)
    ours, foreign = base / "5000", base / "6000"
    for leftover in (ours, foreign):
        (leftover / "variables").mkdir(parents=True)
        (leftover / "variables" / "variables.index").write_bytes(b"half a push")
    # The marker a push to an object store writes first, naming a push that has ended.
    dead_pid = ended_pid()
    Path(publishing_marker(str(base), 5000)).write_text(
        f"{int(time.time())}-{machine()}-{dead_pid}-0badc0de")

    assert version_folders(str(base)) == [1000, 5000, 6000]
    assert served_versions(str(base)) == [1000]
    assert production_model(str(base)).version == 1000

    with caplog.at_level(logging.INFO, logger="components.pusher"):
        version, _, existed = push_model(models[1], str(base), now=lambda: 2000)
    assert (version, existed) == (6001, False)
    assert f"removing {base}/5000" in caplog.text
    assert f"{base}/6000" in caplog.text and "no push of ours wrote" in caplog.text
    assert sorted(p.name for p in base.iterdir()) == ["1000", "6000", "6001"]
    assert (foreign / "variables" / "variables.index").read_bytes() == b"half a push"


def test_user_folders_in_the_model_directory_are_never_deleted(
    tmp_path: Path, models: tuple[str, str]
) -> None:
    """The model name defaults to the data folder's: its class folders `0/`, `1/` may be in the
    base, and so may a hidden folder that only looks like a staging folder.
    """
    base = tmp_path / "digits"
    users = {"0/a.png": b"zero", "1/b.png": b"one", "1/sub/c.png": b"one too",
             f"{STAGING_PREFIX}notes/x.txt": b"mine"}
    for relative, data in users.items():
        (base / relative).parent.mkdir(parents=True, exist_ok=True)
        (base / relative).write_bytes(data)

    version, _, _ = push_model(models[0], str(base), now=lambda: 1000)
    push_model(models[1], str(base), now=lambda: 2000)
    for relative, data in users.items():
        assert (base / relative).read_bytes() == data, relative
    assert served_versions(str(base)) == [1000, 2000] and version == 1000


def test_the_protocol_can_be_forced_either_way(
    tmp_path: Path, store: str, models: tuple[str, str]
) -> None:
    base = tmp_path / "m"
    _, target, _ = push_model(models[0], str(base), now=lambda: 1000, atomic_rename=False)
    assert file_digests(target) == file_digests(models[0])
    assert sorted(p.name for p in base.iterdir()) == ["1000"]
    with pytest.raises(OSError, match="cannot rename"):
        _push(models[0], store, atomic_rename=True)
    assert _listing(store) == []


def test_a_damaged_newest_version_is_named_and_skipped_as_production(
    tmp_path: Path, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A version whose saved_model.pb was truncated after its push (assets intact) cannot be
    loaded by TF Serving, so it is no baseline: the newest loadable version is, and the next
    push is numbered above the damaged one, which stays where it is.
    """
    base = tmp_path / "m"
    push_model(models[0], str(base), now=lambda: 1000)
    push_model(models[1], str(base), now=lambda: 2000)
    proto = base / "2000" / "saved_model.pb"
    proto.write_bytes(proto.read_bytes()[:200])

    with caplog.at_level(logging.WARNING, logger="serving.model_dir"):
        production = production_model(str(base))
    assert production is not None and production.version == 1000
    assert f"served version 2000 ({base}/2000) cannot be loaded: saved_model.pb does not " \
           "parse" in caplog.text

    version, _, existed = push_model(models[1], str(base), now=lambda: 1500)
    assert (version, existed) == (2001, False)
    assert production_model(str(base)).version == 2001
    assert proto.is_file()  # not ours to delete: TF Serving may still be trying it


def test_a_version_whose_variables_are_truncated_is_skipped_when_loaded_in_full(
    tmp_path: Path, models: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The cheap check reads the proto and the index only; the Evaluator, which loads the
    baseline next, asks for a full load, which a truncated variables file fails.
    """
    base = tmp_path / "m"
    push_model(models[0], str(base), now=lambda: 1000)
    push_model(models[1], str(base), now=lambda: 2000)
    data = next((base / "2000" / "variables").glob("variables.data-*"))
    data.write_bytes(data.read_bytes()[:3])

    assert production_model(str(base)).version == 2000
    with caplog.at_level(logging.WARNING, logger="serving.model_dir"):
        assert production_model(str(base), load=True).version == 1000
    assert f"served version 2000 ({base}/2000) cannot be loaded: it does not load" in caplog.text
