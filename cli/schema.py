"""`schema`: the curated schema rewritten for another class count, to review and pass to `run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="write the curated schema for another class count",
                       epilog="example: python -m pipeline schema --num-classes 5 "
                              "--output schema/flowers.pbtxt")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from schema.curated import write_schema

    write_schema(args.num_classes, args.output)
    print(f"wrote {args.output}: review it, then pass it to `run --schema {args.output}`")
    return EXIT_OK
