"""A Pusher whose pushes are atomic, verified and never duplicated.

The stock filesystem Pusher copies files straight into `<base>/<unix time>/`, the folder TF
Serving polls: a crash mid-copy leaves a half-written version that the server may try to load,
and a cached re-run pushes the same model again as a new version. Here:
  * the model is copied to a hidden staging folder (TF Serving only loads numeric folders),
  * loaded and checked there (named signatures present, one generated image of every format
    and mode ingest accepts, sent in one batch, returns finite probabilities that sum to 1 over
    the model's classes, the TF Serving warm-up requests in assets.extra/ replay without error),
  * and only then published as the next version number, which is always larger than every
    numeric folder present, complete or not.
  * If the newest served version holds the same files, no new version is created.
  * The statistics of the data the model was trained on (as accepted by the DataGate) go into
    the version's assets.extra/: the drift baseline of the runs that follow (read back through
    serving/model_dir.py).

Publishing depends on the store (`serving.model_dir.is_local`, decided by the base's scheme):
  * local paths and file://: one rename of the staging folder. TF Serving sees all of the
    version or none of it.
  * gs://, s3:// and every other scheme: object stores have no rename (TF's filesystems copy
    object by object), so every file but saved_model.pb is copied into `<base>/<version>/`,
    the copy is compared file by file (SHA-256) with the verified staging folder, and
    saved_model.pb is written last, a single object write. Until then the folder has no
    SavedModel for TF Serving to load: it fails that load and retries, keeping the previous
    version in service.
A crash leaves at most a staging folder and, on object stores, a version folder without
saved_model.pb; neither counts as served (serving.model_dir.served_versions) and a later push
removes both, with a warning. File access goes through TFX's fileio, so gs:// and s3:// bases work.

Cleanup deletes only what a push of ours provably wrote, never a folder because of its name
alone: the base may hold a user's folders (class folders `0/`, `1/` of a data folder that
shares the model's name). Ours are
  * staging folders `.staging-<owner id>`, whose name carries a push's owner id, and
  * on object stores, a version folder named by a `.publishing-<version>` marker, which the
    push writes (with its owner id) before the version's first file and removes after its
    saved_model.pb. On local paths a version appears by one rename, whole, so no version
    folder is ever a leftover of ours there.

Pushes from several pipeline roots to one base wait for each other: each holds the base for its
whole push (push_lock.py: a file lock on local paths, a lease on object stores). Cleanup does not
rely on that alone: a staging folder is named after its push's owner id and removed only when
that push is known to have ended or nothing in it changed for `stale_after` seconds, and a
version without saved_model.pb likewise by the owner its publishing marker names. What is left
alone is logged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from tfx import types
from tfx.components.pusher import executor as stock_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils

from components.data_gate import STATS_FILE, ValidatedStatistics, splits_in
from components.gate_report import GateReport
from components.push_lock import (
    DEFAULT_POLICY,
    LockPolicy,
    owner_alive,
    owner_created,
    push_lock,
)
from schema import features
from serving import tflite
from serving.model_dir import (
    SAVED_MODEL_FILES,
    STATISTICS_DIR,
    file_digests,
    file_sha256,
    incomplete_versions,
    is_local,
    model_digest,
    push_base,
    served_versions,
    version_folders,
)
from serving.model_dir import join as _join
from serving.predict import error_line
from serving.tflite import TfliteClassifier

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
PUBLISHING_PREFIX = ".publishing-"


class PushVerificationError(RuntimeError):
    """The model failed its checks in staging; nothing was pushed."""


def verify_saved_model(model_dir: str) -> None:
    """Load the model as TF Serving would and predict on one image of every accepted kind.

    Ingest accepts JPEG and PNG in many modes (RGBA, palette, 16-bit, CMYK, gray...), and stores
    them unchanged; clients may send any of them, so serving_default must take each one.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(model_dir))
    except Exception as e:  # noqa: BLE001 - any load failure means "do not push"
        raise PushVerificationError(f"{model_dir}: the SavedModel does not load: {e}") from e
    missing = {features.SERVING_SIGNATURE, features.EXAMPLES_SIGNATURE} - set(loaded.signatures)
    if missing:
        raise PushVerificationError(
            f"{model_dir}: signatures {sorted(missing)} missing; has {sorted(loaded.signatures)}"
        )
    labels = _join(model_dir, "assets", features.LABELS_ASSET)
    num_classes = None
    if fileio.exists(labels):
        with fileio.open(labels, "r") as f:
            num_classes = len(f.read().splitlines())
    serve = loaded.signatures[features.SERVING_SIGNATURE]
    images = _verification_images(serve)
    probabilities = _predict_each_kind(serve, images, model_dir)
    expected = (len(images), num_classes or probabilities.shape[-1])
    if probabilities.shape != expected:
        raise PushVerificationError(
            f"{model_dir}: probabilities have shape {probabilities.shape}, expected {expected} "
            f"for {len(images)} test images and the classes in {labels}"
        )
    totals = probabilities.sum(axis=-1)
    wrong = [kind for kind, total in zip(images, totals, strict=True)
             if not abs(float(total) - 1.0) < 1e-3]
    if wrong:
        raise PushVerificationError(f"{model_dir}: probabilities do not sum to 1 for {wrong}: "
                                    f"{totals.tolist()}")
    _replay_warmup_requests(loaded, model_dir)
    if fileio.exists(tflite.model_path(model_dir)):
        verify_tflite(model_dir)


