"""Upload a compiled pipeline spec to a Kubeflow Pipelines host with the kfp client.

    python scripts/upload_pipeline.py --host https://KFP_HOST --spec pipeline.json \
        --name image-classifier [--version v2] [--run]

Checks the spec against the open-source backend's rules first (kubeflow/conformance.py) and
refuses to upload one that breaks them. Needs network access to the KFP API (not available on the
development machines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True, help="KFP API endpoint")
    parser.add_argument("--spec", type=Path, required=True, help="output of compile-kfp")
    parser.add_argument("--name", required=True, help="pipeline name on the host")
    parser.add_argument("--version", help="upload as a new version of an existing pipeline")
    parser.add_argument("--run", action="store_true", help="also start a run of it")
    parser.add_argument("--experiment", default="Default")
    args = parser.parse_args(argv)

    job = json.loads(args.spec.read_text())
    if "pipelineSpec" not in job:
        print(f"{args.spec}: not a compile-kfp output (no pipelineSpec)", file=sys.stderr)
        return 2
    # What the open-source backend would refuse at upload or run time, refused here first.
    from kubeflow.conformance import check_file

    violations = check_file(args.spec)
    if violations:
        for violation in violations:
            print(violation.line(), file=sys.stderr)
        print(f"{args.spec}: not uploaded; see docs/deploy.md", file=sys.stderr)
        return 1
    # compile-kfp writes a PipelineJob; the KFP client uploads the PipelineSpec inside it, as
    # YAML (the client's package reader takes .yaml, .zip and .tar.gz only).
    import yaml

    spec_file = args.spec.with_suffix(".pipeline_spec.yaml")
    spec_file.write_text(yaml.safe_dump(job["pipelineSpec"], sort_keys=True))

    import kfp

    client = kfp.Client(host=args.host)
    if args.version:
        pipeline_id = client.get_pipeline_id(args.name)
        uploaded = client.upload_pipeline_version(str(spec_file), args.version,
                                                  pipeline_id=pipeline_id)
    else:
        uploaded = client.upload_pipeline(str(spec_file), pipeline_name=args.name)
    print(f"uploaded {args.spec} as {args.name}: {uploaded}")
    if args.run:
        run = client.create_run_from_pipeline_package(
            str(spec_file), arguments={}, experiment_name=args.experiment,
            run_name=f"{args.name}-{args.version or 'first'}",
        )
        print(f"started run {run.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
