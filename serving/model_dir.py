"""The model in production: the newest complete numeric version in the push destination.

It is the baseline of the Evaluator (the candidate must not be worse than what is served) and,
through the training statistics the Pusher stores beside it, of the DataGate's drift check.
A version is complete once its saved_model.pb exists: on object stores the Pusher writes that
file last, so a numeric folder without it is a push that has not finished (or crashed), which
TF Serving cannot load and nothing here treats as served.
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
import logging
import re
from collections.abc import Sequence
from typing import Any

from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.utils import proto_utils

from schema import features
from schema.records import Record
from serving.new_model import NewModel

log = logging.getLogger(__name__)

# Where a pushed version keeps the statistics of the data it was trained on. TF Serving ignores
# assets.extra/ apart from its warm-up file.
STATISTICS_DIR = "assets.extra/training_statistics"
# Written by the Evaluator next to its metrics (EvaluationRecord): the served version compared.
PROVENANCE_FILE = "baseline.json"
# The SavedModel protos TF Serving loads a version from (binary, or its text form). Their
# presence is what makes a version folder complete.
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


# Schemes of POSIX filesystems: a folder rename is atomic and flock works. "" is a plain path.
LOCAL_SCHEMES = frozenset({"", "file"})


def is_local(path: str) -> bool:
    """Whether path is on a local/POSIX filesystem (by its scheme), not an object store.

    Local paths and file:// rename a folder atomically and take flock. gs://, s3:// and other
    object stores have neither (TF's filesystems copy object by object); an unknown scheme is
    treated as one of them.
    """
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", str(path))
    return (match.group(1).lower() if match else "") in LOCAL_SCHEMES


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


def version_folders(base: str) -> list[int]:
    """Every numeric folder under base, complete or not, ascending.

    A new version must be larger than all of them: TF Serving may have tried, and given up on,
    an incomplete one, and would not retry that number.
    """
    if not fileio.isdir(base):
        return []
    names = (str(name).rstrip("/") for name in fileio.listdir(base))
    return sorted(int(n) for n in names if n.isdigit() and fileio.isdir(join(base, n)))


def is_complete(version_dir: str) -> bool:
    """Whether TF Serving could load the folder: it holds a SavedModel proto."""
    return any(fileio.exists(join(version_dir, name)) for name in SAVED_MODEL_FILES)


def served_versions(base: str) -> list[int]:
    """Version numbers TF Serving would load from base (complete numeric folders), ascending."""
    return [v for v in version_folders(base) if is_complete(join(base, str(v)))]


def incomplete_versions(base: str) -> list[int]:
    """Numeric folders without a SavedModel proto: pushes to an object store that crashed."""
    return [v for v in version_folders(base) if not is_complete(join(base, str(v)))]


def relative_files(root: str) -> list[str]:
    """Every file under root, as sorted paths relative to it."""
    root = str(root).rstrip("/")
    files = []
    for folder, _, names in fileio.walk(root):
        files += [join(str(folder), str(name))[len(root):].lstrip("/") for name in names]
    return sorted(files)


def file_sha256(path: str) -> str:
    with fileio.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def model_digest(model_dir: str, leave_out: Sequence[str] = ()) -> str:
    """SHA-256 over every file's relative path and bytes, leaving out the stored statistics
    and the folders in `leave_out` (a TFLite model the Pusher does not push).

    The statistics are added at push time, so a served version and the Trainer's model compare
    equal when their model files do.
    """
    root = str(model_dir).rstrip("/")
    digest = hashlib.sha256()
    skipped = tuple(f"{folder.rstrip('/')}/" for folder in (STATISTICS_DIR, *leave_out))
    for relative in relative_files(root):
        if relative.startswith(skipped):
            continue
        digest.update(relative.encode() + b"\0")
        with fileio.open(join(root, relative), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def file_digests(root: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under root: what a copy must reproduce exactly."""
    return {relative: file_sha256(join(root, relative)) for relative in relative_files(root)}


@dataclasses.dataclass(frozen=True)
class ProductionModel:
    version: int
    path: str

    @property
    def statistics(self) -> str | None:
        """The training statistics pushed with this version; None for versions without them."""
        path = join(self.path, STATISTICS_DIR)
        return path if fileio.isdir(path) else None

    def provenance(self) -> ServedVersion:
        return ServedVersion(self.version, self.path, model_digest(self.path), self.statistics)


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    """A served version as the Evaluator found it: the files its digest was taken of."""

    version: int
    path: str
    digest: str
    statistics: str | None = None  # its training statistics (the DataGate's baseline)


def damage(version_dir: str) -> str | None:
    """Why TF Serving could not load this complete version, or None when nothing is seen.

    Checks what a load reads first, without loading the graph (production_model runs in
    several components): the SavedModel proto parses, and the variables it points to exist.
    A version damaged after its push (a truncated copy, a disk error) fails here, as it would
    fail TF Serving's load, instead of inside TFMA with the path of the Evaluator's snapshot.
    The proto is parsed here rather than by TF's loader (loader_impl.parse_saved_model), which
    reads through tf.io.gfile: every file here goes through TFX's fileio, whose filesystems
    (the tests' object store among them) tf.io.gfile does not know.
    """
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    for name in SAVED_MODEL_FILES:
        path = join(version_dir, name)
        if not fileio.exists(path):
            continue
        try:
            with fileio.open(path, "rb") as f:
                data = f.read()
            if name.endswith(".pbtxt"):
                text_format.Parse(data.decode("utf-8"), proto)
            else:
                proto.ParseFromString(data)
        except (OSError, UnicodeDecodeError, message.DecodeError, text_format.ParseError) as e:
            return f"{name} does not parse ({e.__class__.__name__}: {str(e)[:200]})"
        break
    if not proto.meta_graphs:
        return "its SavedModel proto holds no graph"
    if fileio.isdir(join(version_dir, "variables")) and not fileio.exists(
            join(version_dir, "variables", "variables.index")):
        return "variables/variables.index is missing"
    return None


def load_failure(version_dir: str) -> str | None:
    """Why tf.saved_model.load fails on the version (graph and variables), or None.

    What TF Serving does to load it; slow next to the checks of `damage`, so only the
    Evaluator, which loads the baseline next, asks for it (production_model(load=True)).
    """
    import tensorflow as tf

    try:
        tf.saved_model.load(version_dir)
    except Exception as e:  # noqa: BLE001 - any failure means TF Serving cannot load it
        first_line = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        return f"it does not load ({e.__class__.__name__}: {first_line[:200]})"
    return None


def production_model(base: str | None, load: bool = False) -> ProductionModel | None:
    """The newest complete version under base that is not damaged; None before the first push.

    A damaged newer version (see `damage`; with load, also one that tf.saved_model.load
    refuses, such as truncated variables) is skipped with a warning naming it: TF Serving
    cannot load it either, and its availability-preserving policy keeps serving the version
    loaded before, which is the newest loadable one. The next push, numbered above every
    folder, replaces it in service; nothing here deletes it.
    """
    for version in reversed(served_versions(base) if base else []):
        path = join(base, str(version))
        why = damage(path) or (load_failure(path) if load else None)
        if why is None:
            return ProductionModel(version, path)
        log.warning("served version %d (%s) cannot be loaded: %s. It is not used as the "
                    "baseline; the next pushed version replaces it in service (or remove it, "
                    "once TF Serving no longer needs it)", version, path, why)
    return None


def read_json(path: str) -> Any | None:
    """A JSON file on any filesystem TFX's fileio reads (gs://, s3://), or None if absent."""
    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return json.loads(f.read())


def labels_path(version_dir: str) -> str:
    """Where a model (a pushed version or the Trainer's Format-Serving) keeps its class map."""
    return join(version_dir, "assets", features.LABELS_ASSET)


def served_class_names(version_dir: str) -> list[str] | None:
    """A version's class map, assets/labels.txt: the class of label id i on line i; None if
    the version has none.
    """
    path = labels_path(version_dir)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "rb") as f:
        return f.read().decode("utf-8").splitlines()


