"""ImportExampleGen without the Kubeflow pre-cache hook that open-source KFP never runs.

TFX compiles every FileBasedExampleGen for Kubeflow with a `lifecycle.preCacheCheck` hook (its
driver: span, version, input fingerprint). Open-source KFP ignores container lifecycle hooks
(its driver builds the pod from image, command and args only; see kubeflow/conformance.py), so
the task would run as if the hook were not there, on a spec that claims otherwise. This
component has ImportExampleGen's spec, driver and executor but is not a FileBasedExampleGen, so
the compiler emits a plain container task. Locally the driver still runs: the input
fingerprint keeps caching correct when the TFRecords change. On Kubeflow the cache key holds the
data root, not the data: a data root is a snapshot (docs/deploy.md).
"""

from __future__ import annotations

from tfx.components.example_gen import driver, utils
from tfx.components.example_gen.import_example_gen import executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import Channel, standard_artifacts, standard_component_specs


class TFRecordExampleGen(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = standard_component_specs.FileBasedExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.FileBasedDriver

    def __init__(
        self,
        input_base: str | data_types.RuntimeParameter,
        input_config: example_gen_pb2.Input,
    ) -> None:
        super().__init__(spec=standard_component_specs.FileBasedExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            # As ImportExampleGen: with several input splits, the output keeps them as they are.
            output_config=utils.make_default_output_config(input_config),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=Channel(type=standard_artifacts.Examples),
        ))
