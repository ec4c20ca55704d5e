"""The import direction of docs/architecture.md, checked over the source (ast, no imports run).

Arrows run one way: cli -> report, kubeflow -> pipeline -> components -> trainer -> ingest,
serving -> schema. Nothing that runs in a TFX container (pipeline, components, trainer, ingest,
serving, schema) imports the CLI or the report, and the image copies every package they reach.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Package -> the project packages it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "schema": frozenset(),
    "serving": frozenset({"schema"}),
    "ingest": frozenset({"schema"}),
    "trainer": frozenset({"schema", "serving"}),
    "components": frozenset({"schema", "serving", "ingest", "trainer"}),
    "pipeline": frozenset({"schema", "serving", "ingest", "trainer", "components"}),
    "kubeflow": frozenset({"schema", "serving", "ingest", "trainer", "components", "pipeline"}),
    "report": frozenset({"schema", "serving", "ingest", "trainer", "components", "pipeline"}),
    "cli": frozenset({"schema", "serving", "ingest", "trainer", "components", "pipeline",
                      "kubeflow", "report"}),
}
# `python -m pipeline` is the README's entry point; it only hands over to the CLI.
EXCEPTIONS = {("pipeline/__main__.py", "cli")}
# What runs inside the TFX containers of a Kubeflow run (the Dockerfile copies these).
CONTAINER_PACKAGES = ("pipeline", "components", "trainer", "ingest", "serving", "schema")


def imported_packages(path: Path, packages: set[str]) -> set[str]:
    """Top-level project packages a module imports anywhere (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in packages)
    return found


def violations(root: Path, allowed: dict[str, frozenset[str]]) -> list[str]:
    """'module -> package' for each import that runs against the allowed direction."""
    problems = []
    for package in sorted(allowed):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for target in sorted(imported_packages(path, set(allowed)) - {package}):
                if target not in allowed[package] and (relative, target) not in EXCEPTIONS:
                    problems.append(f"{relative} -> {target}")
    return problems


def test_every_project_package_has_a_place_in_the_layering():
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ALLOWED)


def test_imports_run_one_way():
    assert violations(REPO, ALLOWED) == []


def test_the_check_catches_an_import_against_the_direction(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / "trainer" / "train.py").write_text(
        "def curves():\n    from report.plots import image_grid\n")
    (tmp_path / "report" / "plots.py").write_text("from trainer import train\n")
    allowed = {"trainer": frozenset(), "report": frozenset({"trainer"})}
    assert violations(tmp_path, allowed) == ["trainer/train.py -> report"]


def test_the_image_copies_every_package_its_containers_import():
    copied = set(re.findall(r"^COPY (\w+)/ ", (REPO / "Dockerfile").read_text(), re.M))
    reached = set(CONTAINER_PACKAGES)
    for package in CONTAINER_PACKAGES:
        reached |= ALLOWED[package]
    assert reached <= copied
    assert not {"cli", "report"} & copied


# Below cli/, messages go through `logging.getLogger(__name__)`; the CLI decides what reaches
# the console (cli/logs.py), on Kubeflow TFX's root handler. Module -> reason, for a print that
# is the product's output itself (none today: what commands print lives in cli/).
PRINT_ALLOWED: dict[str, str] = {}


def logging_problems(root: Path, packages: list[str]) -> list[str]:
    """A bare `print(...)`, or a logger fetched by a spelled-out name, in a module below cli/.

    `getLogger(__name__)` is the module's own; a process's entry point may still configure its
    packages' loggers by a variable (trainer/multi_worker.py).
    """
    problems = []
    for relative, tree, _ in _modules(root, packages):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "print":
                if relative not in PRINT_ALLOWED:
                    problems.append(f"{relative}:{node.lineno}: print")
            elif (isinstance(func, ast.Attribute) and func.attr == "getLogger"
                  and any(isinstance(arg, ast.Constant) for arg in node.args)):
                # A name spelled out, such as the CLI's "pipeline" logger (cli/common.py).
                arguments = ", ".join(ast.unparse(arg) for arg in node.args)
                problems.append(f"{relative}:{node.lineno}: getLogger({arguments})")
    return sorted(problems)


def test_library_code_logs_through_its_own_module_logger():
    assert logging_problems(REPO, sorted(set(ALLOWED) - {"cli"})) == []


def test_the_check_catches_a_print_and_a_borrowed_logger(tmp_path):
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "train.py").write_text(
        "import logging\nlog = logging.getLogger('pipeline')\n"
        "def fit():\n    print('[trainer] epoch 1/1')\n"
        "    logging.getLogger(__name__).info('ok')\n")
    assert logging_problems(tmp_path, ["trainer"]) == [
        "trainer/train.py:2: getLogger('pipeline')", "trainer/train.py:4: print"]


# Errors carry the fact, not the flag (schema/errors.py): a message below cli/ names a setting
# as a `Setting`, which the CLI says as its flag and Kubeflow's log by its neutral name. Module
# and option string -> why that module may still spell the flag out.
FLAG_ALLOWED: dict[tuple[str, str], str] = {
    # The blessing record's `source` and `text`, stored with every evaluation in ML Metadata
    # and matched by report/summary.py: a record format, changed with the records, not here.
    ("pipeline/blessing.py", "--min-accuracy"): "a stored record's values",
    # Beam's own --project and --region of the Dataflow preset, not compile-kfp's options.
    ("kubeflow/compile.py", "--project"): "a Beam argument",
    ("kubeflow/compile.py", "--region"): "a Beam argument",
}


