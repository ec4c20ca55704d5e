"""A Pusher whose pushes are atomic, verified and never duplicated.

The stock filesystem Pusher copies files straight into `<base>/<unix time>/`, the folder TF
Serving polls: a crash mid-copy leaves a half-written version that the server may try to load,
and a cached re-run pushes the same model again as a new version. Here:
  * the model is copied to a hidden staging folder (TF Serving only loads numeric folders),
  * loaded and checked there (named signatures present, a prediction on a generated image
    returns finite probabilities that sum to 1 over the model's classes, the TF Serving
    warm-up requests in assets.extra/ replay without error),
  * and only then renamed to the next version number, which is always larger than every
    existing one. A crash before the rename leaves the served versions untouched; the next
    push removes the stale staging folder.
  * If the newest served version holds the same files, no new version is created.
File access goes through TFX's fileio, so gs:// and s3:// bases work; the rename is atomic on
local and POSIX filesystems, while object stores copy, so there the verification before the
rename is what protects the server.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as stock_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from trainer import features

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


class PushVerificationError(RuntimeError):
    """The model failed its checks in staging; nothing was pushed."""


def _join(*parts: str) -> str:
    return "/".join(part.rstrip("/") for part in parts)


def model_digest(model_dir: str) -> str:
    """SHA-256 over every file's relative path and bytes."""
    root = str(model_dir).rstrip("/")
    files = []
    for folder, _, names in fileio.walk(root):
        files += [_join(str(folder), str(name)) for name in names]
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path[len(root):].encode() + b"\0")
        with fileio.open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def served_versions(base: str) -> list[int]:
    if not fileio.isdir(base):
        return []
    names = (str(name).rstrip("/") for name in fileio.listdir(base))
    return sorted(int(n) for n in names if n.isdigit() and fileio.isdir(_join(base, n)))


def verify_saved_model(model_dir: str) -> None:
    """Load the model as TF Serving would and run one prediction through serving_default."""
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
    image = tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(128, tf.uint8)))
    try:
        outputs = loaded.signatures[features.SERVING_SIGNATURE](
            **{features.SERVING_INPUT: tf.reshape(image, [1])}
        )
    except Exception as e:  # noqa: BLE001
        raise PushVerificationError(f"{model_dir}: prediction on a test image failed: {e}") from e
    probabilities = outputs[features.OUTPUT_PROBABILITIES].numpy()
    if num_classes is not None and probabilities.shape != (1, num_classes):
        raise PushVerificationError(
            f"{model_dir}: probabilities have shape {probabilities.shape}, expected "
            f"(1, {num_classes}) from {labels}"
        )
    total = float(probabilities.sum())
    if not abs(total - 1.0) < 1e-3:
        raise PushVerificationError(f"{model_dir}: probabilities sum to {total}, not 1")
    _replay_warmup_requests(loaded, model_dir)


def _replay_warmup_requests(loaded, model_dir: str) -> None:
    """TF Serving replays these before serving a version; a failing one would block the load."""
    import tensorflow as tf

    from trainer.warmup import WARMUP_DIR, WARMUP_FILE, read_warmup_requests

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


def push_model(
    model_dir: str,
    base: str,
    verify: Callable[[str], None] = verify_saved_model,
    now: Callable[[], float] = time.time,
) -> tuple[int, str, bool]:
    """Push model_dir under base; returns (version, version dir, whether it already existed).

    Assumes one pusher per base directory at a time (runs on a pipeline root are serialized).
    """
    base = str(base).rstrip("/")
    fileio.makedirs(base)
    for name in fileio.listdir(base):
        if str(name).startswith(STAGING_PREFIX):
            log.warning("removing %s, left by an interrupted push", _join(base, str(name)))
            fileio.rmtree(_join(base, str(name)))
    versions = served_versions(base)
    digest = model_digest(model_dir)
    if versions and model_digest(_join(base, str(versions[-1]))) == digest:
        log.info("the model is already served as version %d; not pushing it again", versions[-1])
        return versions[-1], _join(base, str(versions[-1])), True
    staging = _join(base, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    try:
        io_utils.copy_dir(str(model_dir), staging)
        verify(staging)
        version = max(int(now()), versions[-1] + 1 if versions else 0)
        target = _join(base, str(version))
        fileio.rename(staging, target)
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)
    log.info("pushed version %d to %s", version, target)
    return version, target, False


class Executor(stock_executor.Executor):
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
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("only filesystem push destinations are supported")
        version, target, existed = push_model(model_path, destination.filesystem.base_directory)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=target, pushed_version=str(version))
        model_push.set_int_custom_property("already_served", int(existed))


class AtomicPusher(Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
