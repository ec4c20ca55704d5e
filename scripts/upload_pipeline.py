"""Upload a compiled pipeline package to a Kubeflow Pipelines host with the kfp client.

    python scripts/upload_pipeline.py --host https://KFP_HOST --spec pipeline.yaml \
        [--name image-classifier] [--version v2] [--run]

`--spec` is the .yaml that `compile-kfp --output` wrote; it is uploaded as it is. Checks it
against the open-source backend's rules first (kubeflow/conformance.py) and refuses to upload one
that breaks them. Needs network access to the KFP API (not available on the development
machines).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True, help="KFP API endpoint")
    parser.add_argument("--spec", type=Path, required=True,
                        help="the pipeline package (.yaml) compile-kfp wrote")
    parser.add_argument("--name", help="pipeline name on the host (default: the package's)")
    parser.add_argument("--version", help="upload as a new version of an existing pipeline")
    parser.add_argument("--run", action="store_true", help="also start a run of it")
    parser.add_argument("--experiment", default="Default")
    args = parser.parse_args(argv)

    from kubeflow.conformance import PACKAGE_SUFFIXES, check_file, read_spec
    from schema.errors import BadInput

    if args.spec.suffix not in PACKAGE_SUFFIXES:
        print(f"{args.spec}: not a pipeline package; pass the .yaml that compile-kfp --output "
              "wrote (its .pipeline_job.json is for Vertex AI)", file=sys.stderr)
        return 2
    try:
        spec = read_spec(args.spec)
    except BadInput as e:
        print(e, file=sys.stderr)
        return 2
    if "pipelineInfo" not in spec or "root" not in spec:
        print(f"{args.spec}: not a compile-kfp package (no pipelineInfo and root)", file=sys.stderr)
        return 2
    # What the open-source backend would refuse at upload or run time, refused here first.
    violations = check_file(args.spec)
    if violations:
        for violation in violations:
            print(violation.line(), file=sys.stderr)
        print(f"{args.spec}: not uploaded; see docs/deploy.md", file=sys.stderr)
        return 1

    import kfp

    name = args.name or spec["pipelineInfo"]["name"]
    client = kfp.Client(host=args.host)
    if args.version:
        uploaded = client.upload_pipeline_version(str(args.spec), args.version,
                                                  pipeline_name=name)
    else:
        uploaded = client.upload_pipeline(str(args.spec), pipeline_name=name)
    print(f"uploaded {args.spec} as {name}: {uploaded}")
    if args.run:
        # The compiled pipeline root, given explicitly: the package holds it as
        # defaultPipelineRoot, which the KFP UI reads into its run form; the API takes the run's.
        run = client.create_run_from_pipeline_package(
            str(args.spec), arguments={}, experiment_name=args.experiment,
            run_name=f"{name}-{args.version or 'first'}",
            pipeline_root=spec.get("defaultPipelineRoot"),
        )
        print(f"started run {run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