@dataclasses.dataclass(frozen=True)
class EvaluationRecord(Record):
    """What the Evaluator compared (baseline.json beside its metrics): the candidate, the served
    version it was measured against, and the accuracy bar. Here, not in components/, so the
    report and the summary, which may not import components/, read it through its type.
    """

    FILE = PROVENANCE_FILE

    candidate: str
    production: ServedVersion | None = None  # None: no loadable version was served
    # pipeline/blessing.py EvalThresholds.record(): the bar and how it was set.
    blessing_rule: dict[str, Any] | None = None
    new_model: NewModel | None = None  # the model directory held no version yet
    # False only in records from before new model directories were told apart from ones
    # whose versions none could load.
    new_model_recorded: bool = True
    # The served version is this candidate (an unchanged re-run): nothing to compare.
    baseline_is_candidate: bool = False
    # Accepted with --accept-new-classes: the served model's label ids mean other classes.
    class_map_changed: bool = False

    @classmethod
    def upgrade(cls, fields: dict[str, Any], version: int) -> dict[str, Any]:
        return fields if "new_model" in fields else {**fields, "new_model_recorded": False}


def new_model(base: str, class_names: Sequence[str]) -> NewModel | None:
    """The note for a model directory without a served version; None when it has one."""
    base = str(base).rstrip("/")
    if served_versions(base):
        return None
    serving_dir, _, name = base.rpartition("/")
    return NewModel(name, base, serving_dir, len(class_names),
                    tuple(models_with_class_names(serving_dir, class_names, besides=name)))


def models_with_class_names(serving_dir: str, class_names: Sequence[str],
                            besides: str = "") -> list[str]:
    """Models in serving_dir whose newest served version has exactly these class names."""
    if not serving_dir or not fileio.isdir(serving_dir):
        return []
    found = []
    for entry in sorted(str(n).rstrip("/") for n in fileio.listdir(serving_dir)):
        base = join(serving_dir, entry)
        if entry == besides or entry.startswith(".") or not fileio.isdir(base):
            continue
        versions = served_versions(base)
        if versions and served_class_names(join(base, str(versions[-1]))) == list(class_names):
            found.append(entry)
    return found
