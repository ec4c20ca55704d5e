"""`python -m pipeline <command>`: ingest, run, predict, compile-kfp, runs, lineage, report,
schema.

Heavy imports (TensorFlow, TFX) happen inside the commands, so `--help` and `ingest` start fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from pipeline import logs

log = logging.getLogger("pipeline")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DATA_REJECTED, EXIT_BUSY = 0, 1, 2, 3, 4

EPILOG = """\
examples:
  python -m pipeline run                          # built-in digits dataset, end to end
  python -m pipeline ingest photos/ data/photos   # image folder -> TFRecords
  python -m pipeline run --data data/photos --epochs 20 --serving-dir /models
  python -m pipeline predict --model-dir serving_model/digits img1.png img2.png
  python -m pipeline compile-kfp --output pipeline.json

exit codes: 0 ok, 1 the pipeline or a command failed, 2 bad input or arguments,
            3 the data gate rejected the data (anomalies or label drift; nothing trained),
            4 another run of the same pipeline holds the pipeline root
"""


def _add_trainer_args(parser: argparse.ArgumentParser) -> None:
    from trainer.config import AUTO, DISTRIBUTIONS, MODELS, PRECISIONS, RECIPES, WARMUPS
    from trainer.memory import DEFAULT_CACHE_BUDGET

    group = parser.add_argument_group(
        "training", "Unset options take the recipe's value (see trainer/config.py RECIPES)."
    )
    group.add_argument("--recipe", choices=[AUTO, *sorted(RECIPES)], default=AUTO,
                       help="auto: chosen from the image shape and the number of training "
                            "images, and the run says which and why. classic: tutorial CNN, "
                            "Adam, early stopping. fast: the fast CIFAR-10 recipe (patch "
                            "whitening, 3-block BN/GELU net, one-cycle SGD, label smoothing, "
                            "lookahead, flip+translate TTA, bfloat16). fast-gray: the same "
                            "blocks narrower, for small grayscale images, translations only. "
                            "Default %(default)s")
    group.add_argument("--model", choices=MODELS)
    group.add_argument("--epochs", type=int, help="max epochs (classic: early stopping may "
                                                  "end sooner)")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--learning-rate", type=float, help="(peak) learning rate")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction,
                       help="horizontal flips while training, and flip test-time "
                            "augmentation in serving (off for digits: not mirror-symmetric)")
    group.add_argument("--translate", type=float,
                       help="max random shift while training, as a fraction of the image size")
    group.add_argument("--precision", choices=PRECISIONS)
    group.add_argument("--warmup", choices=WARMUPS,
                       help="TF Serving warm-up requests in each pushed model: real (the first "
                            "eval images, default) or synthetic (noise images of the model's "
                            "shape, for data that must not leave the training environment)")
    group.add_argument("--distribution", choices=DISTRIBUTIONS,
                       help="tf.distribute strategy: mirrored (local GPUs or logical CPUs), "
                            "multi_worker (workers from TF_CONFIG); default none")
    group.add_argument("--skip-if-unchanged", action="store_true",
                       help="hand on the served model instead of training when the data gate "
                            "finds the data's statistics equal to its training data's and the "
                            "training config is the same (the report says why either way)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       dest="settings",
                       help="any other training setting (trainer/config.py TrainerConfig), "
                            "e.g. --set widths=16,32,64 --set tta_flip=false; repeatable, "
                            "applied last")
    group.add_argument("--cache-budget", type=_cache_budget, default=DEFAULT_CACHE_BUDGET,
                       metavar="SIZE",
                       help="memory for the decoded train and eval images: a size (6GiB, "
                            "500MB) or a share of the memory available when training starts "
                            "(default %(default)s). Data that fits is cached in memory (as "
                            "uint8 where the Transform graph allows); larger data is streamed "
                            "from the TFRecords every epoch and shuffled within the budget")


def _cache_budget(text: str) -> str:
    """argparse type: a budget as trainer.memory reads it (exit 2 with its message if not)."""
    from trainer.memory import check_budget

    try:
        return check_budget(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1 is needed, got {text!r}")
    return number


def _span(text: str) -> int | str:
    from pipeline.spans import parse_span

    try:
        return parse_span(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_ingest_args(parser: argparse.ArgumentParser) -> None:
    from pipeline.decode import DEFAULT_MAX_PIXELS
    from pipeline.ingest import DEFAULT_EVAL_FRACTION, DEFAULT_TEST_FRACTION

    group = parser.add_argument_group("ingest", "How an image folder becomes TFRecords.")
    group.add_argument("--eval-fraction", type=float, default=DEFAULT_EVAL_FRACTION,
                       help="share of each class carved for the eval split (early stopping) "
                            "when the folder has no eval/val folder; in (0, 0.5], "
                            "default %(default)s")
    group.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION,
                       help="share of each class held out as the test split (reported "
                            "accuracy) when the folder has no split folders; in (0, 0.5], "
                            "default %(default)s")
    group.add_argument("--resize", metavar="HxW",
                       help="accept images of different sizes; the model gets HxW")
    group.add_argument("--channels", type=int, choices=(1, 3),
                       help="accept gray and colour images together; the model gets N (alpha "
                            "is always dropped: a 4-channel model could not take JPEGs)")
    group.add_argument("--skip-bad", action="store_true",
                       help="leave out unreadable/corrupt/oversized/non-image files instead of "
                            "failing; they are listed with the reason in OUT/quarantine.json")
    group.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                       help="refuse images with more pixels (decompression bombs), before "
                            "decoding them; default %(default)s")
    group.add_argument("--allow-duplicates", action="store_true",
                       help="keep images found in more than one split (same decoded pixels) "
                            "instead of refusing them as leakage; counted in dataset.json")


def _ingest_policy(args: argparse.Namespace) -> dict:
    from pipeline.ingest import parse_resize

    return {"resize": parse_resize(args.resize) if args.resize else None,
            "channels": args.channels, "skip_bad": args.skip_bad,
            "max_pixels": args.max_pixels, "allow_duplicates": args.allow_duplicates}


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    from pipeline.config import DEFAULT_SCHEMA, EvalThresholds

    thresholds = EvalThresholds()
    parser.add_argument("--pipeline-name", default="image-classifier")
    parser.add_argument("--model-name", help="name under the serving dir (default: dataset name)")
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA,
                        help="curated schema imported by ImportSchemaGen (default %(default)s)")
    parser.add_argument("--min-accuracy", type=float, default=thresholds.min_accuracy,
                        help="bless only above this eval accuracy (default %(default)s)")
    parser.add_argument("--max-regression", type=float, default=thresholds.max_regression,
                        help="bless only if accuracy drops at most this much below the last "
                             "blessed model (default %(default)s)")
    parser.add_argument("--allow-anomaly", action="append", default=[], metavar="TYPE",
                        help="accept this ExampleValidator anomaly type instead of failing the "
                             "run (repeatable), e.g. FEATURE_TYPE_LOW_FRACTION_PRESENT")
    parser.add_argument("--max-label-drift", type=float, default=0.1,
                        help="fail when a split's label distribution moves further than this "
                             "(L-infinity) from the last accepted data; 0 turns it off "
                             "(default %(default)s)")
    parser.add_argument("--accept-new-classes", action="store_true",
                        help="let data whose class names differ from the served model's through "
                             "the gate (added, removed or renamed classes shift label ids); the "
                             "new model is then not compared with the served one")
    _add_trainer_args(parser)


def _add_store_args(parser: argparse.ArgumentParser) -> None:
    """Where `run` kept its ML Metadata store, for the commands that read it."""
    parser.add_argument("--root", type=Path, default=Path("tfx_root"),
                        help="pipeline root given to `run` (default %(default)s)")
    parser.add_argument("--pipeline-name", default="image-classifier")
    parser.add_argument("--json", action="store_true")


def _metadata_path(args: argparse.Namespace) -> str:
    from pipeline.workspace import Workspace

    metadata = Workspace(args.root.resolve(), args.pipeline_name).metadata_path
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata}: no runs of {args.pipeline_name!r} under "
                                f"{args.root} (pass the --root and --pipeline-name of `run`)")
    return str(metadata)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="TFX image classification pipeline: ingest, validate, transform, train, "
                    "evaluate and push to a TF Serving model directory.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow/TFX/Beam logs on the console")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="image folder -> sharded gzip TFRecords + class map",
                       description="Turn SRC/<split>/<class>/*.jpg or SRC/<class>/*.jpg into "
                                   "TFRecords of tf.Example{image: bytes, label: int64}.",
                       epilog="examples:\n  python -m pipeline ingest ~/flowers data/flowers\n"
                              "  python -m pipeline ingest ~/new-flowers data/flowers-spans "
                              "--span auto",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--workers", type=int, help="parallel writer processes (default: CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--span", type=_span, metavar="N|auto",
                   help="write a span of OUT: OUT/span-N/ (auto: the next number). `run "
                        "--data OUT` trains on the newest span")
    p.add_argument("--overwrite-span", action="store_true",
                   help="with --span N: replace that span if it exists (atomically)")
    p.add_argument("--json", action="store_true",
                   help="print what was written (counts per split and class, shape) as JSON")
    _add_ingest_args(p)

    p = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner)",
                       description="Build and run the pipeline with LocalDagRunner and a SQLite "
                                   "ML Metadata store; re-runs reuse TFX caching.",
                       epilog="examples:\n  python -m pipeline run\n"
                              "  python -m pipeline run --data ~/flowers --flip --epochs 40",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--dataset", default="digits", help="built-in dataset (default digits)")
    source.add_argument("--data", type=Path,
                        help="an image folder, or TFRecords written by `ingest`")
    p.add_argument("--root", type=Path, default=Path("tfx_root"),
                   help="pipeline root, metadata, data and logs (default %(default)s)")
    p.add_argument("--serving-dir", type=Path, default=Path("serving_model"),
                   help="TF Serving base dir; models go to <dir>/<model-name>/<version>/")
    _add_ingest_args(p)
    p.add_argument("--no-cache", action="store_true", help="re-execute every component")
    p.add_argument("--span", type=_positive_int, default=0, metavar="N",
                   help="with --data ROOT of spans: train on span N (default: the newest)")
    p.add_argument("--spans", type=_positive_int, default=1, metavar="K",
                   help="with --data ROOT of spans: fit the train images of the K newest "
                        "spans up to it (a rolling window; default 1). Statistics, the data "
                        "gate, early stopping and the evaluation use the newest span alone")
    p.add_argument("--warm-start", action="store_true",
                   help="start from the served model's weights when its class map and "
                        "architecture match (else from scratch, saying why), and train "
                        "warm_start_epochs (default 0.4, --set) of the epochs")
    p.add_argument("--beam", choices=("in-process", "direct-multi"), default="in-process",
                   help="where StatisticsGen, Transform and the Evaluator run: in this process "
                        "(default; fastest on 2 cores) or DirectRunner worker processes, one "
                        "per core (direct-multi)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    _add_pipeline_args(p)

    from pipeline.serving_client import DEFAULT_TIMEOUT_S

    p = sub.add_parser("predict", help="classify images with the newest pushed model, "
                                       "in-process or through a TF Serving server",
                       epilog="examples:\n"
                              "  python -m pipeline predict --model-dir serving_model/digits "
                              "a.png b.jpg\n"
                              "  python -m pipeline predict --server localhost:8501 "
                              "--model-name digits a.png\n"
                              "  python -m pipeline predict --server localhost:8500 --grpc "
                              "--model-name digits a.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-dir", type=Path,
                        help="<serving-dir>/<model-name> (newest version is used) or a version "
                             "dir, loaded in-process")
    target.add_argument("--server", metavar="HOST:PORT",
                        help="a TF Serving server: REST port (8501), or gRPC port (8500) with "
                             "--grpc")
    p.add_argument("images", type=Path, nargs="+")
    p.add_argument("--model-name", help="model name on the server (with --server)")
    p.add_argument("--model-version", type=int, metavar="N",
                   help="a version the server has (with --server; default: the newest "
                        "AVAILABLE one, which is what TF Serving serves)")
    p.add_argument("--grpc", action="store_true", help="use gRPC instead of REST")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds for the whole call with --server: waiting for the server to "
                        "answer and for a version to become AVAILABLE (it says which state it "
                        "waits on), then the prediction (default %(default)s)")
    p.add_argument("--labels", type=Path,
                   help="class names, one per line (the model's assets/labels.txt), to name "
                        "the top-k classes of server answers")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("compile-kfp", help="compile the pipeline to a Kubeflow Pipelines v2 spec",
                       epilog="example: python -m pipeline compile-kfp --output pipeline.json "
                              "--pipeline-root gs://bucket/tfx --data-root gs://bucket/data")
    p.add_argument("--output", type=Path, help="where to write the spec (PipelineJob JSON)")
    p.add_argument("--check", nargs="?", const=True, default=False, metavar="SPEC",
                   help="check the spec against the open-source KFP backend's rules and load it "
                        "with the KFP SDK: the one just compiled, or an existing SPEC file "
                        "(then nothing is compiled); exit 1 naming each task that breaks one")
    p.add_argument("--image", default="tfx-image-classification:latest",
                   help="container image with this project installed")
    p.add_argument("--pipeline-root", default="gs://YOUR_BUCKET/tfx-image-classification")
    p.add_argument("--data-root", default="gs://YOUR_BUCKET/data/digits",
                   help="TFRecords written by `ingest`, as seen from the cluster")
    p.add_argument("--serving-dir", default="gs://YOUR_BUCKET/serving_model")
    spans = p.add_argument_group(
        "spans", "For a --data-root of span-N folders (ingest --span): the span and the window "
                 "become run-time parameters `span` and `span-window`, and ExampleGen is never "
                 "cached (the newest span changes between runs of one data root).")
    spans.add_argument("--span-root", action="store_true",
                       help="the data root holds span-N folders (implied by --span/--spans)")
    spans.add_argument("--span", type=_positive_int, default=0, metavar="N",
                       help="default of `span`: the span to train on (default 0: the newest)")
    spans.add_argument("--spans", type=_positive_int, default=1, metavar="K",
                       help="default of `span-window`: spans whose train images are fitted")
    p.add_argument("--dataset-info", type=Path,
                   help="dataset.json from `ingest` (class names, image shape); default digits")
    p.add_argument("--image-schema",
                   help="where the cluster reads --schema: a path inside the image or a gs:// "
                        "URI (default: the image's copy, for a schema under this repository)")
    beam = p.add_argument_group("Beam", "Where StatisticsGen, Transform and Evaluator run.")
    beam.add_argument("--beam", choices=("direct", "dataflow", "flink", "spark"),
                      default="direct", help="DirectRunner in the pod (default), Dataflow, or "
                                             "a Flink/Spark job server via the portable runner")
    beam.add_argument("--project", help="GCP project (dataflow)")
    beam.add_argument("--region", help="GCP region (dataflow)")
    beam.add_argument("--job-endpoint", help="Flink/Spark job server HOST:PORT")
    _add_pipeline_args(p)

    p = sub.add_parser("runs", help="list past runs from ML Metadata",
                       epilog="example: python -m pipeline runs --json")
    _add_store_args(p)

    p = sub.add_parser("lineage", help="what produced a pushed model version (from MLMD)",
                       epilog="example: python -m pipeline lineage --model 1795380628")
    p.add_argument("--model", required=True, metavar="VERSION",
                   help="the version folder name under <serving-dir>/<model-name>/")
    _add_store_args(p)

    p = sub.add_parser("report", help="write the HTML report of a run (default: the latest)",
                       description="A self-contained HTML report of one run: dataset, data "
                                   "validation and drift, training curves, evaluation against "
                                   "the baseline with the blessing, misclassified eval images, "
                                   "and where the model was pushed. `run` writes it too.",
                       epilog="examples:\n  python -m pipeline report\n"
                              "  python -m pipeline report --run 2026-11-22T20:49:46.582627 "
                              "--output /tmp/report\n"
                              "  python -m pipeline report --json | jq .evaluation.accuracy",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="RUN_ID",
                   help="a run id as `runs` lists it (default: the latest run)")
    p.add_argument("--output", type=Path,
                   help="folder for report.html, report.json and the PNGs "
                        "(default <root>/reports/<pipeline-name>/<run>/)")
    p.add_argument("--max-eval-images", type=int, default=2000,
                   help="eval images searched for misclassifications (default %(default)s)")
    _add_store_args(p)

    p = sub.add_parser("schema", help="write the curated schema for another class count",
                       epilog="example: python -m pipeline schema --num-classes 5 "
                              "--output schema/flowers.pbtxt")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--output", type=Path, required=True)
    return parser


def _trainer_config(args: argparse.Namespace, class_names, image_shape,
                    split_counts: dict[str, int]):
    """The recipe (chosen from the data with --recipe auto) with the CLI's overrides on top.

    Every split must hold at least one batch: a batch size given on the command line is
    refused otherwise, a recipe's own is halved until it fits.
    """
    from trainer.config import AUTO, choose_recipe, fit_batch_size, from_recipe, parse_settings

    recipe, reason = args.recipe, "chosen with --recipe"
    if recipe == AUTO:
        recipe, reason = choose_recipe(image_shape, split_counts.get("train", 0))
    smallest = min(split_counts, key=split_counts.get)
    if args.batch_size is not None and args.batch_size > split_counts[smallest]:
        raise ValueError(
            f"the {smallest} split has {split_counts[smallest]} images, fewer than one batch "
            f"(--batch-size {args.batch_size}): pass a smaller --batch-size, or add images to "
            f"the {smallest} split"
        )
    config = from_recipe(
        recipe,
        image_shape,
        class_names,
        recipe_reason=reason,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        augment_flip=args.flip,
        tta_flip=args.flip,
        augment_translate=args.translate,
        precision=args.precision,
        distribution=args.distribution,
        warmup=args.warmup,
        cache_budget=args.cache_budget,
        skip_if_unchanged=args.skip_if_unchanged,
    )
    if args.settings:
        config = config.replace(**parse_settings(args.settings))
    _check_cache_budget(config)
    fitted = fit_batch_size(config.batch_size, split_counts[smallest])
    if fitted == config.batch_size:
        return config
    return config.replace(batch_size=fitted, recipe_reason=(
        f"{reason}; batch size {fitted} so that one batch fits in the "
        f"{split_counts[smallest]}-image {smallest} split"))


def _check_cache_budget(config) -> None:
    """Fails before anything runs if not one image fits the budget (the Trainer checks again,
    against the memory it has then)."""
    from trainer import memory
    from trainer.data import check_image_fits

    # uint8, the smallest the Trainer stores: the Trainer itself knows whether it can.
    check_image_fits(config.image_shape, 1, memory.resolve_budget(config.cache_budget),
                     config.cache_budget)


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipeline.ingest import QUARANTINE_FILE, ingest

    start = time.monotonic()
    options = {"eval_fraction": args.eval_fraction, "test_fraction": args.test_fraction,
               "workers": args.workers, **_ingest_policy(args)}
    out = args.out
    if args.span is not None:
        from pipeline.spans import ingest_span, span_dir

        number, info = ingest_span(args.src, args.out, args.span, args.overwrite_span,
                                   **options)
        out = span_dir(args.out.resolve(), number)
    else:
        info = ingest(args.src, args.out, overwrite=args.overwrite, **options)
    total = sum(info.split_counts.values())
    elapsed = time.monotonic() - start
    quarantine = out / QUARANTINE_FILE
    skipped = len(json.loads(quarantine.read_text())) if quarantine.is_file() else 0
    if args.json:
        print(json.dumps({"output": str(out), "class_names": list(info.class_names),
                          "image_shape": list(info.image_shape),
                          "split_counts": info.split_counts,
                          "per_class_counts": info.per_class_counts, "skipped_files": skipped,
                          "seconds": round(elapsed, 2)}, indent=2))
        return EXIT_OK
    print(f"wrote {total} images ({info.split_counts}) of {info.num_classes} classes, "
          f"shape {info.image_shape}, to {out} in {elapsed:.1f}s")
    if skipped:
        print(f"skipped {skipped} bad file(s), listed with the reason in {quarantine}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.lock import RunLockedError, run_lock
    from pipeline.workspace import Workspace

    workspace = Workspace(args.root.resolve(), args.pipeline_name)
    log_file = workspace.new_log_file()
    logs.configure(log_file, args.verbose)
    try:
        with run_lock(workspace.lock_path, f"pipeline {args.pipeline_name!r} in {args.root}"):
            return _run_pipeline(args, workspace, log_file)
    except RunLockedError as e:
        log.error("%s", e)
        return EXIT_BUSY


def _run_pipeline(args: argparse.Namespace, workspace, log_file: Path) -> int:
    from pipeline.config import LOCAL_BEAM_PRESETS, EvalThresholds, PipelineConfig
    from pipeline.ingest import TEST, TRAIN, TWO_SPLITS_WARNING, check_fraction, load_dataset_info
    from pipeline.schema import label_classes, schema_for_classes
    from pipeline.spans import SpanError, is_span_root, local_window, span_dir
    from pipeline.workspace import prepare_data

    check_fraction("--eval-fraction", args.eval_fraction)
    check_fraction("--test-fraction", args.test_fraction)
    start = time.monotonic()
    name, data_root, info = prepare_data(
        workspace, None if args.data else args.dataset, args.data, args.eval_fraction,
        test_fraction=args.test_fraction, span=args.span, **_ingest_policy(args),
    )
    spans = is_span_root(data_root)
    window = local_window(data_root, args.span, args.spans) if spans else []
    if args.spans > 1 and not spans:
        raise SpanError(f"--spans {args.spans}: {data_root} holds no span-N folders (ingest "
                        "with --span writes them)")
    schema = schema_for_classes(args.schema, info.num_classes,
                                workspace.schema_path(info.num_classes))
    if schema != args.schema:
        log.info("[pipeline] schema: %s admits %d classes, the data has %d: using %s (the same "
                 "schema, label domain [0, %d))", args.schema, label_classes(args.schema),
                 info.num_classes, schema, info.num_classes)
    if TEST not in info.split_counts:
        log.warning("warning: " + TWO_SPLITS_WARNING, data_root)
    counts = dict(info.split_counts)
    if window[:-1]:
        history = sum(load_dataset_info(span_dir(data_root, n)).split_counts.get(TRAIN, 0)
                      for n in window[:-1])
        log.info("[pipeline] spans %s: the Trainer fits the train images of all %d (%d from "
                 "spans %s); statistics, gate and evaluation read span %d", window, len(window),
                 history, window[:-1], window[-1])
        counts[TRAIN] += history
    trainer = _trainer_config(args, info.class_names, info.image_shape, counts)
    log.info("[pipeline] recipe %s: %s", trainer.recipe, trainer.recipe_reason)
    thresholds = EvalThresholds(args.min_accuracy, args.max_regression)
    config = PipelineConfig(
        pipeline_name=args.pipeline_name,
        pipeline_root=str(workspace.pipeline_root),
        data_root=str(data_root),
        serving_dir=str(args.serving_dir.resolve()),
        model_name=args.model_name or name,
        trainer=trainer,
        schema_path=str(schema.resolve()),
        splits=tuple(info.split_counts),
        spans=spans,
        target_span=args.span,
        span_window=args.spans,
        thresholds=thresholds,
        allowed_anomaly_types=tuple(args.allow_anomaly),
        max_label_drift=args.max_label_drift,
        accept_new_classes=args.accept_new_classes,
        metadata_path=str(workspace.metadata_path),
        enable_cache=not args.no_cache,
        beam_pipeline_args=LOCAL_BEAM_PRESETS[args.beam],
    )
    if args.warm_start:
        config = dataclasses.replace(config, trainer=trainer.replace(
            warm_start_from=config.push_base_directory))
    log.info("data: %s (%s), %d classes, image shape %s",
             data_root, info.split_counts, info.num_classes, info.image_shape)
    log.info("full log: %s", log_file)

    from components.data_gate import DataValidationError
    from pipeline.local_runner import run_local
    from pipeline.summary import format_summary, summarize_run

    try:
        run_local(config)
    except DataValidationError as e:
        log.error("%s\nfull log: %s", e, log_file)
        _print_report_path(_write_run_report(workspace))
        return EXIT_DATA_REJECTED
    except Exception as e:  # noqa: BLE001 - reported with the log location, then exit 1
        failed = _failed_components(config.metadata_path, config.pipeline_name)
        where = f" in {', '.join(failed)}" if failed else ""
        log.error("pipeline failed%s: %s: %s\nfull log: %s", where, e.__class__.__name__, e,
                  log_file)
        logging.getLogger("pipeline.trace").info("traceback", exc_info=True)
        _print_report_path(_write_run_report(workspace))
        return EXIT_FAILED
    summary = summarize_run(config.metadata_path, config.pipeline_name)
    report = _write_run_report(workspace)
    if report:
        summary.report_files["html"] = str(report)
    if args.json:
        print(summary.to_json())
        return EXIT_OK
    for line in format_summary(summary, thresholds.min_accuracy, thresholds.max_regression):
        print(line)
    if summary.pushed:
        print(f"Serve it: tensorflow_model_server --model_name={config.model_name} "
              f"--model_base_path={config.push_base_directory} --rest_api_port=8501")
    print(f"Wall time: {time.monotonic() - start:.0f}s. Full log: {log_file}")
    _print_report_path(report)
    return EXIT_OK


def _write_run_report(workspace) -> Path | None:
    """The latest run's HTML report; a failure to write it is logged, never fatal to the run."""
    from pipeline.report import collect, write_report

    start = time.monotonic()
    try:
        report = collect(str(workspace.metadata_path), workspace.pipeline_name)
        path = write_report(report, workspace.report_dir(report["run_id"]))
    except Exception as e:  # noqa: BLE001 - the run's outcome stands; the report is extra
        log.warning("could not write the run report: %s: %s", e.__class__.__name__, e)
        logging.getLogger("pipeline.trace").info("traceback", exc_info=True)
        return None
    log.info("[pipeline] report: written in %.1fs", time.monotonic() - start)
    return path


