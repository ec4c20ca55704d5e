"""`compile-kfp`: the pipeline `run` runs, compiled to a Kubeflow Pipelines v2 spec and checked.

It writes the pipeline package (PipelineSpec YAML) for the KFP UI and kfp.Client, and TFX's
PipelineJob JSON for Vertex AI Pipelines next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import EXIT_FAILED, EXIT_OK, log
from cli.options import add_pipeline_args, add_span_args
from cli.run_config import config_from_args, run_thresholds
from cli.training import trainer_config
from schema.errors import BadInput, MissingInput


def add_parser(sub: argparse._SubParsersAction) -> None:
    from kubeflow.compile import BEAM_PRESETS, DEFAULT_BEAM_PRESET

    p = sub.add_parser("compile-kfp", help="compile the pipeline to a Kubeflow Pipelines v2 spec",
                       epilog="example: python -m pipeline compile-kfp --output pipeline.yaml "
                              "--pipeline-root gs://bucket/tfx --data-root gs://bucket/data")
    p.add_argument("--output", type=Path, metavar="PACKAGE.yaml",
                   help="where to write the pipeline package: the PipelineSpec YAML that KFP's "
                        "compiler writes, for the KFP UI's upload and kfp.Client. The "
                        "PipelineJob JSON for Vertex AI goes next to it as "
                        "PACKAGE.pipeline_job.json")
    p.add_argument("--check", nargs="?", const=True, default=False, metavar="SPEC",
                   help="check the spec against the open-source KFP backend's rules and load it "
                        "with the KFP SDK: the package just compiled, or an existing SPEC file "
                        "(.yaml package or .json PipelineJob; then nothing is compiled); exit 1 "
                        "naming each task that breaks one")
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
    add_span_args(spans, "default of `span`: the span to train on (default %(default)s: the "
                         "newest)",
                  "default of `span-window`: spans whose train images are fitted")
    p.add_argument("--dataset-info", type=Path,
                   help="dataset.json from `ingest` (class names, image shape, and the "
                        "evaluation split's class counts for the default --min-accuracy); "
                        "default: the built-in digits'")
    p.add_argument("--image-schema",
                   help="where the cluster reads --schema: a path inside the image or a gs:// "
                        "URI (default: the image's copy, for a schema under this repository)")
    beam = p.add_argument_group("Beam", "Where StatisticsGen, Transform and Evaluator run.")
    beam.add_argument("--beam", choices=tuple(BEAM_PRESETS), default=DEFAULT_BEAM_PRESET,
                      help="Beam's local runner in the pod (default), Dataflow, or a Flink/Spark "
                           "job server via the portable runner")
    beam.add_argument("--project", help="GCP project (dataflow)")
    beam.add_argument("--region", help="GCP region (dataflow)")
    beam.add_argument("--job-endpoint", help="Flink/Spark job server HOST:PORT")
    add_pipeline_args(p)
    p.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from ingest.dataset import load_dataset_info
    from kubeflow.compile import (
        beam_args,
        check_package_path,
        compile_pipeline,
        image_path,
        kfp_runner_fields,
    )
    from schema.curated import check_num_classes

    if isinstance(args.check, str):
        return _check_kfp_spec(Path(args.check), None)
    if args.output is None:
        raise BadInput("compile-kfp needs --output (or --check SPEC to check an existing spec)")
    check_package_path(args.output)
    if args.dataset_info:
        info = load_dataset_info(args.dataset_info.parent)
        model_name = args.model_name or args.dataset_info.parent.name
        source = str(args.dataset_info)
    else:
        from ingest.builtin import DIGITS, digits_info

        info = digits_info()
        model_name = args.model_name or DIGITS
        source = "the built-in digits dataset (no --dataset-info)"
    try:
        check_num_classes(args.schema, info.num_classes)
    except BadInput as e:
        raise BadInput(*e.parts, f" (classes from {source})") from None
    config = config_from_args(
        args,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_dir=args.serving_dir,
        model_name=model_name,
        trainer=trainer_config(args, info.class_names, info.image_shape, info.split_counts,
                               trains_here=False, info=info),
        schema_path=args.image_schema or image_path(args.schema),
        splits=tuple(info.split_counts),
        spans=args.span_root or bool(args.span) or args.spans > 1,
        thresholds=_thresholds(args, info, source),
        **kfp_runner_fields(beam_args(
            args.beam, project=args.project, region=args.region, job_endpoint=args.job_endpoint,
            image=args.image, pipeline_root=args.pipeline_root.rstrip("/"),
        )),
    )
    compiled = compile_pipeline(config, args.output, image=args.image)
    _print_outputs(compiled, args.image, config.pipeline_root)
    if args.check:
        return _check_kfp_spec(compiled.package, args.image)
    return EXIT_OK


def _print_outputs(compiled, image: str, pipeline_root: str) -> None:
    """Where each file went and how to upload it, with the paths filled in."""
    package, job = str(compiled.package), str(compiled.pipeline_job)
    print(f"wrote the pipeline package {package} (KFP v2 PipelineSpec YAML, image {image}); its "
          f"run-time parameters default to the compiled values. Upload it as it is:\n"
          f"  KFP UI: Pipelines > Upload pipeline > {compiled.package.name}\n"
          f"  kfp.Client(host=HOST).upload_pipeline({package!r})\n"
          f"  kfp.Client(host=HOST).create_run_from_pipeline_package({package!r}, "
          f"pipeline_root={pipeline_root!r})\n"
          f"  python scripts/upload_pipeline.py --host HOST --spec {package} [--run]\n"
          f"wrote the PipelineJob {job} for Vertex AI Pipelines:\n"
          f"  aiplatform.PipelineJob(display_name=..., template_path={job!r}).submit()")


def _thresholds(args: argparse.Namespace, info, source: str):
    """The run's thresholds, the default bar computed from the dataset info compiled in.

    The data root is a run-time parameter, the bar is not: a run on other data keeps it.
    """
    thresholds = run_thresholds(args, info)
    log.info("blessing: accuracy at least %s; computed from %s, so a run on other data (the "
             "data-root run-time parameter) keeps it: recompile with that data's "
             "--dataset-info, or pass --min-accuracy", thresholds.record()["text"], source)
    return thresholds


def _check_kfp_spec(path: Path, image: str | None) -> int:
    from kubeflow.conformance import check_file

    if not path.is_file():
        raise MissingInput(f"{path}: no such spec file")
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
