"""The DataGate's record (gate.json): what it found and what it compared, never a decision.

Kept apart from components/data_gate.py (which imports TFDV) so the Trainer, the Pusher and the
report read it cheaply. The gate writes it into its ValidatedStatistics output when it accepts
the data (the Pusher copies it into every pushed version, the Trainer's skip-if-unchanged reads
it) and into its execution's folder when it rejects the data, so the report shows what that run
recorded instead of redoing the comparison against whatever is served later.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from schema.records import Record

REPORT_FILE = "gate.json"


@dataclasses.dataclass(frozen=True)
class Finding:
    split: str
    feature: str
    anomaly_type: str
    description: str
    source: str

    def line(self) -> str:
        return (f"  - split {self.split!r}, feature {self.feature!r}: {self.anomaly_type}: "
                f"{self.description} ({self.source})")


@dataclasses.dataclass(frozen=True)
class DriftMeasurement:
    split: str
    distance: float  # L-infinity distance between the two label distributions
    threshold: float
    baseline: str


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """The data's class map (dataset.json), the served model's (labels.txt), and the change."""

    class_names: tuple[str, ...] | None = None
    served_class_names: tuple[str, ...] | None = None
    change: str | None = None  # None: the same, or nothing to compare with
    class_names_source: str | None = None
    served_class_names_source: str | None = None


@dataclasses.dataclass(frozen=True)
class StatisticsDifference:
    """One statistic (data_gate.py statistics_summary) that differs from the baseline's."""

    split: str
    statistic: str  # the feature and the statistic, e.g. "image mean bytes"
    value: Any
    baseline: Any

    def text(self) -> str:
        return f"{self.split}: {self.statistic} {self.value} (was {self.baseline})"


@dataclasses.dataclass(frozen=True)
class DataComparison:
    """The data's statistics against the served model's training data: facts, no verdict
    (the Trainer decides whether that makes the data unchanged).
    """

    compared: str  # which data, in words: spans where both have one
    splits: tuple[str, ...]
    baseline_splits: tuple[str, ...]
    differences: tuple[StatisticsDifference, ...]


@dataclasses.dataclass(frozen=True)
class GateReport(Record):
    """gate.json. Version 2 nests the class map and replaces the gate's `unchanged` verdict
    with the comparison it was drawn from; version 1 files (no schema_version) still load.
    """

    SCHEMA_VERSION = 2
    FILE = REPORT_FILE

    statistics: str
    # The span these statistics are of, and the window the Trainer fits (None: no spans).
    span: int | None = None
    window_spans: tuple[int, ...] | None = None
    # The served version's training statistics the data was compared with; None: none.
    baseline: str | None = None
    baseline_version: int | None = None
    baseline_span: int | None = None
    drift_compared: str | None = None  # which data the drift check compared, in words
    drift: tuple[DriftMeasurement, ...] = ()
    comparison: DataComparison | None = None
    class_map: ClassMap = ClassMap()
    # Findings let through (--allow-anomaly, ingest bookkeeping), and those that stopped it.
    accepted: tuple[Finding, ...] = ()
    rejected: tuple[Finding, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.rejected

    def artifact_properties(self) -> dict[str, int]:
        """What ML Metadata queries can filter on, set on the ValidatedStatistics artifact:
        whether the class map changed, and the served version the data was compared with and
        how many statistics differ (only when it was compared).
        """
        properties = {"class_map_changed": int(self.class_map.change is not None)}
        if self.comparison is not None and self.baseline_version is not None:
            properties["baseline_version"] = self.baseline_version
            properties["statistics_differences"] = len(self.comparison.differences)
        return properties

    @classmethod
    def upgrade(cls, fields: dict[str, Any], version: int) -> dict[str, Any]:
        if version > 1:
            return fields
        # Version 1: the class map's keys at the top; `unchanged` was the gate's verdict, which
        # is the Trainer's to draw now (the statistics it came from were not recorded).
        keys = {f.name for f in dataclasses.fields(ClassMap)}
        upgraded = {k: v for k, v in fields.items() if k not in keys and k != "unchanged"}
        upgraded["class_map"] = {k: v for k, v in fields.items() if k in keys}
        return upgraded

def execution_folder(statistics_uri: str, execution_id: int, node: str) -> str:
    """Where a gate execution that rejected the data left its record: its own folder under the
    pipeline root (<root>/<node>/.system/executor_execution/<id>, TFX's layout, which keeps it
    after a failure), found from its statistics input (<root>/StatisticsGen/statistics/<id>).
    A failed execution has no output artifact in ML Metadata.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(statistics_uri.rstrip("/"))))
    return os.path.join(root, node, ".system", "executor_execution", str(execution_id))