def _print_report_path(report: Path | None) -> None:
    if report:
        print(f"Report: {report}")


def _failed_components(metadata_path: str, pipeline_name: str) -> list[str]:
    """Components of the latest run that failed, for the error message; [] if none recorded."""
    from pipeline.summary import summarize_run

    try:
        return summarize_run(metadata_path, pipeline_name).failed_components
    except Exception:  # noqa: BLE001 - the store may not even exist yet
        return []


def _predict_server(args: argparse.Namespace):
    from pipeline.predict import Prediction
    from pipeline.serving_client import predict_grpc, predict_rest

    if not args.model_name:
        raise ValueError("--server needs --model-name (the name the server serves the model as)")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"image files not found: {missing}")
    labels = args.labels.read_text(encoding="utf-8").splitlines() if args.labels else None
    call = predict_grpc if args.grpc else predict_rest
    answer = call(args.server, args.model_name, [p.read_bytes() for p in args.images],
                  timeout=args.timeout, version=args.model_version)
    results = []
    for path, served in zip(args.images, answer.predictions, strict=True):
        order = sorted(range(len(served.probabilities)), key=lambda i: -served.probabilities[i])
        top = [(labels[i] if labels else f"#{i}", served.probabilities[i])
               for i in order[:args.top_k]]
        results.append(Prediction(str(path), served.class_name, served.class_id, top))
    where = (f"{args.model_name} version {answer.version} on {args.server} "
             f"({'gRPC' if args.grpc else 'REST'})")
    return where, results


