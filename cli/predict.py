"""`predict`: classify image files with a pushed model, in-process or through TF Serving, or
with the version's TFLite model in TFLite's interpreter (`--tflite`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.common import EXIT_BAD_INPUT, EXIT_OK
from schema.errors import BadInput, MissingInput


def add_parser(sub: argparse._SubParsersAction) -> None:
    from serving.client import DEFAULT_TIMEOUT_S

    p = sub.add_parser("predict", help="classify images with the newest pushed model, "
                                       "in-process or through a TF Serving server",
                       epilog="examples:\n"
                              "  python -m pipeline predict --model-dir serving_model/digits "
                              "a.png b.jpg\n"
                              "  python -m pipeline predict --model-dir serving_model/digits "
                              "--tflite a.png\n"
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
    p.add_argument("--tflite", action="store_true",
                   help="with --model-dir: classify with the version's TFLite model "
                        "(assets.extra/tflite/, pushed only when the Evaluator blessed it) in "
                        "TFLite's interpreter, each image decoded and resized as an app must "
                        "(docs/tflite.md)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds for the whole call with --server: waiting for the server to "
                        "answer and for a version to become AVAILABLE (it says which state it "
                        "waits on), then the prediction (default %(default)s)")
    p.add_argument("--labels", type=Path,
                   help="class names, one per line (the model's assets/labels.txt), to name "
                        "the top-k classes of server answers")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=execute)


def _predict_server(args: argparse.Namespace):
    from serving.client import predict_grpc, predict_rest
    from serving.predict import Prediction

    if not args.model_name:
        raise BadInput("--server needs --model-name (the name the server serves the model as)")
    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        raise MissingInput(f"image files not found: {missing}")
    if args.labels and not args.labels.is_file():
        raise MissingInput(f"--labels {args.labels} not found")
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


def _predict_tflite(args: argparse.Namespace):
    """The version's TFLite model, its input made by trainer/tflite.py app_pixels (serving
    does not import the Transform graph's decoder, so the CLI hands it over).
    """
    from serving.predict import predict_files_tflite
    from trainer.tflite import app_pixels

    model, predictions = predict_files_tflite(args.model_dir, args.images, app_pixels,
                                              args.top_k)
    used = {"mode": model.model.info.mode, "file": model.model.path}
    return model.version, predictions, used


def execute(args: argparse.Namespace) -> int:
    from serving.predict import predict_files

    tflite = None
    if args.tflite and args.server:
        raise BadInput("--tflite runs the version's TFLite model in-process; TF Serving serves "
                       "the SavedModel, not TFLite: pass the model's folder with --model-dir "
                       "and --tflite, or leave --tflite out to ask the server")
    if args.server:
        version, predictions = _predict_server(args)
    elif args.model_version is not None:
        raise BadInput("--model-version picks a version on a server: it needs --server "
                       "(with --model-dir, pass the version folder instead)")
    elif args.tflite:
        version, predictions, tflite = _predict_tflite(args)
    else:
        version, predictions = predict_files(args.model_dir, args.images, args.top_k)
    # Some images failed: their lines say why, the others are answered; exit 2 all the same.
    status = EXIT_BAD_INPUT if any(p.error for p in predictions) else EXIT_OK
    if args.json:
        answer = {"model_version": str(version)}
        if tflite is not None:
            answer["tflite"] = tflite
        print(json.dumps({**answer, "predictions": [p.__dict__ for p in predictions]},
                         indent=2))
        return status
    print(f"model: {version}" + (f" (TFLite {tflite['mode']}: {tflite['file']}, in TFLite's "
                                 "interpreter)" if tflite else ""))
    for p in predictions:
        if p.error:
            print(f"{p.path}: error: {p.error}")
            continue
        top = ", ".join(f"{name} {prob:.3f}" for name, prob in p.top)
        print(f"{p.path}: {p.class_name}  ({top})")
    return status
