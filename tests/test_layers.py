"""Every test has exactly one layer (unit, pipeline, e2e), and a `unit` test builds no pipeline
run: the rule of tests/conftest.py, checked on the collected suite and on made-up tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import LAYERS, PIPELINE_FIXTURES, layer_of

TESTS = Path(__file__).parent
# Imported at collection, as the whole suite's collection does: the guard of unit tests is on.
pytest.importorskip("tfx")


def test_every_collected_test_has_exactly_one_layer(request: pytest.FixtureRequest) -> None:
    for item in request.session.items:
        layers = {m.name for m in item.iter_markers() if m.name in LAYERS}
        assert len(layers) == 1, f"{item.nodeid}: layers {sorted(layers)}"
        if layers == {"unit"}:
            heavy = PIPELINE_FIXTURES.intersection(item.fixturenames)
            assert not heavy, f"{item.nodeid} is `unit` but uses {sorted(heavy)}"


def test_the_layer_comes_from_the_marker_else_the_fixtures() -> None:
    assert layer_of("t", [], ["tmp_path"]) == "unit"
    assert layer_of("t", [], ["tmp_path", "pipeline_runs"]) == "pipeline"
    assert layer_of("t", ["pipeline"], ["tmp_path"]) == "pipeline"
    assert layer_of("t", ["e2e"], ["digits_run"]) == "e2e"
    assert layer_of("t", ["pipeline", "pipeline"], []) == "pipeline"  # module and test alike


def test_a_unit_test_with_a_pipeline_fixture_or_two_layers_is_refused() -> None:
    with pytest.raises(pytest.UsageError, match=r"marked `unit` but uses .*'prepared'"):
        layer_of("t", ["unit"], ["prepared"])
    with pytest.raises(pytest.UsageError, match="more than one test layer"):
        layer_of("t", ["unit", "pipeline"], [])


def test_every_pipeline_fixture_named_in_conftest_exists() -> None:
    """A renamed fixture would silently drop its tests into `unit`."""
    sources = "\n".join(p.read_text() for p in TESTS.glob("*.py"))
    for name in PIPELINE_FIXTURES:
        assert re.search(rf"^def {name}\(", sources, re.MULTILINE), name


def test_a_unit_test_that_reaches_local_dag_runner_fails(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Through `run`, as a test would reach it: the CLI's error handling must not swallow it."""
    import imagegen
    from cli import main

    assert request.node.get_closest_marker("unit") is not None
    imagegen.write_folder(tmp_path / "photos", {"": 6})
    with pytest.raises(pytest.fail.Exception, match="is a `unit` test but runs LocalDagRunner"):
        main(["run", "--data", str(tmp_path / "photos"), "--root", str(tmp_path / "root"),
              "--serving-dir", str(tmp_path / "serving"), "--recipe", "classic", "--epochs", "1"])
