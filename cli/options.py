"""Argument groups and argument types that several commands take."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_trainer_args(parser: argparse.ArgumentParser) -> None:
    from trainer.backbones.registry import BACKBONES, DEFAULT_BACKBONE
    from trainer.config import (
        Distribution,
        ExportConfig,
        ModelKind,
        Precision,
        TfliteMode,
        TuneAlgorithm,
        TuningConfig,
        Warmup,
    )
    from trainer.memory import DEFAULT_CACHE_BUDGET
    from trainer.recipes import AUTO, DEFAULT_TIME_BUDGET_MINUTES, RECIPES

    group = parser.add_argument_group(
        "training", "Unset options take the recipe's value (see trainer/recipes.py RECIPES)."
    )
    group.add_argument("--recipe", choices=[AUTO, *sorted(RECIPES)], default=AUTO,
                       help="auto: chosen from the image shape, the number of training "
                            "images, whether training computes in bfloat16 and this host's "
                            "speed against --time-budget, and the run says which and why. "
                            "classic: tutorial CNN, "
                            "Adam, early stopping. fast: the fast CIFAR-10 recipe (patch "
                            "whitening, 3-block BN/GELU net, one-cycle SGD, label smoothing, "
                            "lookahead, flip+translate TTA, bfloat16 where the CPU has it). "
                            "fast-wide: fast 1.25x wider, trained by Muon (auto's choice for "
                            "photos where training runs in bfloat16 within the budget). "
                            "fast-gray: two networks of the same blocks, narrower, averaged, for "
                            "small grayscale images, translations only. "
                            "Default %(default)s")
    group.add_argument("--time-budget", type=positive_float, default=DEFAULT_TIME_BUDGET_MINUTES,
                       metavar="MINUTES",
                       help="with --recipe auto, the Trainer's time to aim for: of the "
                            "recipes that suit the images, the most accurate whose fit, "
                            "estimated from this host's measured matrix-product rate, fits "
                            "MINUTES (the cheapest when none does). compile-kfp cannot measure "
                            "the pods and chooses by --precision alone. Default %(default)s")
    group.add_argument("--backbone", choices=sorted(BACKBONES), metavar="NAME",
                       help="a pretrained network for the transfer recipe (implies it): "
                            f"{', '.join(sorted(BACKBONES))}. efficientnet_lite0's ImageNet "
                            "weights install with the product; the Keras ones download once "
                            "(or pass --backbone-weights). Default for photos: "
                            f"{DEFAULT_BACKBONE}")
    group.add_argument("--backbone-weights", metavar="PATH|imagenet|none",
                       help="the backbone's weights: imagenet (default), none (random) or a "
                            "file (efficientnet_lite0: a PyTorch state dict .pth; Keras "
                            "backbones: the .h5 Keras downloads)")
    group.add_argument("--input-size", type=int, metavar="N",
                       help="the backbone's square input side (default: its own, 224); "
                            "images are resized to it in the Transform graph")
    group.add_argument("--model", choices=[c.value for c in ModelKind])
    group.add_argument("--epochs", type=int, help="max epochs (classic: early stopping may "
                                                  "end sooner)")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--refit", action=argparse.BooleanOptionalAction,
                       help="train the final model on train + eval with the recipe's fixed "
                            "schedule, once the recipe was chosen on eval (as airbench and "
                            "most papers do); the model is then scored on test alone. Only "
                            "for fixed-schedule recipes (not classic's early stopping nor "
                            "transfer's best-epoch choice, which look at eval), and only "
                            "where the data has a test split. Default: the recipe's")
    group.add_argument("--learning-rate", type=float, help="(peak) learning rate")
    group.add_argument("--flip", action=argparse.BooleanOptionalAction,
                       help="horizontal flips while training, and flip test-time "
                            "augmentation in serving (off for digits: not mirror-symmetric)")
    group.add_argument("--translate", type=float,
                       help="max random shift while training, as a fraction of the image size")
    group.add_argument("--precision", choices=[c.value for c in Precision])
    group.add_argument("--warmup", choices=[c.value for c in Warmup],
                       help="TF Serving warm-up requests in each pushed model: real (the first "
                            "eval images, default) or synthetic (noise images of the model's "
                            "shape, for data that must not leave the training environment)")
    group.add_argument("--tflite", choices=[c.value for c in TfliteMode],
                       help="the TFLite model written beside the SavedModel for apps on "
                            "devices: float32, float16 (weights), dynamic (int8 weights), int8 "
                            "(full integer, calibrated on train images) or none; scored on the "
                            "evaluation split and pushed with the version when within "
                            f"--max-tflite-drop. Default {TfliteMode(ExportConfig().tflite)} "
                            "(docs/tflite.md)")
    group.add_argument("--distribution", choices=[c.value for c in Distribution],
                       help="tf.distribute strategy: mirrored (local GPUs or logical CPUs), "
                            "multi_worker (workers from TF_CONFIG); default none")
    group.add_argument("--skip-if-unchanged", action="store_true",
                       help="hand on the served model instead of training when the data gate "
                            "finds the data's statistics equal to its training data's and the "
                            "training config is the same (the report says why either way)")
    tuning = TuningConfig()
    group.add_argument("--tune", type=int, default=tuning.trials, metavar="TRIALS",
                       help="TFX's Tuner before the Trainer: KerasTuner tries up to TRIALS "
                            "settings of the recipe's search space (learning rate, width, "
                            "epochs; a backbone's head dropout, fine-tuned blocks, learning "
                            "rate), each trained on train and scored on eval; the Trainer "
                            "trains the best (docs/training.md). Default %(default)s: off")
    group.add_argument("--tune-budget", type=float, default=tuning.budget_minutes,
                       metavar="MINUTES",
                       help="tune for at most MINUTES: no trial starts that would overrun it "
                            "(alone, trials until the budget; a budget too small for one "
                            "trial is refused). Default %(default)s: none")
    group.add_argument("--tune-algorithm", choices=[c.value for c in TuneAlgorithm],
                       default=str(tuning.algorithm),
                       help="random (default) or hyperband (which also decides each trial's "
                            "epochs)")
    group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       dest="settings",
                       help="any other training setting (trainer/config.py TrainerConfig) by "
                            "its dotted path, e.g. --set model.widths=16,32,64 --set "
                            "evaluation.tta_flip=false, or its flat name (widths=16,32,64); "
                            "repeatable, applied last")
    group.add_argument("--cache-budget", type=cache_budget, default=DEFAULT_CACHE_BUDGET,
                       metavar="SIZE",
                       help="memory for the decoded train and eval images: a size (6GiB, "
                            "500MB) or a share of the memory available when training starts "
                            "(default %(default)s). Data that fits is cached in memory (as "
                            "uint8 where the Transform graph allows); larger data is streamed "
                            "from the TFRecords every epoch and shuffled within the budget")


def cache_budget(text: str) -> str:
    """The argparse type of a budget, as trainer.memory reads it (else exit 2, saying why)."""
    from trainer.memory import check_budget

    try:
        return check_budget(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1 is needed, got {text!r}")
    return number


def positive_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = 0.0
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"a number > 0 is needed, got {text!r}")
    return number


def accuracy_bar(text: str) -> float:
    """An accuracy in [0, 1] (else exit 2 before anything runs, saying why)."""
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"an accuracy between 0 and 1 is needed (0.9 for "
                                         f"90 %), got {text!r}")
    return number


def span_number(text: str) -> int | str:
    from ingest.spans import parse_span

    try:
        return parse_span(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_ingest_args(parser: argparse.ArgumentParser) -> None:
    from ingest.dataset import DEFAULT_EVAL_FRACTION, DEFAULT_TEST_FRACTION
    from ingest.decode import DEFAULT_MAX_PIXELS

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
                       help="the model gets HxW images (Transform resizes them); default: "
                            "the one size every image has, or, when sizes vary, the run "
                            "chooses from the sizes dataset.json summarizes")
    group.add_argument("--channels", type=int, choices=(1, 3),
                       help="the model gets N channels; default: the images' own, or 3 when "
                            "gray and colour are mixed (gray replicated, with a warning; alpha "
                            "is always dropped: a 4-channel model could not take JPEGs)")
    group.add_argument("--skip-bad", action="store_true",
                       help="leave out unreadable/corrupt/oversized/non-image files instead of "
                            "failing; they are listed with the reason in OUT/quarantine.json")
    group.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                       help="refuse images with more pixels (decompression bombs), before "
                            "decoding them; default %(default)s")
    group.add_argument("--max-file-bytes", type=positive_int, metavar="N",
                       help="refuse files larger than N bytes without reading them whole; "
                            "default 8 bytes a pixel of --max-pixels plus 16 MiB (an "
                            "uncompressed 16-bit RGBA PNG at the pixel limit, with metadata)")
    group.add_argument("--allow-duplicates", action="store_true",
                       help="keep images found in more than one split (same decoded pixels) "
                            "instead of refusing them as leakage; counted in dataset.json")


def ingest_policy(args: argparse.Namespace) -> dict:
    from ingest.dataset import parse_resize

    return {"resize": parse_resize(args.resize) if args.resize else None,
            "channels": args.channels, "skip_bad": args.skip_bad,
            "max_pixels": args.max_pixels, "max_file_bytes": args.max_file_bytes,
            "allow_duplicates": args.allow_duplicates}


def config_default(field: str):
    """PipelineConfig's default for `field`: a flag that sets a config field defaults to it, so
    the default is written once, in pipeline/config.py, and the CLI cannot disagree with it.
    """
    from pipeline.config import PipelineConfig

    return PipelineConfig.__dataclass_fields__[field].default


def add_span_args(parser: argparse._ActionsContainer, span_help: str, spans_help: str) -> None:
    """--span and --spans (PipelineConfig.target_span and span_window), each command's help."""
    parser.add_argument("--span", type=positive_int, default=config_default("target_span"),
                        metavar="N", help=span_help)
    parser.add_argument("--spans", type=positive_int, default=config_default("span_window"),
                        metavar="K", help=spans_help)


