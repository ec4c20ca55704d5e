"""The default accuracy bar (pipeline/blessing.py) and the run's last line about it.

The rule's arithmetic and the console's wording are checked directly; one real pipeline run
checks that a 2-class model no better than chance is not blessed under the defaults (the
10-class case, after a real push, is in test_digits_demo.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import imagegen
from conftest import run_cli
from pipeline.blessing import RULE, chance_bar, thresholds
from report.summary import ComponentRun, RunSummary, format_summary, per_class_text
from trainer.backbones.provenance import WeightsSource

LITE0 = WeightsSource("efficientnet_lite0", "imagenet", "", "", "Apache-2.0", "ImageNet")


def test_the_rule_on_balanced_splits() -> None:
    two = chance_bar("test", ("a", "b"), {"a": 75, "b": 75}, 150)
    assert (two.chance, two.bar, two.capped) == (0.5, 0.582, False)
    assert two.text() == ("58.2 %: chance 50.0 % (always answering `a`) plus 2 standard errors "
                          "on 150 test images")
    names = [str(d) for d in range(10)]
    ten = chance_bar("test", names, dict.fromkeys(names, 100), 1000)
    assert (ten.chance, ten.bar, ten.capped) == (0.1, 0.119, False)


def test_chance_is_the_most_common_class_share() -> None:
    """On a test split of 90 % cats, always answering "cat" scores 90 %: 0.5 is no bar."""
    bar = chance_bar("test", ("cat", "dog"), {"cat": 900, "dog": 100}, 1000)
    assert bar.chance_class == "cat" and bar.chance == 0.9
    assert bar.bar == math.ceil(1000 * (0.9 + 2 * math.sqrt(0.9 * 0.1 / 1000))) / 1000 == 0.919


def test_tiny_splits_are_capped_halfway_to_perfect() -> None:
    bar = chance_bar("test", ("a", "b"), {"a": 3, "b": 3}, 6)
    assert bar.capped and bar.bar == 0.75  # 5 of 6 right; 2 standard errors would need 6
    assert "too few images to tell a model from chance" in bar.text()


def test_unknown_class_counts_are_taken_as_balanced() -> None:
    for counts in (None, {}, {"a": 1, "b": 1, "c": 1}):  # the last does not add up to 30
        bar = chance_bar("eval", ("a", "b", "c"), counts, 30)
        assert bar.chance == pytest.approx(1 / 3) and bar.chance_class is None
        assert "per-class counts unknown" in bar.text()


def _tail(n: int, p: float, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in logs (comb(5000, i) overflows a float)."""
    def log_term(i: int) -> float:
        return (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                + i * math.log(p) + (n - i) * math.log1p(-p))

    return sum(math.exp(log_term(i)) for i in range(k, n + 1))


@pytest.mark.parametrize("num_classes, examples", [(2, 150), (2, 40), (3, 18), (10, 359),
                                                   (10, 1000), (100, 5000)])
