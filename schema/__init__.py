"""The data contract: the curated schema (schema.pbtxt) and the feature keys every stage shares.

A leaf package: ingest, Transform, the Trainer, the serving signatures and the clients all name
features through `schema.features`, and nothing here imports the rest of the project.
"""

from pathlib import Path

CURATED_SCHEMA = Path(__file__).resolve().parent / "schema.pbtxt"