def verify_tflite(model_dir: str) -> None:
    """Load the version's TFLite model in TFLite's interpreter, as an app would, and predict on
    one image of every format and mode ingest accepts, made into pixels as the app is told to.
    """
    import numpy as np

    from trainer.image_kinds import sample_images
    from trainer.tflite import app_pixels

    try:
        model = tflite.read_folder(model_dir)
        classifier = TfliteClassifier(model.content)
        info = model.info
        images = sample_images(info.channels)
        pixels = app_pixels(list(images.values()), info.height, info.width, info.channels,
                            info.resize_mode)
        probabilities = classifier.batch_probabilities(pixels)
    except Exception as e:  # noqa: BLE001 - any failure means "do not push"
        raise PushVerificationError(f"{tflite.folder(model_dir)}: the TFLite model does not "
                                    f"run in TFLite's interpreter: {error_line(e)}") from e
    if probabilities.shape != (len(images), len(model.labels)):
        raise PushVerificationError(
            f"{model.folder}: TFLite probabilities have shape {probabilities.shape}, expected "
            f"{(len(images), len(model.labels))} for {len(images)} test images and "
            f"{len(model.labels)} classes")
    totals = probabilities.sum(axis=-1)
    # int8 models dequantize a uint8 softmax: its steps of 1/256 may sum a little off 1.
    wrong = [kind for kind, total in zip(images, totals, strict=True)
             if not (np.isfinite(total) and abs(float(total) - 1.0) < 2e-2)]
    if wrong:
        raise PushVerificationError(f"{model.folder}: TFLite probabilities do not sum to 1 for "
                                    f"{wrong}: {totals.tolist()}")


def tflite_push(model_dir: str, blessing_uri: str) -> tuple[bool, str]:
    """Whether the model's TFLite file goes with the version, and why (the Evaluator's verdict,
    left in the blessing folder by components/tflite_evaluation.py).
    """
    if not fileio.exists(tflite.model_path(model_dir)):
        return False, ("the model holds no TFLite file (made with export.tflite none, or a "
                       "served version without one handed on unchanged)")
    for name, blessed in ((tflite.TFLITE_BLESSED_FILE, True),
                          (tflite.TFLITE_NOT_BLESSED_FILE, False)):
        path = _join(blessing_uri, name)
        if fileio.exists(path):
            with fileio.open(path, "r") as f:
                return blessed, f.read().strip()
    return False, "the Evaluator left no verdict on the TFLite model: not pushed"


def _decoder_channels(signature) -> int | None:
    """Channels the signature's image decoder produces (1 or 3); None if it decodes nothing."""
    graph = signature.graph.as_graph_def()
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    channels = {n.attr["channels"].i for n in nodes
                if n.op in ("DecodeImage", "DecodeJpeg", "DecodePng")}
    return min(channels) if channels else None


def _verification_images(signature) -> dict[str, bytes]:
    """One image of every format and mode ingest accepts that this model's decoder can take
    (trainer/image_kinds.py: a gray model cannot take CMYK JPEGs).
    """
    from trainer.image_kinds import sample_images

    return sample_images(_decoder_channels(signature) or 3)


def _predict_each_kind(signature, images: dict[str, bytes], model_dir: str):
    """Probabilities for the batch of images; on failure, the kinds that fail on their own."""
    import tensorflow as tf

    def predict(batch: list[bytes]):
        outputs = signature(**{features.SERVING_INPUT: tf.constant(batch)})
        return outputs[features.OUTPUT_PROBABILITIES].numpy()

    try:
        return predict(list(images.values()))
    except Exception as batch_error:  # noqa: BLE001
        failing = []
        for kind, data in images.items():
            try:
                predict([data])
            except Exception as e:  # noqa: BLE001
                failing.append(f"{kind} ({str(e).strip().splitlines()[0][:200]})")
        detail = "; ".join(failing) or str(batch_error)
        raise PushVerificationError(
            f"{model_dir}: serving_default fails on test images of formats/modes that ingest "
            f"accepts: {detail}"
        ) from batch_error