def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.predict import predict_files

    if args.server:
        version, predictions = _predict_server(args)
    elif args.model_version is not None:
        raise ValueError("--model-version picks a version on a server: it needs --server "
                         "(with --model-dir, pass the version folder instead)")
    else:
        version, predictions = predict_files(args.model_dir, args.images, args.top_k)
    if args.json:
        print(json.dumps({"model_version": str(version),
                          "predictions": [p.__dict__ for p in predictions]}, indent=2))
        return EXIT_OK
    print(f"model: {version}")
    for p in predictions:
        top = ", ".join(f"{name} {prob:.3f}" for name, prob in p.top)
        print(f"{p.path}: {p.class_name}  ({top})")
    return EXIT_OK


def cmd_compile_kfp(args: argparse.Namespace) -> int:
    from kubeflow.compile import beam_args, compile_pipeline, image_path, kfp_config
    from pipeline.config import EvalThresholds
    from pipeline.ingest import load_dataset_info
    from pipeline.schema import check_num_classes

    if isinstance(args.check, str):
        return _check_kfp_spec(Path(args.check), None)
    if args.output is None:
        raise ValueError("compile-kfp needs --output (or --check SPEC to check an existing spec)")
    if args.dataset_info:
        info = load_dataset_info(args.dataset_info.parent)
        class_names, image_shape = info.class_names, info.image_shape
        split_counts = info.split_counts
        model_name = args.model_name or args.dataset_info.parent.name
        source = str(args.dataset_info)
    else:
        from pipeline.datasets import DIGITS_CLASS_NAMES, DIGITS_IMAGE_SHAPE, DIGITS_SPLIT_COUNTS

        class_names, image_shape = DIGITS_CLASS_NAMES, DIGITS_IMAGE_SHAPE
        split_counts = DIGITS_SPLIT_COUNTS
        model_name = args.model_name or "digits"
        source = "the built-in digits dataset (no --dataset-info)"
    try:
        check_num_classes(args.schema, len(class_names))
    except ValueError as e:
        raise ValueError(f"{e} (classes from {source})") from None
    config = kfp_config(
        pipeline_name=args.pipeline_name,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_dir=args.serving_dir,
        model_name=model_name,
        trainer=_trainer_config(args, class_names, image_shape, split_counts),
        schema_path=args.image_schema or image_path(args.schema),
        splits=tuple(split_counts),
        spans=args.span_root or bool(args.span) or args.spans > 1,
        target_span=args.span,
        span_window=args.spans,
        thresholds=EvalThresholds(args.min_accuracy, args.max_regression),
        allowed_anomaly_types=tuple(args.allow_anomaly),
        max_label_drift=args.max_label_drift,
        accept_new_classes=args.accept_new_classes,
        beam_pipeline_args=beam_args(
            args.beam, project=args.project, region=args.region, job_endpoint=args.job_endpoint,
            image=args.image, pipeline_root=args.pipeline_root.rstrip("/"),
        ),
    )
    compile_pipeline(config, args.output, image=args.image)
    print(f"wrote Kubeflow Pipelines v2 spec {args.output} (image {args.image})")
    if args.check:
        return _check_kfp_spec(args.output, args.image)
    return EXIT_OK


