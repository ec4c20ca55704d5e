"""The command line: one parser, each command's arguments and handler from its own module."""

from __future__ import annotations

import argparse
import functools
import logging

from cli import compile_kfp, infer, ingest, lineage, logs, predict, report, run, runs, schema
from cli.common import EXIT_BAD_INPUT, EXIT_BUSY, EXIT_FAILED, log
from schema.errors import TRAINER, Explained, Setting, neutral_name

# Command name -> module with add_parser(subparsers) and execute(args) -> exit code.
COMMANDS = {
    "ingest": ingest,
    "run": run,
    "predict": predict,
    "infer": infer,
    "compile-kfp": compile_kfp,
    "runs": runs,
    "lineage": lineage,
    "report": report,
    "schema": schema,
}

EPILOG = """\
examples:
  python -m pipeline run                          # built-in digits dataset, end to end
  python -m pipeline ingest photos/ data/photos   # image folder -> TFRecords
  python -m pipeline run --data data/photos --epochs 20 --serving-dir /models
  python -m pipeline predict --model-dir serving_model/digits img1.png img2.png
  python -m pipeline infer --model-dir serving_model/digits photos/ --output scores.csv
  python -m pipeline compile-kfp --output pipeline.yaml

exit codes: 0 ok, 1 the pipeline or a command failed, 2 bad input or arguments,
            3 the data gate rejected the data (anomalies or label drift; nothing trained),
            4 another run of the same pipeline holds the pipeline root, or another
              ingest is writing the same OUT, or another infer the same --output
"""


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

    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


# The settings whose neutral name (a PipelineConfig field) is not their flag's dest.
FIELD_DESTS = {"allowed_anomaly_types": "allow_anomaly", "target_span": "span",
               "span_window": "spans", "schema_path": "schema"}


@functools.cache
def flags_by_dest() -> dict[str, str]:
    """Every command's options, the long option string by dest, read from the parsers."""
    flags: dict[str, str] = {}

    def collect(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:  # argparse has no public list of them
            if isinstance(action, argparse._SubParsersAction):
                for subparser in action.choices.values():
                    collect(subparser)
            long = [o for o in action.option_strings if o.startswith("--")]
            if long:
                flags.setdefault(action.dest, long[0])

    collect(build_parser())
    return flags


def flag_name(setting: Setting) -> str:
    """A setting as the CLI takes it: its flag (and value), a training setting without one
    through --set, and one no command takes by its neutral name.
    """
    flags = flags_by_dest()
    if setting.scope == TRAINER:
        return _training_flag(setting, flags)
    flag = flags.get(FIELD_DESTS.get(setting.name, setting.field))
    if flag is not None:
        return flag if setting.value is None else f"{flag} {setting.value}"
    return neutral_name(setting)


def _training_flag(setting: Setting, flags: dict[str, str]) -> str:
    """A training setting (dotted path, or a flat name of before the parts) as a flag: the one
    flag that sets exactly it (cli/training.py FLAG_SETTINGS), else --set by its flat name.
    """
    from cli.training import FLAG_SETTINGS
    from trainer.config import FLAT_NAME_OF, FLAT_NAMES

    path = setting.name.partition(".")[2]
    path = FLAT_NAMES.get(path, path)
    dest = next((d for d, paths in FLAG_SETTINGS.items() if paths == (path,)), None)
    if dest in flags:
        return flags[dest] if setting.value is None else f"{flags[dest]} {setting.value}"
    flat = FLAT_NAME_OF.get(path, path)
    return f"{flags.get('settings', '--set')} {flat}={setting.value or 'VALUE'}"


def explain(error: BaseException) -> str:
    """An error's message with the settings it names as this CLI's flags."""
    return error.render(flag_name) if isinstance(error, Explained) else str(error)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.quiet_third_party(args.verbose)
    if args.command != "run":
        logs.configure(None, args.verbose)
    from ingest.errors import IngestBusyError
    from schema.errors import BadInput
    from serving.client import RequestError, ServingError

    # Exit 2 only for what says the input is wrong: BadInput (IngestError, ModelDirError, the
    # config checks, ... derive from it) and RequestError (the server says the model, version,
    # signature or input is wrong). A bare ValueError or FileNotFoundError may be a bug, in our
    # code or in a library, and goes to _unexpected: exit 1, not the user's fault.
    bad_input: tuple[type[Exception], ...] = (BadInput, RequestError)
    try:
        return args.handler(args)
    except IngestBusyError as e:
        log.error("error: %s", explain(e))
        return EXIT_BUSY
    except bad_input as e:
        log.error("error: %s", explain(e))
        return EXIT_BAD_INPUT
    except ServingError as e:
        log.error("error: %s", explain(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - one line on the console, the traceback with -v
        return _unexpected(e, args.verbose)


def _unexpected(error: Exception, verbose: bool) -> int:
    """A failure no command anticipated (a disk error, a bug): one line, or the traceback
    with -v; never a bare traceback at the default verbosity.
    """
    if isinstance(error, OSError) and error.filename is not None:
        what = f"{error.strerror or error.__class__.__name__}: {error.filename}"
    else:
        first_line = (explain(error).strip().splitlines() or [""])[0][:500]
        what = f"{error.__class__.__name__}: {first_line}"
    log.error("error: %s", what)
    log_path = logs.log_file()
    if verbose:
        log.error("traceback:", exc_info=error)
    elif log_path is not None:
        # The trace logger reaches the file only; the console keeps to the one line.
        logging.getLogger(logs.TRACE_LOGGER).info("traceback", exc_info=error)
        log.error("(the traceback is in %s; run again with -v to see it here)", log_path)
    else:
        log.error("(run again with -v for the traceback)")
    return EXIT_FAILED
