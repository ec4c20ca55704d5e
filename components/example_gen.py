"""ImportExampleGen for our TFRecords: a window of spans, and no Kubeflow pre-cache hook.

Spans (ingest/spans.py): the component reads the newest span of a data root, or the span
given by `target_span`, plus the train images of the `span_window - 1` spans before it as the
`history` split. TFX's own ExampleGen resolves one span per execution and leaves windows to a
resolver, which open-source KFP cannot run; here the window is two execution properties, so
both are Kubeflow run-time parameters. The Examples artifact records `span` (as TFX's does) and
`window_spans`, the JSON list of spans read, in ML Metadata.

Kubeflow: TFX compiles every FileBasedExampleGen with a `lifecycle.preCacheCheck` hook (its
driver: span, version, input fingerprint). Open-source KFP ignores container lifecycle hooks
(its driver builds the pod from image, command and args only; see kubeflow/conformance.py).
This component is not a FileBasedExampleGen, so the compiler emits a plain container task and
the executor resolves the spans itself. Locally the driver runs first: its input fingerprint
covers every file of the window, so caching stays correct when any span in it changes. On
Kubeflow the cache key holds the data root, not the data: a data root of spans is never cached
there (kubeflow/compile.py), a plain one is a snapshot (docs/deploy.md).
"""

from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
from tfx.components.example_gen import driver, utils
from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import Channel, artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, proto_utils

from ingest import spans

TARGET_SPAN_KEY = "target_span"
SPAN_WINDOW_KEY = "span_window"
WINDOW_PROPERTY = spans.WINDOW_PROPERTY


class TFRecordExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        # The span to train on; 0 is the newest.
        TARGET_SPAN_KEY: ExecutionParameter(type=int, optional=True),
        # How many spans, up to and including it, the Trainer fits.
        SPAN_WINDOW_KEY: ExecutionParameter(type=int, optional=True),
    }


def _split_patterns(exec_properties: dict[str, Any]) -> dict[str, str]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    return {split.name: split.pattern for split in input_config.splits}


def resolve(exec_properties: dict[str, Any]) -> tuple[list[int], dict[str, list[str]]]:
    """The spans read and each split's absolute file patterns, from the execution properties.

    The local driver has put the span it chose in `span`; on Kubeflow, where no driver runs,
    `target_span` (0: the newest) says which.
    """
    base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    span = (exec_properties.get(utils.SPAN_PROPERTY_NAME)
            or exec_properties.get(TARGET_SPAN_KEY) or 0)
    window, relative = spans.resolve_window(
        base, _split_patterns(exec_properties), int(span),
        int(exec_properties.get(SPAN_WINDOW_KEY) or 1))
    return window, {split: [os.path.join(base, p) for p in found]
                    for split, found in relative.items()}


class SpanWindowDriver(driver.FileBasedDriver):
    """Resolves the spans before the cache check; the fingerprint covers the whole window.

    The split patterns stay templates: the executor resolves them again from `span`, and the
    Examples artifact records the spans read (`window_spans`).
    """

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        del pipeline_info, component_info
        window, patterns = resolve(exec_properties)
        exec_properties[utils.SPAN_PROPERTY_NAME] = window[-1] if window else 0
        exec_properties[utils.VERSION_PROPERTY_NAME] = None
        exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = "\n".join(
            io_utils.generate_fingerprint(split, pattern)
            for split, found in patterns.items() for pattern in found)
        return exec_properties


class Executor(import_executor.Executor):
    """Copies each split's TFRecords as they are (serialized tf.Examples, not re-parsed)."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._window, self._patterns = resolve(exec_properties)
        super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        if self._window:
            examples.set_int_custom_property(utils.SPAN_PROPERTY_NAME, self._window[-1])
            examples.set_string_custom_property(WINDOW_PROPERTY, json.dumps(self._window))

    def GenerateExamplesByBeam(self, pipeline, exec_properties):
        splits = {}
        for split, patterns in self._patterns.items():
            reads = [pipeline | f"Read[{split}][{i}]" >> beam.io.ReadFromTFRecord(pattern)
                     for i, pattern in enumerate(patterns)]
            if not reads:  # history of a one-span window: an empty split
                reads = [pipeline | f"Empty[{split}]" >> beam.Create([], reshuffle=False)]
            splits[split] = tuple(reads) | f"Merge[{split}]" >> beam.Flatten()
        return splits


class TFRecordExampleGen(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = TFRecordExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = SpanWindowDriver

    def __init__(
        self,
        input_base: str | data_types.RuntimeParameter,
        input_config: example_gen_pb2.Input,
        target_span: int | data_types.RuntimeParameter = 0,
        span_window: int | data_types.RuntimeParameter = 1,
    ) -> None:
        super().__init__(spec=TFRecordExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            # As ImportExampleGen: with several input splits, the output keeps them as they are.
            output_config=utils.make_default_output_config(input_config),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            target_span=target_span,
            span_window=span_window,
            examples=Channel(type=standard_artifacts.Examples),
        ))