def _check_kfp_spec(path: Path, image: str | None) -> int:
    from kubeflow.conformance import check_file

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such spec file")
    violations = check_file(path, image)
    for violation in violations:
        print(violation.line(), file=sys.stderr)
    if violations:
        tasks = sorted({v.task for v in violations})
        print(f"{path}: {len(violations)} problem(s) for open-source Kubeflow Pipelines, in "
              f"{', '.join(tasks)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{path}: passes the open-source KFP v2 backend's rules and loads with the KFP SDK")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from pipeline.summary import list_runs

    runs = list_runs(_metadata_path(args), args.pipeline_name)
    if args.json:
        print(json.dumps([json.loads(r.to_json()) for r in runs], indent=2))
        return EXIT_OK
    print(f"{'run':28} {'spans':6} {'accuracy':>8} {'on':5} {'recipe':9}  {'blessed':7}  "
          "pushed")
    for run in runs:
        failed = run.failed_components
        accuracy = f"{run.accuracy:.4f}" if run.accuracy is not None else "-"
        split = run.evaluation_split or "-"
        recipe = run.recipe or "-"
        blessed = {True: "yes", False: "no", None: "-"}[run.blessed]
        if failed:
            pushed = f"failed in {', '.join(failed)}"
        elif run.pushed:
            version = (run.pushed_destination or "").rsplit("/", 1)[-1]
            pushed = f"version {version}" + (" (already served)" if run.already_served else "")
        else:
            pushed = "no"
        spans = ",".join(map(str, run.spans)) if run.spans else "-"
        print(f"{run.run_id:28} {spans:6} {accuracy:>8} {split:5} {recipe:9}  {blessed:7}  "
              f"{pushed}")
    return EXIT_OK