def _replay_warmup_requests(loaded, model_dir: str) -> None:
    """TF Serving replays these before serving a version; a failing one would block the load."""
    import tensorflow as tf

    from serving.warmup import WARMUP_DIR, WARMUP_FILE, read_warmup_requests

    if not fileio.exists(_join(model_dir, WARMUP_DIR, WARMUP_FILE)):
        return
    for request in read_warmup_requests(model_dir):
        name = request.model_spec.signature_name or features.SERVING_SIGNATURE
        if name not in loaded.signatures:
            raise PushVerificationError(f"{model_dir}: a warm-up request calls missing "
                                        f"signature {name!r}")
        try:
            loaded.signatures[name](
                **{key: tf.make_ndarray(value) for key, value in request.inputs.items()}
            )
        except Exception as e:  # noqa: BLE001
            raise PushVerificationError(f"{model_dir}: a warm-up request fails: {e}") from e


def remove_version(version_dir: str) -> None:
    """Delete a version folder, its SavedModel proto first.

    Object stores delete object by object: TF Serving must never find saved_model.pb beside
    missing files.
    """
    for name in SAVED_MODEL_FILES:
        if fileio.exists(_join(version_dir, name)):
            fileio.remove(_join(version_dir, name))
    if fileio.exists(version_dir):
        fileio.rmtree(version_dir)


def last_change(path: str) -> float | None:
    """When anything under path last changed (seconds since the epoch); None if nobody says.

    A push keeps writing files into its staging folder (and on object stores its version), so
    a recent change means it may still be at work.
    """
    times = []
    for folder, _, files in fileio.walk(path):
        for name in files:
            with contextlib.suppress(Exception):
                times.append(fileio.stat(_join(str(folder), str(name))).mtime_nsec / 1e9)
    with contextlib.suppress(Exception):  # object stores may have no folder to stat
        times.append(fileio.stat(path).mtime_nsec / 1e9)
    return max((t for t in times if t > 0), default=None)


def _idle_for(path: str, owner: str | None) -> float:
    """Seconds since a leftover last changed or its push started, the later; inf if unknown."""
    created = owner_created(owner) if owner else None
    times = [t for t in (created, last_change(path)) if t is not None]
    return time.time() - max(times) if times else math.inf


def _why_abandoned(path: str, owner: str | None, stale_after: float) -> str | None:
    """Why no push can still be writing path, or None when one may be."""
    if owner is not None and owner_alive(owner) is False:
        return f"its push {owner} has ended"
    idle = _idle_for(path, owner)
    if idle > stale_after:
        return f"nothing in it changed for {idle:.0f} s (over {stale_after:g} s)"
    return None


def _remove_abandoned_staging(base: str, stale_after: float) -> None:
    """Remove our staging folders that no push is writing any more."""
    for name in sorted(str(n).rstrip("/") for n in fileio.listdir(base)):
        owner = name[len(STAGING_PREFIX):]
        if not name.startswith(STAGING_PREFIX) or owner_created(owner) is None:
            continue  # not named by a push of ours
        path = _join(base, name)
        why = _why_abandoned(path, owner, stale_after)
        if why is None:
            log.warning("leaving %s alone: push %s may still be writing it (changed %.0f s ago; "
                        "removed once %g s pass without a change, or when its process is gone)",
                        path, owner, _idle_for(path, owner), stale_after)
        else:
            log.warning("removing %s, left by an interrupted push: %s", path, why)
            fileio.rmtree(path)


def publishing_marker(base: str, version: int) -> str:
    """Object stores: names the push that is copying `<base>/<version>/` (module docstring)."""
    return _join(base, f"{PUBLISHING_PREFIX}{version}")


def _publishing_owners(base: str) -> dict[int, str]:
    """Version -> owner id of every publishing marker under base."""
    owners = {}
    for name in (str(n).rstrip("/") for n in fileio.listdir(base)):
        number = name[len(PUBLISHING_PREFIX):]
        if not (name.startswith(PUBLISHING_PREFIX) and number.isdigit()):
            continue
        # Removed meanwhile: nothing to clean.
        with contextlib.suppress(Exception), fileio.open(_join(base, name), "r") as f:
            owners[int(number)] = f.read().strip()
    return owners


