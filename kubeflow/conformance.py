"""Whether a compiled spec passes the rules of the open-source Kubeflow Pipelines v2 backend.

Parsing a spec as a PipelineSpec proves little: the open-source backend refuses specs that
Vertex AI Pipelines runs. The rules below were read from kubeflow/pipelines (backend/, at
commit 7b70c7b9); each names the file it comes from. Nothing of that code is copied.

  upload   backend/src/apiserver/template/v2_template.go (NewV2SpecTemplate): schema 2.1.0, a
           name; backend/src/common/util/utils.go (ValidatePipelineName): the name pattern.
  run      backend/src/apiserver/template/v2_template.go (validatePipelineJobInputs): every root
           parameter has a type, and a default or a value given per run.
  compile  backend/src/v2/compiler/visitor.go (dfs) and argocompiler/dag.go (task): only
           container and importer executors ("resolver executors not implemented"; CustomJob
           is "Google Cloud only"); dag.go: no artifact iterators; every producer task exists.
  driver   backend/src/v2/driver/driver.go (initPodSpecPatch): the pod gets image, command and
           args, never `lifecycle` hooks, so a preCacheCheck would silently not run.
           backend/src/v2/driver/resolve.go: inputs come from a producer task's output, a root
           parameter or a constant.
  importer backend/src/v2/component/importer_launcher.go: a type schema and an artifact URI.

Project rules on top: one image for every task, and every module a task names (the command's
`-m` module, the executor class, run_fn/preprocessing_fn) exists in that image.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.config import REPO_ROOT
from schema.errors import BadInput

SCHEMA_VERSION = "2.1.0"
PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
# Task parameters that hold a Python path the executor imports.
MODULE_PARAMETERS = ("run_fn", "preprocessing_fn", "module_path")


@dataclasses.dataclass(frozen=True)
class Violation:
    task: str  # a task name, or "<pipeline>"
    rule: str
    message: str

    def line(self) -> str:
        return f"{self.task}: [{self.rule}] {self.message}"


@functools.cache
def dockerfile_packages(dockerfile: Path = REPO_ROOT / "Dockerfile") -> frozenset[str]:
    """Top-level project folders the image recipe copies in (`COPY pipeline/ pipeline/`)."""
    text = dockerfile.read_text()
    return frozenset(m.rstrip("/") for m in re.findall(r"^COPY (\S+) ", text, re.M))


@functools.cache
def project_packages() -> frozenset[str]:
    return frozenset(p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").is_file())


def module_in_image(path: str, copied: set[str] | None = None) -> str | None:
    """Why `path` (a module, or module.attribute) is not importable in the image; None if it is.

    The image installs the same lock as this environment plus the copied project folders, so a
    module exists there when it imports here and, if it is ours, its folder is copied.
    """
    copied = dockerfile_packages() if copied is None else copied
    top = path.split(".")[0]
    if top in project_packages() and top not in copied:
        return f"{path}: the image does not copy {top}/ (Dockerfile)"
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if cut == len(parts):
            return None
        loaded = importlib.import_module(module)
        target: Any = loaded
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return f"{path}: {module} has no {'.'.join(parts[cut:])}"
            target = getattr(target, attribute)
        return None
    return f"{path}: no such module"


def _container_modules(container: dict) -> Iterable[str]:
    command, args = container.get("command", []), container.get("args", [])
    if "-m" in command and command.index("-m") + 1 < len(command):
        yield command[command.index("-m") + 1]
    for flag in ("--executor_class_path", "--driver_class_path"):
        if flag in args and args.index(flag) + 1 < len(args):
            yield args[args.index(flag) + 1]


def _check_pipeline(spec: dict) -> Iterable[Violation]:
    if spec.get("schemaVersion") != SCHEMA_VERSION:
        yield Violation("<pipeline>", "schema-version",
                        f"schemaVersion {spec.get('schemaVersion')!r}; the open-source API "
                        f"server accepts only {SCHEMA_VERSION}")
    name = spec.get("pipelineInfo", {}).get("name", "")
    if not PIPELINE_NAME.match(name):
        yield Violation("<pipeline>", "pipeline-name",
                        f"name {name!r} does not match {PIPELINE_NAME.pattern}")
    for parameter, definition in spec["root"].get("inputDefinitions", {}).get(
            "parameters", {}).items():
        if not definition.get("parameterType"):
            yield Violation("<pipeline>", "parameter-type",
                            f"run-time parameter {parameter!r} has no parameterType")
        if "defaultValue" not in definition and not definition.get("isOptional"):
            yield Violation("<pipeline>", "parameter-default",
                            f"run-time parameter {parameter!r} has no default: every run would "
                            "have to give it")


def _check_executor(task: str, executor: dict, image: str | None,
                    module_check: Callable[[str], str | None]) -> Iterable[Violation]:
    kinds = sorted(executor)
    if "importer" in executor:
        importer = executor["importer"]
        schema = importer.get("typeSchema", {})
        if not (schema.get("instanceSchema") or schema.get("schemaTitle")):
            yield Violation(task, "importer", "importer without instanceSchema/schemaTitle")
        uri = importer.get("artifactUri", {})
        if not (uri.get("constant") or uri.get("runtimeParameter")):
            yield Violation(task, "importer", "importer without an artifact URI")
        return
    if "container" not in executor:
        yield Violation(task, "executor-kind",
                        f"executor kind {kinds}: the open-source backend runs only container "
                        "and importer executors (resolver and customJob run on Vertex AI only)")
        return
    container = executor["container"]
    if image is not None and container.get("image") != image:
        yield Violation(task, "one-image",
                        f"image {container.get('image')!r}, not the pipeline image {image!r}")
    if "lifecycle" in container:
        yield Violation(task, "lifecycle-hook",
                        f"lifecycle hooks {sorted(container['lifecycle'])}: the open-source "
                        "driver never runs them")
    modules = list(_container_modules(container))
    if not modules:
        yield Violation(task, "module", f"command {container.get('command')} names no module")
    for module in modules:
        problem = module_check(module)
        if problem:
            yield Violation(task, "module", problem)


def _check_inputs(task_name: str, task: dict, tasks: dict, components: dict,
                  root_parameters: set[str],
                  module_check: Callable[[str], str | None]) -> Iterable[Violation]:
    inputs = task.get("inputs", {})
    for key, source in inputs.get("artifacts", {}).items():
        produced = source.get("taskOutputArtifact")
        if produced is None:
            yield Violation(task_name, "input-producer",
                            f"artifact input {key!r} has no producer task")
            continue
        producer = produced.get("producerTask")
        if producer not in tasks:
            yield Violation(task_name, "input-producer",
                            f"artifact input {key!r} comes from unknown task {producer!r}")
            continue
        ref = tasks[producer].get("componentRef", {}).get("name")
        outputs = components.get(ref, {}).get("outputDefinitions", {}).get("artifacts", {})
        if produced.get("outputArtifactKey") not in outputs:
            yield Violation(task_name, "input-producer",
                            f"artifact input {key!r}: {producer} has no output "
                            f"{produced.get('outputArtifactKey')!r}")
    for key, source in inputs.get("parameters", {}).items():
        if "componentInputParameter" in source:
            if source["componentInputParameter"] not in root_parameters:
                yield Violation(task_name, "input-producer",
                                f"parameter {key!r} reads missing run-time parameter "
                                f"{source['componentInputParameter']!r}")
        elif "taskOutputParameter" in source:
            if source["taskOutputParameter"].get("producerTask") not in tasks:
                yield Violation(task_name, "input-producer",
                                f"parameter {key!r} comes from an unknown task")
        elif "constantValue" in source.get("runtimeValue", {}):
            yield Violation(task_name, "parameter-value",
                            f"parameter {key!r} uses runtimeValue.constantValue (schema 2.0), "
                            "which the open-source driver rejects")
        elif "constant" not in source.get("runtimeValue", {}):
            yield Violation(task_name, "input-producer",
                            f"parameter {key!r} is neither a constant, a run-time parameter "
                            "nor a task output")
        if key in MODULE_PARAMETERS and "constant" in source.get("runtimeValue", {}):
            problem = module_check(str(source["runtimeValue"]["constant"]))
            if problem:
                yield Violation(task_name, "module", problem)
    if "artifactIterator" in task:
        yield Violation(task_name, "iterator", "artifact iterators are not implemented")


def check_spec(spec: dict, image: str | None = None,
               module_check: Callable[[str], str | None] = module_in_image) -> list[Violation]:
    """Every rule the spec breaks; [] when the open-source backend should accept and run it.

    `image`: the one image every task must use (default: the first task's image).
    """
    violations = list(_check_pipeline(spec))
    tasks = spec["root"]["dag"]["tasks"]
    components = spec.get("components", {})
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    root_parameters = set(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    if image is None:
        images = [e["container"].get("image") for e in executors.values() if "container" in e]
        image = images[0] if images else None
    for name, task in sorted(tasks.items()):
        ref = task.get("componentRef", {}).get("name")
        component = components.get(ref)
        if component is None:
            violations.append(Violation(name, "component", f"unknown component {ref!r}"))
            continue
        label = component.get("executorLabel")
        if label not in executors:
            violations.append(Violation(name, "executor", f"executor {label!r} not in "
                                                          "deploymentSpec"))
            continue
        violations += _check_executor(name, executors[label], image, module_check)
        violations += _check_inputs(name, task, tasks, components, root_parameters,
                                    module_check)
    return violations


PACKAGE_SUFFIXES = (".yaml", ".yml")


def load_package_with_kfp_sdk(path: Path) -> list[str]:
    """Read a pipeline package (.yaml) as it is, the two ways the KFP SDK reads one; its errors.

    `kfp.components.load_component_from_file`; and what kfp.Client's `upload_pipeline` (for the
    pipeline's name) and `create_run_from_pipeline_package` run on the file before sending it:
    the first YAML document parsed as a PipelineSpec, the others as its PlatformSpec
    (kfp/client/client.py `_extract_pipeline_yaml`).
    """
    from kfp import components
    from kfp.client.client import _extract_pipeline_yaml  # what the client runs, not a copy

    problems = []
    try:
        components.load_component_from_file(str(path))
    except Exception as e:  # noqa: BLE001 - any SDK failure is the finding
        problems.append(f"load_component_from_file: {e.__class__.__name__}: {e}")
    try:
        _extract_pipeline_yaml(str(path))
    except Exception as e:  # noqa: BLE001
        problems.append(f"kfp.Client's package reader: {e.__class__.__name__}: {e}")
    return problems


def read_spec(path: Path) -> dict:
    """The PipelineSpec in a file: a pipeline package (.yaml, its first document), a PipelineJob
    JSON (its pipelineSpec) or a PipelineSpec JSON.
    """
    import yaml

    try:
        if path.suffix in PACKAGE_SUFFIXES:
            documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
            document = documents[0] if documents else None
        else:
            document = json.loads(path.read_text())
    except (yaml.YAMLError, ValueError) as e:  # ValueError: JSON's and UTF-8's
        reason = " ".join(str(e).split())  # one line: YAML's error spans several
        raise BadInput(f"{path}: not a pipeline spec ({e.__class__.__name__}: {reason})") from None
    if not isinstance(document, dict):
        raise BadInput(f"{path}: not a pipeline spec (no mapping in it)")
    return document.get("pipelineSpec", document)


def check_file(path: Path, image: str | None = None) -> list[Violation]:
    """The rules and the KFP SDK's loaders, on a compile-kfp output (package, PipelineJob or
    spec). A package is loaded as it is; the spec of a JSON file is loaded as YAML, the only
    form kfp.Client and the KFP UI upload.
    """
    spec = read_spec(path)
    violations = check_spec(spec, image)
    if path.suffix in PACKAGE_SUFFIXES:
        problems = load_package_with_kfp_sdk(path)
    else:  # the spec as the package kfp.Client and the KFP UI would be given
        import yaml

        with tempfile.TemporaryDirectory() as folder:
            package = Path(folder) / "pipeline.yaml"
            package.write_text(yaml.safe_dump(spec, sort_keys=True))
            problems = load_package_with_kfp_sdk(package)
    violations += [Violation("<pipeline>", "kfp-sdk", problem) for problem in problems]
    return violations
