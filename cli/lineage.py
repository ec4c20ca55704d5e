"""`lineage --model VERSION`: what produced a pushed model version, and its warm-start chain."""

from __future__ import annotations

import argparse
import json

from cli.common import EXIT_OK, metadata_path
from cli.options import add_store_args
from schema.errors import BadInput


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lineage", help="what produced a pushed model version (from MLMD)",
                       epilog="example: python -m pipeline lineage --model 1795380628")
    p.add_argument("--model", required=True, metavar="VERSION",
                   help="the version folder name under <serving-dir>/<model-name>/")
    add_store_args(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from report.lineage import LineageError, model_lineage, warm_start_chain

    try:
        lineage = model_lineage(metadata_path(args), args.model)
    except LineageError as e:
        raise BadInput(str(e)) from e
    lineage["warm_start_chain"] = warm_start_chain(metadata_path(args), args.model)
    if args.json:
        print(json.dumps(lineage, indent=2))
        return EXIT_OK
    for key, value in lineage.items():
        if key == "training_config" and isinstance(value, dict):
            value = _training_text(value)
        if key == "warm_start_chain":
            value = " <- ".join(_chain_link(link) for link in value)
        if key == "tflite":
            value = _tflite_text(value)
        if key == "inferences":
            value = "; ".join(f"{i['rows']} images of {i['data']} in run {i['run']} "
                              f"({i['predictions']})" for i in value) or "none"
        print(f"{key:18} {value}")
    return EXIT_OK


def _training_text(recorded: dict) -> str:
    """What a recorded training config trained (flat or nested, read as a TrainerConfig)."""
    from trainer.config import TrainerConfig

    config = TrainerConfig.from_dict(recorded)
    return (f"recipe={config.recipe}, model={config.model.kind}, "
            f"epochs={config.optimizer.epochs}, batch_size={config.optimizer.batch_size}")


def _chain_link(link: dict) -> str:
    """One version of a warm-start chain: its spans, or why the chain stops there."""
    if link.get("missing"):
        return f"{link['version']} (not in this metadata store)"
    spans = f" (spans {','.join(map(str, link['spans']))})" if link.get("spans") else ""
    scratch = "" if link.get("warm_started_from") is not None else " [from scratch]"
    return f"{link['version']}{spans}{scratch}"


def _tflite_text(tflite: dict) -> str:
    """Whether the version holds a TFLite model (mode, size), and why."""
    if tflite.get("mode"):
        held = f"{tflite['mode']}, {tflite['size_bytes']:,} bytes ({tflite['file']})"
    elif tflite.get("pushed"):
        held = "pushed, but its files are no longer where it was pushed"
    else:
        held = "none in this version"
    return f"{held}: {tflite['why']}"
