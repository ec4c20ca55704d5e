"""A transfer model's backbone record (assets.extra/backbone.json): the network, where its
weights came from, their SHA-256 and licence.

registry.py resolves it before training; the Trainer keeps it in its training record and writes
it into every transfer model it exports; the run summary, the report and `lineage` read it back.
Kept apart from registry.py (which builds networks) so those readers import no more than this.
"""

from __future__ import annotations

import dataclasses

from schema.records import Record

# In the exported model: TF Serving ignores assets.extra/ apart from its warm-up file.
BACKBONE_FILE = "assets.extra/backbone.json"


@dataclasses.dataclass(frozen=True)
class WeightsSource(Record):
    """Where a backbone's weights come from: what the model, report and lineage record."""

    FILE = BACKBONE_FILE

    backbone: str
    setting: str  # imagenet, none or the path as given
    path: str  # the file read ("" for none, or a Keras download not made yet)
    sha256: str
    licence: str
    origin: str  # the package, URL or user file, in words

    def text(self) -> str:
        """One line for the console summary and the report: network, weights, digest, licence."""
        digest = f", sha256 {self.sha256[:12]}..." if self.sha256 else ""
        return f"{self.backbone}, weights {self.origin}{digest}; licence {self.licence}"
