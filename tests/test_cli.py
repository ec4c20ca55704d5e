"""CLI conventions: help with examples everywhere, JSON for scripts, exit codes, quiet console
with one progress line per component.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

import imagegen
from cli import COMMANDS, EXIT_BAD_INPUT, EXIT_OK, build_parser, logs, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_with_an_example(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"python -m pipeline {command}" in text
    assert "example" in text


def test_top_level_help_documents_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for code in ("0 ok", "1 the pipeline", "2 bad input", "3 the data gate", "4 another run"):
        assert code in text
    assert all(name in text for name in COMMANDS)


def test_commands_whose_output_scripts_read_have_json() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for command in ("ingest", "run", "predict", "runs", "lineage", "report"):
        assert "--json" in subcommands[command].format_help(), command


def test_ingest_json(tmp_path: Path, capsys) -> None:
    imagegen.write_folder(tmp_path / "images", {"train": 3, "test": 2})
    out = tmp_path / "out"
    assert main(["ingest", str(tmp_path / "images"), str(out), "--json"]) == EXIT_OK
    written = json.loads(capsys.readouterr().out)
    assert written["split_counts"] == {"train": 6, "eval": 3, "test": 6}
    assert written["class_names"] == list(imagegen.CLASS_NAMES)
    assert written["image_shape"] == [8, 8, 3] and written["output"] == str(out)


def _small_run_args(tmp_path: Path) -> list[str]:
    """`run` on 36 train / 12 test images of 8x8x3 (eval: 3 images carved from train)."""
    from schema.curated import write_schema

    imagegen.write_folder(tmp_path / "images", {"train": 12, "test": 4})
    write_schema(len(imagegen.CLASS_NAMES), tmp_path / "schema.pbtxt")
    return ["run", "--recipe", "classic",
            "--data", str(tmp_path / "images"), "--root", str(tmp_path / "root"),
            "--schema", str(tmp_path / "schema.pbtxt")]


def test_a_split_smaller_than_one_batch_is_refused_before_the_pipeline_runs(
    tmp_path: Path, capsys
) -> None:
    args = _small_run_args(tmp_path)
    assert main([*args, "--batch-size", "8"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "the eval split has 3 images, fewer than one batch (--batch-size 8)" in err
    assert "smaller --batch-size" in err
    assert not (tmp_path / "root" / "pipelines").exists()  # nothing ran
    for option, value in (("--eval-fraction", "0.7"), ("--test-fraction", "0")):
        assert main([*args, option, value]) == EXIT_BAD_INPUT
        assert f"{option} must be in (0, 0.5]" in capsys.readouterr().err


def test_bad_arguments_exit_2_and_name_the_problem(tmp_path: Path, capsys) -> None:
    assert main(["ingest", str(tmp_path / "missing"), str(tmp_path / "out")]) == EXIT_BAD_INPUT
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert main(["report", "--root", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "no runs of 'image-classifier'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--recipe", "nope"])
    assert exit_info.value.code == 2


@pytest.fixture
def root_handlers():
    """Puts the root logger's handlers back: the test's console handler writes to capsys."""
    root = logging.getLogger()
    saved = list(root.handlers)
    yield
    root.handlers[:] = saved


def test_console_shows_our_messages_and_errors_and_hides_library_noise(
    capsys, root_handlers
) -> None:
    """Progress lines come from ML Metadata (cli/progress.py), not from LocalDagRunner's logs."""
    logs.configure(None, verbose=False)
    absl = logging.getLogger("absl")
    absl.info("Component %s is running.", "Trainer")
    absl.info("Executor %s do: 2,000 lines of TFX detail", "Trainer")
    logging.getLogger("tensorflow").warning("a TensorFlow deprecation warning")
    logging.getLogger("pipeline").info("[pipeline] %s: running", "Trainer")
    logging.getLogger("report").info("our own message")
    absl.error("a failure in TFX")
    try:
        raise RuntimeError("inside a component")
    except RuntimeError:
        # TFX logs a failed execution's traceback at ERROR; cli/run.py logs ours to the file.
        absl.exception("Execution 5 failed.\nTraceback (most recent call last): ...")
        logging.getLogger("pipeline.trace").info("traceback", exc_info=True)
        logging.getLogger("pipeline").error("pipeline failed", exc_info=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[pipeline] Trainer: running", "our own message", "a failure in TFX",
                     "Execution 5 failed.", "pipeline failed"]

    logs.configure(None, verbose=True)
    logging.getLogger("tensorflow").warning("shown with -v")
    try:
        raise RuntimeError("inside a component")
    except RuntimeError:
        logging.getLogger("pipeline.trace").info("traceback", exc_info=True)
    err = capsys.readouterr().err
    assert "shown with -v" in err and "Traceback" in err and "inside a component" in err


