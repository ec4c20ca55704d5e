"""The schema a local run imports (schema/curated.py run_schema): ImportSchemaGen is cached by
its path, so the path must change exactly when the schema's content does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schema import CURATED_SCHEMA
from schema.curated import SchemaMismatch, label_classes, run_schema, write_schema


def test_an_edited_schema_reaches_the_run_under_another_path(tmp_path: Path) -> None:
    mine = tmp_path / "mine.pbtxt"
    write_schema(3, mine)
    folder = tmp_path / "root" / "schemas"
    first = run_schema(mine, 3, folder)
    assert first.read_bytes() == mine.read_bytes() and first.parent == folder
    assert first.stat().st_mode & 0o777 == 0o644
    assert run_schema(mine, 3, folder) == first  # unchanged: same path, the cache holds

    mine.write_text(mine.read_text() + "# reviewed\n")
    edited = run_schema(mine, 3, folder)
    assert edited != first and edited.read_text().endswith("# reviewed\n")
    assert first.is_file()  # an earlier run's import stays as it was
    assert not list(folder.glob(".*"))  # no temporary file left


def test_the_curated_schema_follows_the_class_count(tmp_path: Path) -> None:
    three = run_schema(CURATED_SCHEMA, 3, tmp_path)
    assert label_classes(three) == 3 and three.name.startswith("schema-3-classes-")
    ten = run_schema(CURATED_SCHEMA, label_classes(CURATED_SCHEMA), tmp_path)
    assert ten.read_bytes() == CURATED_SCHEMA.read_bytes()
    assert three != ten


def test_a_users_schema_is_checked_not_rewritten(tmp_path: Path) -> None:
    mine = tmp_path / "mine.pbtxt"
    write_schema(4, mine)
    with pytest.raises(SchemaMismatch, match="admits labels 0..3"):
        run_schema(mine, 3, tmp_path / "schemas")
    assert not (tmp_path / "schemas").exists()
