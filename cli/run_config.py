"""What `run` runs: the data (ingested if needed), its schema, spans and training config."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from cli.common import log
from cli.options import ingest_policy
from cli.training import trainer_config
from schema.errors import BadInput, MissingInput, Setting


class OverlappingPathsError(BadInput):
    """Two folders that the run must keep apart are one, or one is inside the other."""


def refuse_overlaps(args: argparse.Namespace) -> None:
    """Refuse a data folder, serving dir, model directory or root that overlap, and an
    --infer-data folder that is missing or overlaps the last three.

    The run writes into the root and pushes into <serving-dir>/<model-name>; inside the images'
    folder those would become "files that are not images" for the next ingest, and images in
    the model directory would sit where the Pusher numbers versions. A model directory inside
    the root is only a folder of versions among its records. Paths are compared resolved, so a
    link to a folder counts as the folder.
    """
    from ingest.output import overlaps

    name = args.model_name
    if name is not None and (not name or name in (".", "..") or "/" in name or "\0" in name):
        raise OverlappingPathsError(f"--model-name {name!r}: a model name is one folder name "
                                    "under --serving-dir (no '/', not '.' or '..')")
    root, serving = args.root.resolve(), args.serving_dir.resolve()
    data = args.data.resolve() if args.data is not None else None
    model_base = (serving / (name or (data.name if data else args.dataset))).resolve()
    model = "the model directory (--serving-dir/--model-name)"
    conflicts = [] if data is None else [
        ("--data", data, other, path, overlaps(data, path))
        for other, path in (("--serving-dir", serving), (model, model_base), ("--root", root))]
    conflicts.append(("--root", root, model, model_base,
                      root == model_base or model_base in root.parents))
    if args.infer_data is not None:
        if not Path(args.infer_data).expanduser().is_dir():
            raise MissingInput(f"{args.infer_data}: no such folder, given as ",
                               Setting("infer_data"),
                               " (the unlabelled images the BulkInferrer stage scores)")
        # Its predictions go into the root, and versions' files are not images to score.
        infer = Path(args.infer_data).expanduser().resolve()
        conflicts += [("--infer-data", infer, other, path, overlaps(infer, path))
                      for other, path in (("--serving-dir", serving), (model, model_base),
                                          ("--root", root))]
    for first, a, second, b, conflict in conflicts:
        if conflict:
            raise OverlappingPathsError(
                f"{first} {a} and {second} {b} overlap (the same folder, or one inside the "
                "other): the run would write among the other's files. Keep the data, the "
                "pipeline root and the serving directory in separate folders.")


# Appended to the no-test-split warning when the run tunes: the Tuner chose on eval too.
TUNED_ON_EVAL_WARNING = (
    " With --tune the Tuner also chose its best trial on eval, so the blessing is then "
    "optimistic.")


def pipeline_config(args: argparse.Namespace, workspace, log_file: Path):
    """The PipelineConfig of a local run; raises BadInput (IngestError included) for bad input."""
    from ingest.dataset import TEST, TRAIN, TWO_SPLITS_WARNING, check_fraction, load_dataset_info
    from ingest.spans import SpanError, is_span_root, local_window, span_dir
    from pipeline.config import LOCAL_BEAM_PRESETS
    from pipeline.workspace import prepare_data
    from schema.curated import label_classes, run_schema

    check_fraction("--eval-fraction", args.eval_fraction)
    check_fraction("--test-fraction", args.test_fraction)
    name, data_root, info = prepare_data(
        workspace, None if args.data else args.dataset, args.data, args.eval_fraction,
        test_fraction=args.test_fraction, span=args.span, **ingest_policy(args),
    )
    spans = is_span_root(data_root)
    window = local_window(data_root, args.span, args.spans) if spans else []
    if args.spans > 1 and not spans:
        raise SpanError(f"--spans {args.spans}: {data_root} holds no span-N folders (ingest "
                        "with --span writes them)")
    schema = run_schema(args.schema, info.num_classes, workspace.schemas_dir)
    admitted = label_classes(args.schema)  # another count only for the curated schema
    if admitted != info.num_classes:
        log.info("[pipeline] schema: %s admits %d classes, the data has %d: using %s (the same "
                 "schema, label domain [0, %d))", args.schema, admitted, info.num_classes,
                 schema, info.num_classes)
    counts = dict(info.split_counts)
    if window[:-1]:
        history = sum(load_dataset_info(span_dir(data_root, n)).split_counts.get(TRAIN, 0)
                      for n in window[:-1])
        log.info("[pipeline] spans %s: the Trainer fits the train images of all %d (%d from "
                 "spans %s); statistics, gate and evaluation read span %d", window, len(window),
                 history, window[:-1], window[-1])
        counts[TRAIN] += history
    trainer = trainer_config(args, info.class_names, info.image_shape, counts, info=info)
    log.info("[pipeline] recipe %s: %s", trainer.recipe, trainer.recipe_reason)
    if TEST not in info.split_counts:
        log.warning("warning: " + TWO_SPLITS_WARNING
                    + (TUNED_ON_EVAL_WARNING if trainer.tuning.enabled else ""), data_root)
    thresholds = run_thresholds(args, info)
    config = config_from_args(
        args,
        pipeline_root=str(workspace.pipeline_root),
        data_root=str(data_root),
        serving_dir=str(args.serving_dir.resolve()),
        model_name=args.model_name or name,
        trainer=trainer,
        schema_path=str(schema.resolve()),
        splits=tuple(info.split_counts),
        spans=spans,
        thresholds=thresholds,
        metadata_path=str(workspace.metadata_path),
        enable_cache=not args.no_cache,
        beam_pipeline_args=LOCAL_BEAM_PRESETS[args.beam],
    )
    if args.warm_start:
        config = dataclasses.replace(config, trainer=trainer.override(
            {"continuity.warm_start_from": config.push_base_directory}))
    log.info("[pipeline] blessing: accuracy on the %s split at least %s, and at most %s below "
             "the served version", config.evaluation_split, thresholds.record()["text"],
             f"{thresholds.max_regression:g}")
    log.info("data: %s (%s), %d classes, image shape %s",
             data_root, info.split_counts, info.num_classes, info.image_shape)
    log.info("full log: %s", log_file)
    return config


def config_from_args(args: argparse.Namespace, *, pipeline_root: str, data_root: str,
                     serving_dir: str, model_name: str, trainer, thresholds, schema_path: str,
                     splits: tuple[str, ...], spans: bool, **runner):
    """The PipelineConfig of `run` and `compile-kfp` alike: the one place where the flags both
    take (add_pipeline_args, --span, --spans) become config fields, so a new setting reaches
    both runners when it is added here.

    The keywords are what each command works out itself (where the data and the pushes are,
    the training config, the thresholds, the splits); `runner` holds the runner's own fields
    (the local MLMD store, caching and Beam preset, or kubeflow/compile.py kfp_runner_fields).
    """
    from pipeline.config import PipelineConfig

    return PipelineConfig(
        pipeline_name=args.pipeline_name,
        pipeline_root=pipeline_root,
        data_root=data_root,
        serving_dir=serving_dir,
        model_name=model_name,
        trainer=trainer,
        thresholds=thresholds,
        schema_path=schema_path,
        splits=splits,
        spans=spans,
        target_span=args.span,
        span_window=args.spans,
        allowed_anomaly_types=tuple(args.allow_anomaly),
        max_label_drift=args.max_label_drift,
        accept_new_classes=args.accept_new_classes,
        infer_data=_infer_data(args.infer_data),
        **runner,
    )


def _infer_data(folder: str | None) -> str | None:
    """The BulkInferrer's folder, made absolute (the stage may run elsewhere than this
    command's working directory). A URL is refused: the stage walks a local file system (on a
    cluster, a path mounted in the container).
    """
    if not folder:
        return None
    if "://" in folder:
        raise BadInput(f"{folder}: the BulkInferrer walks its folder on a local file system; "
                       "give a path mounted in the container (a volume, or Cloud Storage FUSE "
                       "such as /gcs/BUCKET/...) as ", Setting("infer_data"))
    return str(Path(folder).expanduser().resolve())


def run_thresholds(args: argparse.Namespace, info):
    """The Evaluator's thresholds for data described by `info` (ingest's DatasetManifest):
    --min-accuracy, else pipeline/blessing.py's bar for the split the Evaluator scores (the
    newest span's, for a root of spans).
    """
    from ingest.dataset import evaluation_split
    from pipeline.blessing import thresholds

    split = evaluation_split(info.split_counts)
    return thresholds(args.min_accuracy, args.max_regression, split, info.class_names,
                      info.per_class_counts.get(split), info.split_counts[split],
                      args.max_tflite_drop)
