"""Where a local run keeps things, and how `run` turns --dataset/--data into ingested TFRecords.

Layout under the run root (default ./tfx_root):
  data/<name>/images, data/<name>/tfrecords   built-in datasets and ingested user folders
  pipelines/<pipeline>/                        TFX pipeline root (artifacts)
  metadata/<pipeline>.sqlite                   ML Metadata store
  logs/<pipeline>-<time>.log                   full log of each run
  reports/<pipeline>/<run>/                    report.html, report.json and the PNGs of each run
  schemas/<schema>-<N>-classes-<digest>.pbtxt  the schema each run imports, named by its content
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from ingest import builtin, spans
from ingest.dataset import DEFAULT_TEST_FRACTION, load_dataset_info
from ingest.dataset import ingest as ingest_folder
from ingest.manifest import DatasetManifest
from ingest.output import SOURCE_FINGERPRINT
from ingest.sources import walk
from schema.errors import BadInput, Setting

log = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class Workspace:
    root: Path
    pipeline_name: str

    @property
    def pipeline_root(self) -> Path:
        return self.root / "pipelines" / self.pipeline_name

    @property
    def metadata_path(self) -> Path:
        return self.root / "metadata" / f"{self.pipeline_name}.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.root / "metadata" / f"{self.pipeline_name}.lock"

    def data_dir(self, name: str) -> Path:
        return self.root / "data" / name

    @property
    def schemas_dir(self) -> Path:
        """The schemas runs import, each named by its content (schema/curated.py run_schema)."""
        return self.root / "schemas"

    def report_dir(self, run_id: str) -> Path:
        return self.root / "reports" / self.pipeline_name / run_id.replace(":", "")

    def new_log_file(self) -> Path:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.root / "logs" / f"{self.pipeline_name}-{stamp}.log"


def source_fingerprint(src: Path) -> str:
    """Paths, sizes and mtimes of every file ingest would read under src: cheap, and changes
    when the data does. The walk is ingest's (links followed, hidden names left out), so a
    change inside a linked class folder is seen; what ingest cannot read counts too.
    """
    digest = hashlib.sha256()
    found = walk(str(src))
    prefix = len(str(src)) + 1
    for path in found.files:
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # gone or swapped since the walk: ingest will say
            size, mtime = -1, -1
        digest.update(os.fsencode(path[prefix:]) + f"\0{size}\0{mtime}\n".encode())
    for path, reason in found.bad:
        digest.update(f"{path[prefix:]}\0{reason}\n".encode())
    return digest.hexdigest()


def ingest_if_changed(
    src: Path, out: Path, eval_fraction: float, test_fraction: float, **policy: Any
) -> DatasetManifest:
    """Ingests src into out unless out already holds an ingest of the same files and settings.

    Re-ingesting unchanged data would give ExampleGen new files and defeat TFX caching.
    `policy` holds ingest's resize/channels/skip_bad/max_pixels/max_file_bytes/
    allow_duplicates settings.
    """
    fingerprint = {"source": str(src.resolve()), "fingerprint": source_fingerprint(src),
                   "eval_fraction": eval_fraction, "test_fraction": test_fraction,
                   **{k: list(v) if isinstance(v, tuple) else v for k, v in policy.items()}}
    marker = out / SOURCE_FINGERPRINT
    if marker.is_file() and json.loads(marker.read_text()) == fingerprint:
        log.info("reusing %s (source unchanged)", out)
        return load_dataset_info(out)
    log.info("ingesting %s -> %s", src, out)
    info = ingest_folder(src, out, eval_fraction=eval_fraction, test_fraction=test_fraction,
                         overwrite=True, **policy)
    marker.write_text(json.dumps(fingerprint, indent=2) + "\n")
    return info


def prepare_data(
    workspace: Workspace,
    dataset: str | None,
    data: Path | None,
    eval_fraction: float,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    span: int = 0,
    **policy: Any,
) -> tuple[str, Path, DatasetManifest]:
    """(dataset name, TFRecords folder, its info) for --dataset NAME or --data DIR.

    For a root of spans, the info is the span's the run reads: `span`, or the newest for 0.
    """
    if data is not None:
        data = data.resolve()
        if span and not spans.is_span_root(data):
            raise spans.SpanError(Setting("target_span", str(span)),
                                  f": {data} holds no span-N folders (ingest with ",
                                  Setting("ingest.span"), " writes them)")
        if Path(DatasetManifest.path_in(data)).is_file():
            return data.name, data, load_dataset_info(data)
        if spans.is_span_root(data):
            chosen = spans.local_window(data, span, 1)[-1]
            return data.name, data, load_dataset_info(spans.span_dir(data, chosen))
        name = data.name
        out = workspace.data_dir(name) / "tfrecords"
        return name, out, ingest_if_changed(data, out, eval_fraction, test_fraction, **policy)
    if dataset == builtin.DIGITS:
        images = builtin.write_digits_folder(workspace.data_dir(dataset) / "images")
        out = workspace.data_dir(dataset) / "tfrecords"
        return dataset, out, ingest_if_changed(images, out, eval_fraction, test_fraction)
    raise BadInput(f"unknown dataset {dataset!r}; built-in: {list(builtin.BUILTIN_DATASETS)}")
