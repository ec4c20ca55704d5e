"""bench/cifar10.py: a variant run must not overwrite the file bench/README.md quotes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cifar10 import result_name  # noqa: E402


def test_default_recipe_and_schedule_write_cifar10_json() -> None:
    assert result_name("fast", None) == "cifar10"


def test_epochs_override_gets_its_own_file() -> None:
    assert result_name("fast", 14) == "cifar10-fast-14ep"
    assert result_name("fast-muon", 12) == "cifar10-fast-muon-12ep"


def test_other_recipe_gets_its_own_file() -> None:
    assert result_name("fast-muon", None) == "cifar10-fast-muon"