def test_an_unexpected_failure_is_one_line_without_v(capsys, root_handlers, monkeypatch) -> None:
    from cli import runs

    def fail(args):
        raise OSError(5, "Input/output error", "/data/disk")

    monkeypatch.setattr(runs, "execute", fail)
    assert main(["runs"]) == 1
    err = capsys.readouterr().err
    assert "error: Input/output error: /data/disk" in err and "Traceback" not in err
    assert main(["-v", "runs"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_library_value_error_is_a_failure_not_bad_input(
    tmp_path: Path, capsys, root_handlers, monkeypatch
) -> None:
    """A ValueError from inside a library is a bug, not the user's fault: exit 1, not 2.

    The real `schema` command runs; only protobuf's text writer, which it calls, fails.
    """
    from google.protobuf import text_format

    def boom(*args, **kwargs):
        raise ValueError("boom")

    output = tmp_path / "schema.pbtxt"
    monkeypatch.setattr(text_format, "MessageToString", boom)
    assert main(["schema", "--num-classes", "3", "--output", str(output)]) == 1
    err = capsys.readouterr().err
    assert "error: ValueError: boom" in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: ValueError: boom"]
    assert not output.exists()
    # The same command given bad input still exits 2, saying what is wrong.
    monkeypatch.undo()
    assert main(["schema", "--num-classes", "1", "--output", str(output)]) == EXIT_BAD_INPUT
    assert "error: need at least 2 classes, got 1" in capsys.readouterr().err


def test_a_cache_budget_that_is_no_size_or_holds_no_image_is_refused(
    tmp_path: Path, capsys
) -> None:
    args = [*_small_run_args(tmp_path), "--batch-size", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--cache-budget", "lots"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert "cache budget 'lots' is not a size" in capsys.readouterr().err
    assert main([*args, "--cache-budget", "100B"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "one 8x8x3 image takes 192 B as uint8, more than the cache budget of 100 B" in err
    assert not (tmp_path / "root" / "pipelines").exists()  # nothing ran
    assert main([*args, "--set", "widths=wide"]) == EXIT_BAD_INPUT
    assert "--set 'widths=wide': invalid literal" in capsys.readouterr().err


def test_a_fresh_process_prints_no_tensorflow_logs_before_its_own_output(tmp_path: Path) -> None:
    """compile-kfp imports TensorFlow (through TFX): its C++ logs, set at import, must be quieted
    before that, as the README promises a console of our own lines.
    """
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "compile-kfp", "--output",
         str(tmp_path / "pipeline.yaml"), "--image", "registry.example/tfx-img:1",
         "--pipeline-root", "gs://bucket/root", "--data-root", "gs://bucket/data"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
        env=env)
    assert done.returncode == 0, done.stderr
    assert "tensorflow" not in done.stderr.lower() and "cuda" not in done.stderr.lower(), (
        done.stderr)


def test_ingest_runs_without_loading_tensorflow(tmp_path: Path) -> None:
    """Ingest forks its workers: a parent that had loaded TensorFlow would fork its threads
    (and pay seconds of import for nothing). Building the parser must not load it either.
    """
    import subprocess

    src = tmp_path / "photos"
    imagegen.write_folder(src, {"": 10})
    probe = ("import sys; from cli.main import main; "
             f"code = main(['ingest', {str(src)!r}, {str(tmp_path / 'out')!r}]); "
             "print(code, sorted(m for m in ('tensorflow', 'keras', 'tfx') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout + done.stderr


REPO = Path(__file__).resolve().parent.parent


def _settings_named_in_the_code() -> set[str]:
    """The neutral names of every `Setting("...")` written below cli/."""
    import ast

    names = set()
    for package in ("pipeline", "components", "trainer", "ingest", "serving", "schema", "report"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "Setting" and node.args
                        and isinstance(node.args[0], ast.Constant)):
                    names.add(node.args[0].value)
    return names


def test_every_setting_a_message_names_is_one_of_the_cli_flags() -> None:
    """A setting's neutral name must find its flag in the table read off the parsers: a
    misspelt or renamed one would reach the console by its neutral name.
    """
    from cli.main import flag_name
    from schema.errors import Setting

    names = _settings_named_in_the_code()
    assert {"accept_new_classes", "ingest.skip_bad", "trainer.data.cache_budget"} <= names
    shown = {name: flag_name(Setting(name)) for name in names}
    assert {name: text for name, text in shown.items() if not text.startswith("--")} == {}
    assert shown["allowed_anomaly_types"] == "--allow-anomaly"
    assert shown["span_window"] == "--spans" and shown["target_span"] == "--span"
    assert flag_name(Setting("ingest.resize", "32x32")) == "--resize 32x32"
    # A training setting without a flag of its own goes through --set; an unknown one keeps
    # its neutral name.
    assert flag_name(Setting("trainer.fine_tune_blocks", "3")) == "--set fine_tune_blocks=3"
    assert flag_name(Setting("nothing.like_it")) == "the nothing option like_it"
