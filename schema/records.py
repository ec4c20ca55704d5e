"""Typed JSON records that one stage leaves for the next: the base every record type shares.

A record (dataset.json, gate.json, history.json, baseline.json) is written by one package and
read by others. Read with string keys, a renamed key is a silent None three packages away; so
each record is a frozen dataclass owned by the module that writes it (docs/architecture.md,
"Records"), and readers call its `read`, which validates every field with pydantic and names
the file when one is wrong.

Each file carries `schema_version` (the class's SCHEMA_VERSION). A file without one was
written before records were versioned: it is version 1, the current shape, with the defaults
of the fields old files lack. A file from newer code than this one is refused, naming both
versions, rather than read as something it is not. It lives in `schema/`, the lowest package,
so every producer can derive from it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import pydantic

from schema.errors import BadInput

VERSION_KEY = "schema_version"
T = TypeVar("T")


class RecordError(BadInput):
    """A record file that is not valid JSON or not of its type: the message names the file."""


class RecordVersionError(RecordError):
    """A record written by a newer version of the pipeline than the one reading it."""


@functools.cache
def _adapter(cls: type) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(cls)


def _is_local(path: str) -> bool:
    """A plain path (no scheme://): read with pathlib, so ingest needs no TensorFlow."""
    return re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", path) is None or path.startswith("file://")


def _read_text(path: str) -> str | None:
    if _is_local(path):
        local = Path(path.removeprefix("file://"))
        return local.read_text(encoding="utf-8") if local.is_file() else None
    from tfx.dsl.io import fileio

    if not fileio.exists(path):
        return None
    with fileio.open(path, "r") as f:
        return f.read()


def _write_text(path: str, text: str) -> None:
    if _is_local(path):
        local = Path(path.removeprefix("file://"))
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text, encoding="utf-8")
        return
    from tfx.dsl.io import fileio

    fileio.makedirs(path.rsplit("/", 1)[0])
    with fileio.open(path, "w") as f:
        f.write(text)


def parse(cls: type[T], data: Any, source: str) -> T:
    """`data` (parsed JSON) validated as `cls`, a dataclass; RecordError naming `source`.

    For a record's part carried as JSON by something that is not a record (an exec property).
    """
    try:
        return _adapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        raise RecordError(f"{source} is not a valid {cls.__name__} record: {e}") from None


class Record:
    """Mixin for a frozen dataclass stored as one JSON file named FILE in a folder."""

    # Raise it when a field changes meaning or goes away (and teach from_data the old shape);
    # a new field with a default needs no new version: older files load with the default.
    SCHEMA_VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = ""

    def to_data(self) -> dict[str, Any]:
        """The JSON object: schema_version first, then the fields (by their JSON names)."""
        fields = _adapter(type(self)).dump_python(self, mode="json", by_alias=True)
        return {VERSION_KEY: self.SCHEMA_VERSION, **fields}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2) + "\n"

    @classmethod
    def from_data(cls, data: Any, source: str = "<data>") -> Self:
        """The record from a parsed JSON object; RecordError naming `source` if it is not one."""
        if not isinstance(data, dict):
            raise RecordError(f"{source}: a {cls.__name__} record is a JSON object, "
                              f"not {type(data).__name__}")
        version = data.get(VERSION_KEY, 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RecordError(f"{source}: {VERSION_KEY} {version!r} is not a version number")
        if version > cls.SCHEMA_VERSION:
            raise RecordVersionError(
                f"{source} is a {cls.__name__} record of schema version {version}, written by a "
                f"newer version of the pipeline; this one reads up to version "
                f"{cls.SCHEMA_VERSION}. Upgrade the pipeline, or write the record again with "
                "this one")
        fields = cls.upgrade({key: value for key, value in data.items() if key != VERSION_KEY},
                             version)
        return parse(cls, fields, source)

    @classmethod
    def upgrade(cls, fields: dict[str, Any], version: int) -> dict[str, Any]:
        """An older version's fields in the current shape (none older than 1 yet: as they are)."""
        return fields

    @classmethod
    def from_json(cls, text: str, source: str = "<text>") -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:  # a ValueError, but a damaged file, not our bug
            raise RecordError(f"{source} is not valid JSON ({e})") from None
        return cls.from_data(data, source)

    @classmethod
    def path_in(cls, folder: str | os.PathLike) -> str:
        return f"{str(folder).rstrip('/')}/{cls.FILE}"

    @classmethod
    def read(cls, folder: str | os.PathLike) -> Self | None:
        """The record in folder (local or any filesystem TFX's fileio reads); None if absent."""
        path = cls.path_in(folder)
        text = _read_text(path)
        return None if text is None else cls.from_json(text, path)

    def write(self, folder: str | os.PathLike) -> str:
        """Writes FILE into folder (made if missing); returns its path."""
        path = self.path_in(folder)
        _write_text(path, self.to_json())
        return path


def as_data(part: Any) -> Any:
    """A record's part as the JSON it was read from: JSON names, fields left unset omitted;
    None as None.

    For parts passed on as they are (the run summary's JSON, report.json): a record that never
    set a field shows it as absent, as before the part had a type.
    """
    if part is None:
        return None
    return _adapter(type(part)).dump_python(part, mode="json", by_alias=True, exclude_none=True)
