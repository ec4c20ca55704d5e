"""What ingest raises, apart from the modules that raise it, so that each may import them."""

from __future__ import annotations

from schema.errors import BadInput


class IngestError(BadInput):
    """Bad input for ingest; the message names the offending paths and what to do."""


class IngestBusyError(RuntimeError):
    """Another ingest is writing the same OUT; the message names it. Not bad input: retrying
    once it is done works, so the CLI exits 4 (busy), not 2.
    """
