"""The image recipe and deploy scripts agree with the pipeline (Docker itself is not available
on the development machines; see docs/deploy.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cli import build_parser
from pipeline.config import PREPROCESSING_FN, RUN_FN

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _copied() -> set[str]:
    from kubeflow.conformance import dockerfile_packages

    return set(dockerfile_packages())


def test_image_contains_every_module_the_pipeline_references_by_path() -> None:
    import components.data_gate
    import components.evaluator
    import components.example_gen
    import components.pusher

    modules = {PREPROCESSING_FN, RUN_FN, components.data_gate.__name__,
               components.evaluator.__name__, components.example_gen.__name__,
               components.pusher.__name__}
    assert {m.split(".")[0] for m in modules} <= _copied()
    assert {"requirements", "schema", "pyproject.toml"} <= _copied()


def test_compile_kfp_default_schema_path_is_inside_the_image() -> None:
    from kubeflow.compile import IMAGE_WORKDIR, image_path

    workdir = re.search(r"^WORKDIR (\S+)", DOCKERFILE, re.M).group(1)
    assert workdir == IMAGE_WORKDIR
    args = build_parser().parse_args(["compile-kfp", "--output", "x.yaml"])
    assert image_path(args.schema) == f"{workdir}/schema/schema.pbtxt"


def test_image_installs_like_make_install() -> None:
    makefile = (REPO / "Makefile").read_text()
    uv = re.search(r"UV_VERSION := (\S+)", makefile).group(1)
    assert f'"uv=={uv}"' in DOCKERFILE
    assert "requirements/lock.txt" in DOCKERFILE
    assert "--no-deps --ignore-requires-python -r requirements/nodeps.txt" in DOCKERFILE


def test_upload_script_refuses_a_file_that_is_not_a_compiled_package(tmp_path: Path,
                                                                     capsys) -> None:
    import runpy

    upload = runpy.run_path(str(REPO / "scripts" / "upload_pipeline.py"))

    def main(path: Path) -> int:
        return upload["main"](["--host", "http://kfp.invalid", "--spec", str(path)])

    # The PipelineJob JSON (for Vertex AI) is not what KFP uploads.
    job = tmp_path / "pipeline.pipeline_job.json"
    job.write_text(json.dumps({"pipelineSpec": {"pipelineInfo": {"name": "p"}}}))
    assert main(job) == 2
    assert "pass the .yaml that compile-kfp --output wrote" in capsys.readouterr().err
    not_spec = tmp_path / "x.yaml"
    not_spec.write_text("hello: 1\n")
    assert main(not_spec) == 2
    # A package that breaks the backend's rules is refused before any connection.
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipelineInfo: {name: Not_A_Name}\nroot: {dag: {tasks: {}}}\n"
                      "schemaVersion: 2.1.0\n")
    assert main(broken) == 1
    assert "[pipeline-name]" in capsys.readouterr().err