def _remove_abandoned_versions(base: str, stale_after: float) -> None:
    """Remove versions our interrupted pushes left without a SavedModel, and their markers.

    A numeric folder without saved_model.pb and without our marker is not ours: it is left
    alone (and new versions are numbered above it).
    """
    owners = _publishing_owners(base)
    incomplete = set(incomplete_versions(base))
    for version, owner in sorted(owners.items()):
        path = _join(base, str(version))
        why = _why_abandoned(path, owner, stale_after)
        if why is None:
            log.warning("leaving %s alone: push %s may still be copying it", path, owner)
            continue
        if version in incomplete:
            log.warning("removing %s: a version without saved_model.pb, left by an interrupted "
                        "push to an object store (%s)", path, why)
            remove_version(path)
        fileio.remove(publishing_marker(base, version))
    foreign = sorted(incomplete - set(owners))
    if foreign:
        log.info("leaving %s alone: numeric folders without saved_model.pb that no push of ours "
                 "wrote; new versions are numbered above them", [_join(base, str(v))
                                                                  for v in foreign])


def remove_leftovers(base: str, stale_after: float = DEFAULT_POLICY.stale_after) -> None:
    """Remove what interrupted pushes of ours left, never what a running push still writes."""
    _remove_abandoned_staging(base, stale_after)
    _remove_abandoned_versions(base, stale_after)


def rename_into_place(staging: str, target: str) -> None:
    """Local and POSIX filesystems: one atomic rename, so TF Serving sees all or nothing."""
    fileio.rename(staging, target)


def copy_into_place(staging: str, target: str, check: Callable[[], None] = lambda: None,
                    owner: str = "") -> None:
    """Object stores: copy all but the SavedModel proto, check the copy, write the proto last.

    TF Serving cannot load a folder without saved_model.pb, so it never loads a partial
    version; a single object write is atomic on GCS and S3. check() runs before that write (a
    lost lease stops it). A target that exists already is refused, neither written nor removed;
    on any other error the partial version is removed. The publishing marker, naming owner,
    exists from before the first file until the proto is written: it is what lets a later
    push remove this version if the process dies meanwhile.
    """
    expected = file_digests(staging)
    last = [name for name in SAVED_MODEL_FILES if name in expected]
    if not last:
        raise PushVerificationError(f"{staging}: no saved_model.pb to write last")
    if fileio.exists(target):
        raise FileExistsError(f"{target} exists already: another push is publishing it")
    base, version = target.rsplit("/", 1)
    marker = publishing_marker(base, int(version))
    with fileio.open(marker, "w") as f:
        f.write(owner)
    body = {relative: digest for relative, digest in expected.items() if relative not in last}
    try:
        for relative in body:
            _copy_file(staging, target, relative)
        _check_copy(target, body)
        check()
        for relative in last:
            _copy_file(staging, target, relative)
            _check_file(target, relative, expected[relative])
    except BaseException:
        remove_version(target)
        fileio.remove(marker)
        raise
    fileio.remove(marker)


def _copy_file(source_root: str, target_root: str, relative: str) -> None:
    target = _join(target_root, relative)
    fileio.makedirs(target.rsplit("/", 1)[0])
    fileio.copy(_join(source_root, relative), target, overwrite=False)


def _check_copy(target: str, expected: dict[str, str]) -> None:
    """Raise unless target holds exactly the expected files, byte for byte."""
    actual = file_digests(target)
    wrong = sorted(name for name in expected.keys() | actual.keys()
                   if expected.get(name) != actual.get(name))
    if wrong:
        raise PushVerificationError(f"{target}: the copy differs from the verified staging "
                                    f"folder in {wrong}")


def _check_file(target: str, relative: str, digest: str) -> None:
    if file_sha256(_join(target, relative)) != digest:
        raise PushVerificationError(f"{target}: {relative} differs from the verified staging "
                                    "folder")