def test_a_chance_level_model_rarely_clears_the_bar(num_classes: int, examples: int) -> None:
    """A model that guesses right with chance's probability, scored on the balanced split, is
    blessed at most 3 % of the time; one that answers a single class never is.
    """
    names = [f"c{i}" for i in range(num_classes)]
    per_class = {name: examples // num_classes for name in names}
    per_class[names[0]] += examples - sum(per_class.values())
    bar = chance_bar("test", names, per_class, examples)
    needed = math.ceil(round(bar.bar * examples, 6))  # correct answers to reach the bar
    assert bar.bar > bar.chance and max(per_class.values()) < needed
    assert _tail(examples, bar.chance, needed) <= 0.03


def test_an_explicit_min_accuracy_wins_and_says_what_the_default_would_be() -> None:
    chosen = thresholds(0.9, 0.02, "test", ("a", "b"), {"a": 75, "b": 75}, 150)
    assert (chosen.min_accuracy, chosen.max_regression, chosen.explicit) == (0.9, 0.02, True)
    record = chosen.record()
    assert record["source"] == "--min-accuracy" and record["default"]["bar"] == 0.582
    assert record["text"].startswith("90.0 %: set by --min-accuracy (the default rule's bar "
                                     "would be 58.2 %")
    default = thresholds(None, 0.01, "test", ("a", "b"), {"a": 75, "b": 75}, 150)
    assert default.min_accuracy == 0.582 and default.record()["source"] == "default rule"
    with pytest.raises(ValueError, match=r"thresholds.min_accuracy \(.*\) must be in"):
        thresholds(1.5, 0.01, "test", ("a", "b"), None, 10)


def test_help_states_the_rule() -> None:
    from cli.main import build_parser

    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in ("run", "compile-kfp"):
        text = " ".join(subcommands[command].format_help().split())
        assert "better than chance: the share of the evaluation split's most common class" in text
        assert "58.2 % for 150 images of 2 balanced classes" in text
        assert "A name with no served version yet starts a new model" in text
    assert RULE.startswith("better than chance")
    from cli import main

    with pytest.raises(SystemExit) as exit_info:  # refused before anything runs
        main(["run", "--min-accuracy", "90"])
    assert exit_info.value.code == 2


def test_the_console_names_classes_and_lists_the_extremes_of_many() -> None:
    summary = RunSummary("p", "r", [ComponentRun("Evaluator", "executed", 1.0)],
                         class_names=["cat", "dog"], per_class_accuracy={"0": 0.75, "1": 0.5})
    assert per_class_text(summary.named_per_class_accuracy()) == "per class: cat: 0.75, dog: 0.50"
    many = {f"class{i:02d}": i / 100 for i in range(30)}
    text = per_class_text(many)
    assert text.startswith("per class (30 classes; all in the report): the 5 worst class00: "
                           "0.00, class01: 0.01")
    assert text.endswith("the 5 best class29: 0.29, class28: 0.28, class27: 0.27, class26: "
                         "0.26, class25: 0.25")
    assert "class10" not in text


def test_a_new_model_line_names_the_model_name_setting_the_readers_way() -> None:
    from cli.main import flag_name
    from serving.new_model import NewModel

    note = NewModel(name="pets-v2", path="/models/pets-v2", serving_dir="/models",
                    num_classes=2, same_classes=("pets",))
    summary = RunSummary("p", "r", [], new_model=note)
    on_cli = [line for line in format_summary(summary, flag_name) if "same 2 classes" in line]
    assert on_cli == ["  `pets` in /models has the same 2 classes: pass --model-name pets to make "
                      "this run a new version of it"]
    neutral = [line for line in format_summary(summary) if "same 2 classes" in line]
    assert "pass the setting model_name=pets (on Kubeflow: the push-destination run-time " \
           "parameter) to make" in neutral[0]


def test_the_last_line_says_what_replaced_what_and_why() -> None:
    rule = thresholds(None, 0.01, "test", ("ants", "bees"), {"ants": 70, "bees": 83},
                      153).rule()
    summary = RunSummary(
        "p", "r", [], data_root="/data/pets/tfrecords", recipe="transfer", epochs_run=12,
        backbone=LITE0, evaluation_split="test", eval_examples=153,
        accuracy=0.954, baseline_accuracy=0.931, baseline_version=2, blessing_rule=rule,
        blessed=True, pushed=True, pushed_version=3, model_name="pets")
    assert list(format_summary(summary))[-1] == (
        "Trained transfer (efficientnet_lite0, 12 epochs) on pets: 95.4 % on test (153 images);"
        " blessed (at least 62.4 %, the bar for 2 classes on 153 images); pushed as version 3,"
        " replacing version 2 (93.1 %).")
    worse = RunSummary("p", "r", [], data_root="/data/pets", recipe="classic", epochs_run=1,
                       evaluation_split="test", eval_examples=153, accuracy=0.48,
                       baseline_accuracy=0.931, baseline_version=2, blessing_rule=rule,
                       blessed=False, pushed=False, model_name="pets")
    assert list(format_summary(worse))[-1] == (
        "Trained classic (1 epoch) on pets: 48.0 % on test (153 images); not blessed: 48.0 % is "
        "not above chance (54.2 %); 45.1 points below the served version 2 (93.1 %), more than "
        "--max-regression 0.01 allows; the served version 2 stays.")


@pytest.mark.pipeline
def test_a_two_class_model_no_better_than_chance_is_not_blessed(tmp_path: Path) -> None:
    """Images without class signal, 2:1 heads in every split: the model answers one class for
    the whole test split, so it scores 66.7 % at best. The old default (0.5) blessed that; the
    rule's bar is 66.7 % + 2 standard errors on 60 images.
    """
    from report import REPORT_JSON
    from report.summary import summarize_run

    data = tmp_path / "coin"
    imagegen.write_uninformative_folder(data, {"train": {"heads": 8, "tails": 4},
                                               "eval": {"heads": 4, "tails": 2},
                                               "test": {"heads": 40, "tails": 20}})
    serving = tmp_path / "serving"
    code, out, err_lines = run_cli(["run", "--recipe", "classic", "--data", str(data), "--root",
                                    str(tmp_path / "root"), "--serving-dir", str(serving),
                                    "--epochs", "0", "--batch-size", "4"])
    err = "\n".join(err_lines)
    assert code == 0, err
    summary = summarize_run(str(tmp_path / "root" / "metadata" / "image-classifier.sqlite"),
                            "image-classifier")
    assert summary.accuracy <= 2 / 3 + 1e-6 and summary.eval_examples == 60
    assert summary.blessing_rule.min_accuracy == 0.789
    assert summary.blessing_rule.source == "default rule"
    assert summary.blessed is False and summary.pushed is False and not serving.exists()
    new = (f"new model `coin`: {serving.resolve()}/coin holds no version yet, so there is no "
           "baseline and no class-map check")
    assert f"[pipeline] {new} (the model name defaults to the data's name" in err
    assert "pass --model-name" not in err + "\n".join(out)  # no other model to suggest
    assert f"  {new}" in out
    assert "  baseline: none (new model directory: no version served yet)" in out
    assert "  per class: heads: " in "\n".join(out)
    last = next(line for line in out if line.startswith("Trained classic (0 epochs) on coin: "))
    assert "; not blessed: " in last and "is not above chance (66.7 %)" in last
    assert last.endswith("; nothing is served as `coin` yet.")
    report = json.loads((Path(out[-1].removeprefix("Report: ")).parent / REPORT_JSON)
                        .read_text())
    assert report["outcome"] == last
    assert report["evaluation"]["blessing_rule"]["text"].startswith(
        "78.9 %: chance 66.7 % (always answering `heads`) plus 2 standard errors on 60 test")
    assert report["evaluation"]["new_model"]["name"] == "coin"
    html = Path(out[-1].removeprefix("Report: ")).read_text()
    assert "blessing bar" in html and "new model `coin`" in html