def add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    from pipeline.blessing import DEFAULT_MAX_REGRESSION, RULE, example_bars
    from pipeline.config import DEFAULT_PIPELINE_NAME, DEFAULT_SCHEMA
    from serving.tflite import DEFAULT_MAX_TFLITE_DROP

    parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE_NAME)
    parser.add_argument("--model-name",
                        help="the model's folder under the serving dir: versions go to "
                             "<serving-dir>/<model-name>/<version>/ (default: the data "
                             "folder's name, or the built-in dataset's). A name with no served "
                             "version yet starts a new model: no baseline to compare with and "
                             "no class-map check; the run says so, and names the models in the "
                             "serving dir that have the same classes. To train a new version "
                             "of a model on new data (pets-v2/ after pets/), pass its name")
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA,
                        help="curated schema imported by ImportSchemaGen (default %(default)s)")
    rule = RULE.replace("%", "%%")  # argparse formats help with %
    parser.add_argument("--min-accuracy", type=accuracy_bar, metavar="X",
                        help="bless only at or above this accuracy on the evaluation split "
                             f"(test, or eval without one). Default: {rule}; e.g. "
                             f"{example_bars().replace('%', '%%')} (docs/evaluation.md)")
    parser.add_argument("--max-regression", type=float, default=DEFAULT_MAX_REGRESSION,
                        help="bless only if accuracy drops at most this much below the served "
                             "version's (default %(default)s)")
    parser.add_argument("--max-tflite-drop", type=accuracy_bar,
                        default=DEFAULT_MAX_TFLITE_DROP, metavar="X",
                        help="push the TFLite model with the version only if its accuracy on "
                             "the evaluation split is at most this much below the SavedModel's "
                             "(default %(default)s: 0.5 point); the version is pushed either way")
    parser.add_argument("--allow-anomaly", action="append", default=[], metavar="TYPE",
                        help="accept this ExampleValidator anomaly type instead of failing the "
                             "run (repeatable), e.g. FEATURE_TYPE_LOW_FRACTION_PRESENT")
    parser.add_argument("--max-label-drift", type=float,
                        default=config_default("max_label_drift"),
                        help="fail when a split's label distribution moves further than this "
                             "(L-infinity) from the last accepted data; 0 turns it off "
                             "(default %(default)s)")
    parser.add_argument("--accept-new-classes", action="store_true",
                        help="let data whose class names differ from the served model's through "
                             "the gate (added, removed or renamed classes shift label ids); the "
                             "new model is then not compared with the served one")
    parser.add_argument("--infer-data", metavar="DIR",
                        help="a folder of unlabelled images (searched recursively) that a "
                             "BulkInferrer stage scores after the Pusher, with the version this "
                             "run pushed or else the served one; the predictions are an "
                             "artifact of the run (`infer` does the same outside a run)")
    add_trainer_args(parser)


def add_store_args(parser: argparse.ArgumentParser) -> None:
    """Where `run` kept its ML Metadata store, for the commands that read it."""
    from pipeline.config import DEFAULT_PIPELINE_NAME, DEFAULT_ROOT

    parser.add_argument("--root", type=Path, default=Path(DEFAULT_ROOT),
                        help="pipeline root given to `run` (default %(default)s)")
    parser.add_argument("--pipeline-name", default=DEFAULT_PIPELINE_NAME)
    parser.add_argument("--json", action="store_true")