def cli_option_strings() -> set[str]:
    """Every long option of every command, read from the CLI's real parsers."""
    import argparse

    from cli.main import build_parser

    found: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        for action in parsers.pop()._actions:
            found.update(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants: they explain the code to its readers, who may be
    reading about a flag; only what a running program says must not name one.
    """
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _modules(root: Path, packages) -> Iterator[tuple[str, ast.Module, set[int]]]:
    """(path relative to root, syntax tree, ids of its docstrings) of every module in them."""
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            yield path.relative_to(root).as_posix(), tree, _docstrings(tree)


def flag_problems(root: Path, packages: tuple[str, ...], options: set[str]) -> list[str]:
    """'module:line: option' for each string constant (docstrings aside) naming a CLI option."""
    pattern = re.compile(r"(?<![\w-])(" + "|".join(
        re.escape(o) for o in sorted(options, key=len, reverse=True)) + r")(?![\w-])")
    problems = []
    for relative, tree, docstrings in _modules(root, packages):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings):
                problems.extend(f"{relative}:{node.lineno}: {option}"
                                for option in sorted(set(pattern.findall(node.value)))
                                if (relative, option) not in FLAG_ALLOWED)
    return sorted(problems)


def test_code_the_image_holds_names_no_cli_flag():
    """What runs in the image, and kubeflow/ (it compiles for any caller), says settings;
    report/ only presents a run to the CLI's user.
    """
    packages = (*CONTAINER_PACKAGES, "kubeflow")
    assert flag_problems(REPO, packages, cli_option_strings()) == []


def test_the_flag_check_reads_the_real_parser_and_catches_a_flag(tmp_path):
    options = cli_option_strings()
    assert {"--accept-new-classes", "--skip-bad", "--cache-budget"} <= options
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "dataset.py").write_text(
        '"""Docstrings may say --skip-bad."""\n'
        'def refuse():\n    raise ValueError("or pass --skip-bad to leave them out")\n'
        'HINT = f"raise --cache-budget to {1}"\nOK = "--skip-badly is not an option"\n')
    assert flag_problems(tmp_path, ("ingest",), options) == [
        "ingest/dataset.py:3: --skip-bad", "ingest/dataset.py:4: --cache-budget"]


# Record file -> its name's constant and the modules that may name it: the record's own module
# (and ingest/output.py, which knows every file of an ingest output). Every other module reads
# and writes it through its type (docs/architecture.md, "Records"), never by name with json.
RECORD_FILES: dict[str, tuple[str, frozenset[str]]] = {
    "dataset.json": ("DATASET_INFO", frozenset({"ingest/manifest.py", "ingest/output.py"})),
    "gate.json": ("REPORT_FILE", frozenset({"components/gate_report.py"})),
    "history.json": ("HISTORY_FILE", frozenset({"trainer/record.py"})),
    "baseline.json": ("PROVENANCE_FILE", frozenset({"serving/model_dir.py"})),
    "backbone.json": ("BACKBONE_FILE", frozenset({"trainer/backbones/provenance.py"})),
    "tuning.json": ("TUNING_FILE", frozenset({"trainer/tuning.py"})),
    "trial_result.json": ("TRIAL_RESULT_FILE", frozenset({"trainer/tuning.py"})),
    "host-speed.json": ("HOST_SPEED_FILE", frozenset({"trainer/host_speed.py"})),
    # report/__init__.py names it only to export it (tests and users find the file by it).
    "report.json": ("REPORT_JSON", frozenset({"report/records.py", "report/__init__.py"})),
}


def record_problems(root: Path, packages: list[str]) -> list[str]:
    """'module: names X' for each module outside a record's own that names its file or the
    file's constant (a string that is the file name or ends in /<file name>).
    """
    constants = {constant: (file, owners) for file, (constant, owners) in RECORD_FILES.items()}
    problems = []
    for relative, tree, docstrings in _modules(root, packages):
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                names = [node.id]
            elif isinstance(node, ast.Attribute):
                names = [node.attr]
            elif isinstance(node, ast.ImportFrom):
                names = [alias.name for alias in node.names]
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docstrings):
                names = [file for file in RECORD_FILES
                         if node.value == file or node.value.endswith("/" + file)]
                problems += [f"{relative}: names {file!r}" for file in names
                             if relative not in RECORD_FILES[file][1]]
                continue
            else:
                continue
            problems += [f"{relative}: names {name}" for name in names
                         if name in constants and relative not in constants[name][1]]
    return sorted(set(problems))


def test_records_are_read_and_written_through_their_types():
    assert record_problems(REPO, sorted(ALLOWED)) == []


def test_the_check_catches_a_record_read_by_its_file_name(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "facts.py").write_text(
        '"""Reads history.json (prose may name it)."""\n'
        "import json\n"
        "from trainer.record import HISTORY_FILE\n"
        "def gate(uri):\n"
        "    return json.loads(open(uri + '/gate.json').read())\n")
    assert record_problems(tmp_path, ["report"]) == [
        "report/facts.py: names 'gate.json'", "report/facts.py: names HISTORY_FILE"]