def cmd_lineage(args: argparse.Namespace) -> int:
    from pipeline.lineage import LineageError, model_lineage, warm_start_chain

    try:
        lineage = model_lineage(_metadata_path(args), args.model)
    except LineageError as e:
        raise ValueError(str(e)) from e
    lineage["warm_start_chain"] = warm_start_chain(_metadata_path(args), args.model)
    if args.json:
        print(json.dumps(lineage, indent=2))
        return EXIT_OK
    for key, value in lineage.items():
        if key == "training_config" and isinstance(value, dict):
            shown = ("recipe", "model", "epochs", "batch_size")
            value = ", ".join(f"{k}={value[k]}" for k in shown if k in value)
        if key == "warm_start_chain":
            value = " <- ".join(_chain_link(link) for link in value)
        print(f"{key:18} {value}")
    return EXIT_OK


def _chain_link(link: dict) -> str:
    """One version of a warm-start chain: its spans, or why the chain stops there."""
    if link.get("missing"):
        return f"{link['version']} (not in this metadata store)"
    spans = f" (spans {','.join(map(str, link['spans']))})" if link.get("spans") else ""
    scratch = "" if link.get("warm_started_from") is not None else " [from scratch]"
    return f"{link['version']}{spans}{scratch}"


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report import collect, write_report
    from pipeline.workspace import Workspace

    try:
        report = collect(_metadata_path(args), args.pipeline_name, args.run)
    except LookupError as e:
        raise ValueError(f"{e} (see `python -m pipeline runs`)") from e
    out_dir = args.output or Workspace(args.root.resolve(), args.pipeline_name).report_dir(
        report["run_id"]
    )
    path = write_report(report, out_dir, max_eval_images=args.max_eval_images)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report_path(path)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from pipeline.schema import write_schema

    write_schema(args.num_classes, args.output)
    print(f"wrote {args.output}: review it, then pass it to `run --schema {args.output}`")
    return EXIT_OK


COMMANDS = {
    "ingest": cmd_ingest,
    "run": cmd_run,
    "predict": cmd_predict,
    "compile-kfp": cmd_compile_kfp,
    "runs": cmd_runs,
    "lineage": cmd_lineage,
    "report": cmd_report,
    "schema": cmd_schema,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.quiet_third_party(args.verbose)
    if args.command != "run":
        logs.configure(None, args.verbose)
    from pipeline.ingest import IngestError
    from pipeline.predict import ModelDirError
    from pipeline.serving_client import RequestError, ServingError

    # RequestError: the server says the model, version, signature or input is wrong.
    bad_input: tuple[type[Exception], ...] = (IngestError, ModelDirError, FileNotFoundError,
                                              ValueError, RequestError)
    try:
        return COMMANDS[args.command](args)
    except bad_input as e:
        log.error("error: %s", e)
        return EXIT_BAD_INPUT
    except ServingError as e:
        log.error("error: %s", e)
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
