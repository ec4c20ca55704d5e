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
  * The statistics of the data the model was trained on (as accepted by the DataGate) go into
    the version's assets.extra/: the drift baseline of the runs that follow (production.py).
File access goes through TFX's fileio, so gs:// and s3:// bases work; the rename is atomic on
local and POSIX filesystems, while object stores copy, so there the verification before the
rename is what protects the server.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
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
from components.production import (
    STATISTICS_DIR,
    model_digest,
    push_base,
    served_versions,
)
from components.production import join as _join
from trainer import features

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


class PushVerificationError(RuntimeError):
    """The model failed its checks in staging; nothing was pushed."""


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
    add_files: Callable[[str], None] | None = None,
) -> tuple[int, str, bool]:
    """Push model_dir under base; returns (version, version dir, whether it already existed).

    add_files(staging) adds files to the version before it is verified and renamed into place.
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
        if add_files is not None:
            add_files(staging)
        verify(staging)
        version = max(int(now()), versions[-1] + 1 if versions else 0)
        target = _join(base, str(version))
        fileio.rename(staging, target)
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)
    log.info("pushed version %d to %s", version, target)
    return version, target, False


def statistics_copier(statistics_uri: str) -> Callable[[str], None]:
    """Copies gate-approved statistics into a version: the next runs' drift baseline."""

    def copy(version_dir: str) -> None:
        for split in splits_in(statistics_uri):
            target = _join(version_dir, STATISTICS_DIR, f"Split-{split}")
            fileio.makedirs(target)
            fileio.copy(os.path.join(statistics_uri, f"Split-{split}", STATS_FILE),
                        _join(target, STATS_FILE), overwrite=True)

    return copy


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
        base = push_base(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY])
        statistics = input_dict.get(STATISTICS_KEY) or []
        add_files = statistics_copier(statistics[0].uri) if statistics else None
        version, target, existed = push_model(model_path, base, add_files=add_files)
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=target, pushed_version=str(version))
        model_push.set_int_custom_property("already_served", int(existed))


STATISTICS_KEY = "statistics"


class AtomicPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        # The DataGate's accepted statistics, stored with the version (see module docstring).
        STATISTICS_KEY: ChannelParameter(type=ValidatedStatistics, optional=True),
    }


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
