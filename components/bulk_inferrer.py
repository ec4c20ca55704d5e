"""BulkInferrer: scores a folder of unlabelled images with the model this run pushed, or else
the served one, and stores the predictions as an InferenceResult artifact.

Why not TFX's BulkInferrer: it reads an Examples artifact (an ExampleGen's TFRecords of
tf.Examples) and runs tfx-bsl's RunInference, whose predict path feeds serialized examples
to a signature (tfx-bsl#29: a signature taking raw image bytes, `serving_default`, which TF
Serving's clients call, cannot be its input). New photos arrive as a folder of files of any
size and with odd files among them, not as labelled TFRecords. This stage reads the folder
with `infer`'s own loop (components/batch_inference.py: the same walk as ingest, bad files
listed and skipped) and calls `serving_default`, so the rows are exactly what `infer` and TF
Serving's clients get.

It runs after the Pusher: when the Pusher pushed this run's model (it was blessed), that
version scores the images; otherwise the served version does (the newest complete one in the
push destination). The artifact's custom properties name the version (`model_version`), so
`lineage` links the predictions to it, and count the rows (`rows`, `bad`), which `runs` shows.
Like the Evaluator it is never cached (`READS_PRODUCTION`): the served version and the folder
both change outside the pipeline.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact, artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from components.batch_inference import ScoringProgress, score_folder
from schema.errors import BadInput, Setting
from serving.model_dir import is_local, join, production_model, push_base

log = logging.getLogger(__name__)

DATA_KEY = "data"
TOP_K_KEY = "top_k"
PUSH_DESTINATION_KEY = "push_destination"
PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY
INFERENCE_RESULT_KEY = standard_component_specs.INFERENCE_RESULT_KEY
# The predictions inside the InferenceResult artifact: one JSON object per image.
PREDICTIONS_FILE = "predictions.jsonl"
# Custom properties of the InferenceResult artifact (ML Metadata can filter on the integers).
VERSION_PROPERTY = "model_version"
ROWS_PROPERTY = "rows"
BAD_PROPERTY = "bad"
DATA_PROPERTY = "data"
NOTE_PROPERTY = "note"
DEFAULT_TOP_K = 3


def predictions_path(result_uri: str) -> str:
    return join(result_uri, PREDICTIONS_FILE)


def scoring_model(pushed: artifact.Artifact, base: str | None) -> tuple[int, str] | None:
    """(version, path) of the version that scores: the one the Pusher just pushed (or found
    already served), else the newest complete served version; None before the first push.
    """
    if pushed.get_int_custom_property("pushed"):
        version = pushed.get_string_custom_property("pushed_version")
        destination = pushed.get_string_custom_property("pushed_destination")
        if version and destination:
            return int(version), destination
    production = production_model(base)
    return (production.version, production.path) if production is not None else None


# Seconds between two progress lines in the log.
PROGRESS_EVERY_S = 30.0


def _progress_logger():
    """A progress callback that logs a line at most every PROGRESS_EVERY_S seconds."""
    last = [0.0]

    def log_progress(progress: ScoringProgress) -> None:
        if progress.elapsed - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = progress.elapsed
        of = f" of {progress.total}" if progress.total else ""
        log.info("[bulk_inferrer] %d%s images after %.0fs (%d scored, %d bad)", progress.done,
                 of, progress.elapsed, progress.scored, progress.bad)

    return log_progress


class Executor(base_executor.BaseExecutor):
    # The TFX executor interface, the same in every executor (`duplicates` pairs them).
    def Do(  # noqa: N802 - TFX executor interface
        self,
        input_dict: dict[str, list[artifact.Artifact]],
        output_dict: dict[str, list[artifact.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        pushed = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        result = artifact_utils.get_single_instance(output_dict[INFERENCE_RESULT_KEY])
        data = exec_properties[DATA_KEY]
        result.set_string_custom_property(DATA_PROPERTY, data)
        if not is_local(data):
            raise BadInput(f"{data}: the BulkInferrer walks its folder on a local file system; "
                           "give a path mounted in the container (a volume, or Cloud Storage "
                           "FUSE such as /gcs/BUCKET/...) as ", Setting("infer_data"))
        model = scoring_model(pushed, push_base(exec_properties.get(PUSH_DESTINATION_KEY)))
        if model is None:
            note = ("no version is served and this run pushed none (its model was not "
                    "blessed): nothing scored")
            log.warning("[bulk_inferrer] %s", note)
            result.set_int_custom_property(ROWS_PROPERTY, 0)
            result.set_string_custom_property(NOTE_PROPERTY, note)
            return
        version, path = model
        how = "pushed by this run" if pushed.get_int_custom_property("pushed") else "served"
        log.info("[bulk_inferrer] scoring %s with version %d (%s)", data, version, how)
        # score_folder reads and writes local files: a version on an object store (gs://) is
        # copied here first, and the predictions are written here, then copied to the artifact
        # (a pipeline root on gs://).
        with tempfile.TemporaryDirectory(prefix="bulk-inferrer-") as local:
            if not is_local(path):
                copy = os.path.join(local, "model", str(version))
                io_utils.copy_dir(path, copy)
                path = copy
            remote_output = not is_local(result.uri)
            output = (os.path.join(local, PREDICTIONS_FILE) if remote_output
                      else predictions_path(result.uri))
            summary = score_folder(data, path, output,
                                   top_k=exec_properties.get(TOP_K_KEY) or DEFAULT_TOP_K,
                                   progress=_progress_logger())
            if remote_output:
                for written in (summary.output, summary.bad_file):
                    if os.path.exists(written):
                        fileio.copy(written, join(result.uri, os.path.basename(written)),
                                    overwrite=True)
        result.set_int_custom_property(VERSION_PROPERTY, version)
        result.set_int_custom_property(ROWS_PROPERTY, summary.rows)
        result.set_int_custom_property(BAD_PROPERTY, len(summary.bad))
        result.set_string_custom_property(
            NOTE_PROPERTY, f"version {version} ({how}): {summary.rows} images scored, "
                           f"{len(summary.bad)} bad, {summary.images_per_second:.0f} images/s")
        log.info("[bulk_inferrer] %d images scored with version %d in %.0fs (%.0f images/s), "
                 "%d bad files skipped: %s", summary.rows, version, summary.seconds,
                 summary.images_per_second, len(summary.bad), summary.output)


class ImageBulkInferrerSpec(ComponentSpec):
    PARAMETERS = {
        # The folder of images to score (a run-time parameter on Kubeflow).
        DATA_KEY: ExecutionParameter(type=str),
        # Where the served versions are, for when this run pushed none.
        PUSH_DESTINATION_KEY: ExecutionParameter(type=pusher_pb2.PushDestination),
        TOP_K_KEY: ExecutionParameter(type=int, optional=True),
    }
    INPUTS = {
        # The Pusher's outcome: the version it pushed, or that it pushed none.
        PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }
    OUTPUTS = {
        INFERENCE_RESULT_KEY: ChannelParameter(type=standard_artifacts.InferenceResult),
    }


# TFX component boilerplate: the spec's channels and parameters passed through, the shape every
# component here has (`duplicates` pairs them; there is no logic to share).
class ImageBulkInferrer(base_component.BaseComponent):
    READS_PRODUCTION = True
    SPEC_CLASS = ImageBulkInferrerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        pushed_model: types.BaseChannel,
        data: str | Any,
        push_destination: pusher_pb2.PushDestination | Any,
        top_k: int = DEFAULT_TOP_K,
    ) -> None:
        super().__init__(spec=ImageBulkInferrerSpec(
            pushed_model=pushed_model,
            data=data,
            push_destination=push_destination,
            top_k=top_k,
            inference_result=types.Channel(type=standard_artifacts.InferenceResult),
        ))