def push_model(
    model_dir: str,
    base: str,
    verify: Callable[[str], None] = verify_saved_model,
    now: Callable[[], float] = time.time,
    add_files: Callable[[str], None] | None = None,
    atomic_rename: bool | None = None,
    policy: LockPolicy = DEFAULT_POLICY,
    leave_out: tuple[str, ...] = (),
) -> tuple[int, str, bool]:
    """Push model_dir under base; returns (version, version dir, whether it already existed).

    add_files(staging) adds files to the version before it is verified and published; the
    folders of model_dir in `leave_out` (relative paths) are not pushed.
    atomic_rename picks how it is published (module docstring); None decides by base's scheme.
    The push holds base throughout (push_lock): another push to it waits up to policy.timeout.
    """
    base = str(base).rstrip("/")
    if atomic_rename is None:
        atomic_rename = is_local(base)
    fileio.makedirs(base)
    with push_lock(base, policy) as hold:
        newest_folder = max(version_folders(base), default=-1)  # leftovers included
        remove_leftovers(base, policy.stale_after)
        versions = served_versions(base)
        if versions and (model_digest(_join(base, str(versions[-1])))
                         == model_digest(model_dir, leave_out)):
            log.info("the model is already served as version %d; not pushing it again",
                     versions[-1])
            return versions[-1], _join(base, str(versions[-1])), True
        staging = _join(base, f"{STAGING_PREFIX}{hold.owner}")
        publish = (rename_into_place if atomic_rename
                   else functools.partial(copy_into_place, check=hold.check, owner=hold.owner))
        try:
            _stage(model_dir, staging, add_files, verify, leave_out)
            hold.check()  # object stores: a push whose lease was taken must not publish
            version = _next_version(base, newest_folder, now)
            target = _join(base, str(version))
            publish(staging, target)
        finally:
            if fileio.exists(staging):
                fileio.rmtree(staging)
    log.info("pushed version %d to %s (%s)", version, target,
             "renamed" if atomic_rename else "copied, saved_model.pb last")
    return version, target, False


def _stage(model_dir: str, staging: str, add_files: Callable[[str], None] | None,
           verify: Callable[[str], None], leave_out: tuple[str, ...] = ()) -> None:
    """Copy the model into staging (but `leave_out`), add the version's extra files, and check
    it there.
    """
    io_utils.copy_dir(str(model_dir), staging)
    for folder in leave_out:
        if fileio.exists(_join(staging, folder)):
            fileio.rmtree(_join(staging, folder))
    if add_files is not None:
        add_files(staging)
    verify(staging)


def _next_version(base: str, newest_seen: int, now: Callable[[], float]) -> int:
    """The clock's second, but above every numeric folder seen before cleanup or present now."""
    return max(int(now()), newest_seen + 1, max(version_folders(base), default=-1) + 1)


def statistics_copier(statistics_uri: str) -> Callable[[str], None]:
    """Copies gate-approved statistics into a version: the next runs' drift baseline."""

    def copy(version_dir: str) -> None:
        # The gate's report says which span they are of: the next gate names it.
        report = GateReport.path_in(statistics_uri)
        if fileio.exists(report):
            fileio.makedirs(_join(version_dir, STATISTICS_DIR))
            fileio.copy(report, GateReport.path_in(_join(version_dir, STATISTICS_DIR)),
                        overwrite=True)
        for split in splits_in(statistics_uri):
            target = _join(version_dir, STATISTICS_DIR, f"Split-{split}")
            fileio.makedirs(target)
            fileio.copy(os.path.join(statistics_uri, f"Split-{split}", STATS_FILE),
                        _join(target, STATS_FILE), overwrite=True)

    return copy


class Executor(stock_executor.Executor):
    # The TFX executor interface, the same in every executor (`duplicates` pairs them).
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        base = push_base(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY])
        statistics = input_dict.get(STATISTICS_KEY) or []
        add_files = statistics_copier(statistics[0].uri) if statistics else None
        blessing = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.MODEL_BLESSING_KEY])
        with_tflite, why = tflite_push(model_path, blessing.uri)
        log.info("TFLite: %s", why)
        version, target, existed = push_model(
            model_path, base, add_files=add_files,
            leave_out=() if with_tflite else (tflite.TFLITE_DIR,))
        io_utils.copy_dir(model_path, model_push.uri)
        if not with_tflite and fileio.exists(_join(model_push.uri, tflite.TFLITE_DIR)):
            fileio.rmtree(_join(model_push.uri, tflite.TFLITE_DIR))  # as the version holds it
        self._MarkPushed(model_push, pushed_destination=target, pushed_version=str(version))
        model_push.set_int_custom_property("already_served", int(existed))
        model_push.set_int_custom_property("tflite_pushed", int(with_tflite))
        model_push.set_string_custom_property("tflite_note", why)


STATISTICS_KEY = "statistics"


class AtomicPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        # The DataGate's accepted statistics, stored with the version (see module docstring).
        STATISTICS_KEY: ChannelParameter(type=ValidatedStatistics, optional=True),
    }


# TFX component boilerplate: the spec's channels and parameters passed through, the shape every
# component here has (`duplicates` pairs them; there is no logic to share).
class AtomicPusher(base_component.BaseComponent):
    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        push_destination: pusher_pb2.PushDestination | Any,
        statistics: types.BaseChannel | None = None,
    ) -> None:
        super().__init__(spec=AtomicPusherSpec(
            model=model,
            model_blessing=model_blessing,
            push_destination=push_destination,
            statistics=statistics,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        ))
