"""The model in production: the newest numeric version in the push destination.

It is the baseline of the Evaluator (the candidate must not be worse than what is served) and,
through the training statistics the Pusher stores beside it, of the DataGate's drift check.
Any orchestrator can read it: it is a folder, not an ML Metadata query, so the pipeline needs
no resolver task (which open-source Kubeflow Pipelines cannot run).

Components that read it declare `READS_PRODUCTION`: both runners turn their caching off, since
the served version changes outside the pipeline and a cached result would compare with a model
that is no longer served.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.utils import proto_utils

# Where a pushed version keeps the statistics of the data it was trained on. TF Serving ignores
# assets.extra/ apart from its warm-up file.
STATISTICS_DIR = "assets.extra/training_statistics"
# Written by the Evaluator next to its metrics: which served version was the baseline.
PROVENANCE_FILE = "baseline.json"


def join(*parts: str) -> str:
    return "/".join(part.rstrip("/") for part in parts)


def push_base(push_destination: str | None) -> str | None:
    """The base directory of a PushDestination as exec properties carry it (JSON)."""
    if not push_destination:
        return None
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(push_destination, destination)
    if destination.WhichOneof("destination") != "filesystem":
        raise NotImplementedError("only filesystem push destinations are supported")
    return destination.filesystem.base_directory.rstrip("/")


def served_versions(base: str) -> list[int]:
    """Version numbers TF Serving would load from base (numeric folders only), ascending."""
    if not fileio.isdir(base):
        return []
    names = (str(name).rstrip("/") for name in fileio.listdir(base))
    return sorted(int(n) for n in names if n.isdigit() and fileio.isdir(join(base, n)))


def model_digest(model_dir: str) -> str:
    """SHA-256 over every file's relative path and bytes, leaving out the stored statistics.

    The statistics are added at push time, so a served version and the Trainer's model compare
    equal when their model files do.
    """
    root = str(model_dir).rstrip("/")
    files = []
    for folder, _, names in fileio.walk(root):
        files += [join(str(folder), str(name)) for name in names]
    digest = hashlib.sha256()
    for path in sorted(files):
        relative = path[len(root):].lstrip("/")
        if relative.startswith(STATISTICS_DIR + "/"):
            continue
        digest.update(relative.encode() + b"\0")
        with fileio.open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ProductionModel:
    version: int
    path: str

    @property
    def statistics(self) -> str | None:
        """The training statistics pushed with this version; None for versions without them."""
        path = join(self.path, STATISTICS_DIR)
        return path if fileio.isdir(path) else None

    def provenance(self) -> dict:
        return {"version": self.version, "path": self.path, "digest": model_digest(self.path),
                "statistics": self.statistics}


def production_model(base: str | None) -> ProductionModel | None:
    """The newest served version under base, or None before the first push."""
    versions = served_versions(base) if base else []
    if not versions:
        return None
    return ProductionModel(versions[-1], join(base, str(versions[-1])))


def write_provenance(folder: str, record: dict) -> None:
    with fileio.open(join(folder, PROVENANCE_FILE), "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True))


def read_provenance(folder: str) -> dict | None:
    path = join(folder, PROVENANCE_FILE)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return json.loads(f.read())
