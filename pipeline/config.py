"""The typed pipeline config: everything the pipeline factory needs, for every runner."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ingest.dataset import EVAL, SPLITS, TRAIN, evaluation_split
from ingest.spans import HISTORY
from pipeline.blessing import EvalThresholds
from schema import CURATED_SCHEMA
from schema.errors import BadInput, Setting
from trainer.config import TrainerConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMA = CURATED_SCHEMA
# The pipeline's name when none is given: `run` keys its lock and ML Metadata records by it, and
# `runs`, `lineage` and `report` find them by it, so every command must default to the same one.
DEFAULT_PIPELINE_NAME = "image-classifier"
# Where `run` keeps its pipeline root, ML Metadata, data and logs, and where the commands that read
# them look (a relative path, from where the command starts).
DEFAULT_ROOT = "tfx_root"

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
RUN_FN = "trainer.run.run_fn"
# TFX's Tuner (only with the training config's tuning on): trainer/tuning.py.
TUNER_FN = "trainer.tuning.tuner_fn"

# Beam imports the runner by this name (pipeline/beam_runner.py); a string here, so reading the
# config does not import Beam.
RUNNER_ARG = "--runner=pipeline.beam_runner.BatchRunner"
# Beam's FnApiRunner in this process, as DirectRunner runs batch pipelines but without its try
# at downloading and running Prism (pipeline/beam_runner.py): multi_processing re-imports TF in
# every worker, which costs more than it gains on a machine with few cores (`run --beam
# direct-multi` asks for it).
LOCAL_BEAM_ARGS = (
    RUNNER_ARG,
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
)
# The same runner with one worker process per core (0 = all): StatisticsGen, Transform and
# the Evaluator on every core of one machine. The Kubeflow pods' default too.
DIRECT_MULTI_BEAM_ARGS = (
    RUNNER_ARG,
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=0",
)
# `run --beam`: where the local run's Beam work happens. The workers' INFO logs would go
# straight to the console, past `run`'s progress lines: warnings and errors only.
LOCAL_BEAM_PRESETS = {
    "in-process": LOCAL_BEAM_ARGS,
    "direct-multi": (*DIRECT_MULTI_BEAM_ARGS, "--default_sdk_harness_log_level=WARNING"),
}
# The preset a local run uses unless `--beam` names another: PipelineConfig's default Beam args.
DEFAULT_LOCAL_BEAM = "in-process"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str
    pipeline_root: str
    # Folder of TFRecords written by `ingest`: <data_root>/{train,eval,test}/*.tfrecord.gz
    data_root: str
    # Base for pushes: models land in <serving_dir>/<model_name>/<version>/.
    serving_dir: str
    model_name: str
    trainer: TrainerConfig
    # Accuracy bar and regression allowed (pipeline/blessing.py: the default bar's rule).
    thresholds: EvalThresholds
    schema_path: str = str(DEFAULT_SCHEMA)
    # The splits under data_root. Trainer fits "train" and early-stops on "eval"; the Evaluator
    # reports and blesses on "test", or on "eval" for data ingested without a test split.
    splits: tuple[str, ...] = SPLITS
    # data_root holds span-N folders (ingest/spans.py): ExampleGen reads the newest span (or
    # target_span), and the train images of the span_window - 1 spans before it (`history`).
    spans: bool = False
    target_span: int = 0
    span_window: int = 1
    # DataGate: ExampleValidator anomaly types accepted instead of failing the run, and the
    # largest L-infinity distance between a split's label distribution and the last accepted one.
    allowed_anomaly_types: tuple[str, ...] = ()
    max_label_drift: float = 0.1
    # A class map that differs from the served model's stops the run at the gate unless accepted;
    # an accepted one trains a model that is not compared with the served one.
    accept_new_classes: bool = False
    # A folder of unlabelled images: the BulkInferrer stage scores it after the Pusher, with the
    # version this run pushed or else the served one (components/bulk_inferrer.py). None: no
    # such stage.
    infer_data: str | None = None
    # SQLite MLMD store for local runs; None on Kubeflow (the cluster provides MLMD).
    metadata_path: str | None = None
    enable_cache: bool = True
    # "local" (LocalDagRunner) or "kubeflow" (KubeflowV2DagRunner). The graph is the same; on
    # Kubeflow the data root, training config and push destination are run-time parameters.
    orchestrator: str = "local"
    beam_pipeline_args: tuple[str, ...] = LOCAL_BEAM_PRESETS[DEFAULT_LOCAL_BEAM]

    def __post_init__(self) -> None:
        missing = sorted({TRAIN, EVAL} - set(self.splits))
        if missing:
            raise BadInput(f"data needs the splits train and eval; {missing} missing from "
                           f"{list(self.splits)}")
        if self.trainer.data.refit and evaluation_split(self.splits) == EVAL:
            raise BadInput("data.refit trains on the eval split too, and the data has no test "
                           "split, so the Evaluator would score the model on images it trained "
                           "on: add a test split, or set data.refit to false")
        if self.span_window < 1 or self.target_span < 0:
            raise BadInput(f"the span window must be >= 1 and the span >= 0, got "
                           f"{self.span_window} and {self.target_span}")
        if not self.spans and (self.span_window != 1 or self.target_span):
            raise BadInput(f"{self.data_root} holds no span-N folders: a span or a window of "
                           "spans needs data ingested with ", Setting("ingest.span"))

    @property
    def example_splits(self) -> tuple[str, ...]:
        """ExampleGen's output splits: the data's, and `history` for a root of spans."""
        return (*self.splits, HISTORY) if self.spans else self.splits

    @property
    def train_splits(self) -> tuple[str, ...]:
        """What the Trainer fits: train, and the window's earlier spans for a root of spans."""
        return (TRAIN, HISTORY) if self.spans else (TRAIN,)

    @property
    def evaluation_split(self) -> str:
        return evaluation_split(self.splits)

    @property
    def push_base_directory(self) -> str:
        return f"{self.serving_dir.rstrip('/')}/{self.model_name}"
