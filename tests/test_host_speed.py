"""`--recipe auto` by a time budget: the fit estimate, the host's rate and its cache.

No real timing: `trainer.host_speed.measure_rate` is the one function replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer import host_speed
from trainer.fit_estimate import estimate_fit, recipe_fit, recipe_flops_per_image
from trainer.host_speed import HostRate, HostSpeed, host_key, host_rate
from trainer.recipes import choose_recipe

CIFAR = (32, 32, 3)


def _rates(**gflops: float):
    """A host_rate that answers these rates (GFLOP/s by dtype) without measuring."""
    asked = []

    def rate(dtype: str) -> HostRate:
        asked.append(dtype)
        return HostRate(gflops[dtype] * 1e9, "measured on this host")

    rate.asked = asked
    return rate


def test_the_estimate_is_the_recipes_arithmetic_over_the_share_of_the_rate() -> None:
    fit = estimate_fit("fast", 10, 45000, 700_000_000, "bfloat16", 400e9, "cached")
    assert fit.share == 0.45 and fit.seconds == pytest.approx(10 * 45000 * 7e8 / (400e9 * 0.45))
    assert fit.rate_text() == "bfloat16 400 GFLOP/s cached"
    # Unmeasured recipes and dtypes take the lowest share.
    assert estimate_fit("classic", 1, 1, 1, "float32", 1.0).share == 0.30
    # An ensemble's networks train one after the other.
    assert estimate_fit("fast", 10, 45000, 700_000_000, "bfloat16", 400e9, members=3).seconds \
        == pytest.approx(3 * fit.seconds)


def test_the_flops_per_image_are_the_roofline_benchmarks() -> None:
    """bench/results/roofline-bf16.json counted fast at 0.7078 GFLOP per training image."""
    assert recipe_flops_per_image("fast", CIFAR) / 1e9 == pytest.approx(0.7078, abs=1e-4)
    wide = recipe_flops_per_image("fast-wide", CIFAR)
    assert 1.5 < wide / recipe_flops_per_image("fast", CIFAR) < 1.6  # 1.25x the channels
    # CIFAR-10 on issue 38's slow bfloat16 host (413 GFLOP/s) and the benchmarks' (883).
    slow = recipe_fit("fast-wide", CIFAR, 45000, "bfloat16", 413e9)
    assert 30 * 60 < slow.seconds < 40 * 60  # it took 1,827 s of Trainer there
    assert recipe_fit("fast-wide", CIFAR, 45000, "bfloat16", 883e9).seconds < 20 * 60


def test_auto_takes_fast_wide_where_it_fits_the_budget() -> None:
    rate = _rates(bfloat16=883)
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True, host_rate=rate)
    assert chosen == "fast-wide", why
    assert "fast-wide would take about 17 min here (bfloat16 883 GFLOP/s measured on this " \
           "host), within the 20-min budget" in why
    assert rate.asked == ["bfloat16"]


def test_auto_falls_back_to_fast_with_the_estimate_when_fast_wide_does_not_fit() -> None:
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True, host_rate=_rates(bfloat16=413),
                                budget_minutes=30)
    assert chosen == "fast", why
    assert ("fast-wide would take about 36 min here (bfloat16 413 GFLOP/s measured on this "
            "host), over the 30-min budget: fast, about 29 min") in why


def test_auto_keeps_the_cheapest_when_nothing_fits_and_says_so() -> None:
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True, host_rate=_rates(bfloat16=413))
    assert chosen == "fast", why
    assert "fast would take about 29 min here, over the 20-min budget" in why
    assert "even the cheapest" in why and "longer than the budget" in why
    # A float32 host has one candidate: fast, with its estimate in float32.
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=False, host_rate=_rates(float32=219))
    assert chosen == "fast" and "float32 219 GFLOP/s" in why and "over the 20-min" in why


def test_epochs_given_replace_the_recipes_in_the_estimate() -> None:
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True, host_rate=_rates(bfloat16=413),
                                epochs=5)
    assert chosen == "fast-wide" and "about 18 min here" in why


def test_members_given_replace_the_recipes_in_the_estimate() -> None:
    """`--set members=2` doubles every candidate's fit: fast-wide no longer fits on the fast
    host.
    """
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True, host_rate=_rates(bfloat16=883))
    assert chosen == "fast-wide", why
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True, host_rate=_rates(bfloat16=883),
                                members=2)
    assert chosen == "fast" and "fast-wide would take about" in why
    assert "over the 20-min budget" in why


def test_grayscale_gets_fast_gray_in_float32_with_its_estimate() -> None:
    rate = _rates(float32=486, bfloat16=883)
    chosen, why = choose_recipe((28, 28, 1), 54000, bfloat16=True, host_rate=rate)
    assert chosen == "fast-gray" and "within the 20-min budget" in why
    assert rate.asked == ["float32"]  # fast-gray computes in float32 even on bfloat16 hosts
    # Its two networks train one after the other: twice one network's fit.
    one = estimate_fit("fast-gray", 8, 54000, recipe_flops_per_image("fast-gray", (28, 28, 1)),
                       "float32", 486e9)
    both = recipe_fit("fast-gray", (28, 28, 1), 54000, "float32", 486e9)
    assert both.seconds == pytest.approx(2 * one.seconds)


def test_without_a_rate_auto_chooses_by_precision_and_says_so() -> None:
    chosen, why = choose_recipe(CIFAR, 45000, bfloat16=True)
    assert chosen == "fast-wide" and "speed is unknown here" in why


def test_the_rate_is_measured_once_then_read_from_the_cache(tmp_path: Path,
                                                            monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(host_speed, "measure_rate", lambda dtype: calls.append(dtype) or 4e11)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert host_rate("bfloat16") == HostRate(4e11, "measured on this host")
    assert host_rate("bfloat16") == HostRate(4e11, "cached for this host")
    assert host_rate("float32").source == "measured on this host"
    assert calls == ["bfloat16", "float32"]
    folder = tmp_path / "tfx-image"
    record = HostSpeed.read(folder)
    assert record.host == host_key() and record.rates == {"bfloat16": 4e11, "float32": 4e11}
    assert HostSpeed.from_json(record.to_json()) == record
    assert [p.name for p in folder.iterdir()] == ["host-speed.json"]  # no temporary left


@pytest.mark.parametrize("text", [
    json.dumps({"host": "another CPU|flags 0|64 cores|tensorflow 2.16.2",
                "rates": {"bfloat16": 1e15}}),  # another host's
    json.dumps({"schema_version": 99, "host": "any", "rates": {"bfloat16": 1e15}}),  # newer
    json.dumps({"host": 3, "rates": "fast"}),  # wrong
    "{not json",  # damaged
])
def test_a_record_of_another_host_or_a_bad_one_is_measured_over(tmp_path: Path, monkeypatch,
                                                                 text: str) -> None:
    monkeypatch.setattr(host_speed, "measure_rate", lambda dtype: 2e11)
    (tmp_path / "host-speed.json").write_text(text)
    assert host_rate("bfloat16", tmp_path) == HostRate(2e11, "measured on this host")
    assert HostSpeed.read(tmp_path).rates == {"bfloat16": 2e11}


def test_a_cache_that_cannot_be_written_still_gives_the_rate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(host_speed, "measure_rate", lambda dtype: 2e11)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert host_rate("float32", blocker / "cache").rate == 2e11


def test_run_measures_this_host_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    """`run` (which trains here) asks the host's rate; the budget flag decides."""
    from cli import build_parser
    from cli.training import trainer_config

    monkeypatch.setattr("trainer.model.bf16_supported", lambda: True)
    monkeypatch.setattr(host_speed, "measure_rate", lambda dtype: 413e9)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    counts = {"train": 45000, "eval": 5000, "test": 10000}
    classes = [f"c{i}" for i in range(10)]
    args = build_parser().parse_args(["run"])
    config = trainer_config(args, classes, CIFAR, counts)
    assert config.recipe == "fast" and "even the cheapest" in config.recipe_reason
    args = build_parser().parse_args(["run", "--time-budget", "40"])
    config = trainer_config(args, classes, CIFAR, counts)
    assert config.recipe == "fast-wide" and "cached for this host" in config.recipe_reason
    args = build_parser().parse_args(["run", "--epochs", "5"])
    config = trainer_config(args, classes, CIFAR, counts)
    assert config.recipe == "fast-wide" and config.optimizer.epochs == 5
