"""When the Evaluator blesses a model: the thresholds, and the default accuracy bar's rule.

The rule, stated here once (`--min-accuracy`'s help, the run summary, report.json, the HTML
report and docs/evaluation.md quote RULE or a BlessingBar's text):

    chance = the share of the evaluation split's most common class: the accuracy of a model
             that always answers it (1/K for K balanced classes, more on unbalanced data)
    bar    = chance + 2 standard errors of a chance-level accuracy on the split's n images,
             2 * sqrt(chance * (1 - chance) / n), at most halfway from chance to 100 %,
             rounded up to 0.1 %

Why this and not a fixed number:
* A fixed bar means something else for every class count: 0.5 blesses a 2-class model that is
  no better than a coin, and refuses a useful 200-class one.
* 1/K is not chance on unbalanced data: on a test split of 90 % cats, "always cat" scores
  90 %. The most common class's share is the best accuracy reachable without looking at the
  image, so a model must beat it to have learnt anything from the pixels.
* A model no better than chance still scores above chance on some splits, by luck: on n images
  its accuracy scatters around chance with a standard error of sqrt(chance (1 - chance) / n).
  Such a model clears chance + 2 standard errors about 2 % of the time (the normal
  approximation of the binomial's upper tail: 2.3 %); a model that answers one class for every
  image scores at most chance and never clears it. The bar comes down toward chance as the
  split grows (150 images of 2 balanced classes: 58.2 %; 1,000 of 10: 11.9 %).
* On a tiny split two standard errors exceed what a good model reaches (6 images of 2 classes:
  90.9 %, all 6 right). The cap, halfway from chance to 100 % (75 % there: 5 of 6), keeps the
  bar within reach of a model that is right on most images; the bar's text then says that the
  split is too small to tell a model from chance reliably.
The bar only asks whether a model learnt something. Whether it is good enough for its use is
what --min-accuracy is for, and whether it is no worse than the served model is
--max-regression's job.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from schema.errors import BadInput, Setting
from serving.tflite import DEFAULT_MAX_TFLITE_DROP

# Standard errors above chance: a chance-level model clears the bar about 2 % of the time.
STANDARD_ERRORS = 2.0
DEFAULT_MAX_REGRESSION = 0.01

RULE = ("better than chance: the share of the evaluation split's most common class, plus 2 "
        "standard errors of a chance-level accuracy on that many images (at most halfway from "
        "chance to 100 %)")


def percent(value: float) -> str:
    """0.58166 -> '58.2 %' (what every verdict prints)."""
    return f"{100 * value:.1f} %"


@dataclasses.dataclass(frozen=True)
class BlessingBar:
    """The default bar of one evaluation split, and the facts it was computed from."""

    split: str
    examples: int
    num_classes: int
    # The share of the most common class, and that class; None: the per-class counts were not
    # known (dataset.json without them), so the split was taken as balanced: chance = 1/K.
    chance: float
    chance_class: str | None
    bar: float
    capped: bool

    def text(self) -> str:
        """The bar with its reason, e.g. "58.2 %: chance 50.0 % ... on 150 test images"."""
        answered = (f"always answering `{self.chance_class}`" if self.chance_class
                    else "1/K: per-class counts unknown, taken as balanced")
        text = (f"{percent(self.bar)}: chance {percent(self.chance)} ({answered}) plus 2 "
                f"standard errors on {self.examples} {self.split} images")
        if self.capped:
            text += (", capped halfway from chance to 100 %: too few images to tell a model "
                     "from chance reliably")
        return text


def chance_bar(split: str, class_names: tuple[str, ...] | list[str],
               per_class: Mapping[str, int] | None, examples: int) -> BlessingBar:
    """The default bar for an evaluation split of `examples` images (the module's rule).

    `per_class` (dataset.json's counts of the split, by class name) gives chance; without it,
    or with counts that do not add up to `examples`, the split is taken as balanced.
    """
    num_classes = len(class_names)
    if examples < 1 or num_classes < 1:
        raise BadInput(f"the {split} split needs images and classes to set a bar, got "
                       f"{examples} images of {num_classes} classes")
    counts = dict(per_class or {})
    if counts and sum(counts.values()) == examples:
        chance_class = max(class_names, key=lambda name: counts.get(name, 0))
        chance = counts.get(chance_class, 0) / examples
    else:
        chance_class, chance = None, 1 / num_classes
    margin = STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / examples)
    cap = chance + (1 - chance) / 2
    # Rounded up to what the verdicts print, so a bar shown as 58.2 % is 0.582 to TFMA too.
    bar = min(1.0, math.ceil(round(min(chance + margin, cap) * 1000, 6)) / 1000)
    return BlessingBar(split, examples, num_classes, chance, chance_class, bar,
                       capped=chance + margin > cap)


@dataclasses.dataclass(frozen=True)
class EvalThresholds:
    """What the Evaluator blesses: accuracy at least `min_accuracy` on the evaluation split,
    and at most `max_regression` (absolute accuracy) below the served version. The TFLite
    model goes with the version when it is at most `max_tflite_drop` below the SavedModel.
    """

    min_accuracy: float
    max_regression: float = DEFAULT_MAX_REGRESSION
    # The rule's bar for this data, and whether --min-accuracy set min_accuracy instead.
    default: BlessingBar | None = None
    explicit: bool = True
    max_tflite_drop: float = DEFAULT_MAX_TFLITE_DROP

    def __post_init__(self) -> None:
        if not 0 <= self.min_accuracy <= 1:
            raise BadInput(Setting("thresholds.min_accuracy"),
                           f" must be in [0, 1], got {self.min_accuracy}")
        if self.max_regression < 0:
            raise BadInput(Setting("thresholds.max_regression"),
                           f" must be >= 0, got {self.max_regression}")
        if not 0 <= self.max_tflite_drop <= 1:
            raise BadInput(Setting("thresholds.max_tflite_drop"),
                           f" must be in [0, 1], got {self.max_tflite_drop}")

    def record(self) -> dict[str, Any]:
        """What the Evaluator records with its execution (as JSON), and the summary and report
        read back as a BlessingRule.
        """
        return dataclasses.asdict(self.rule())

    def rule(self) -> BlessingRule:
        default = self.default
        if default is not None and not self.explicit:
            source, text = "default rule", default.text()
        else:
            source = "--min-accuracy"
            text = f"{percent(self.min_accuracy)}: set by --min-accuracy"
            if default is not None:
                text += f" (the default rule's bar would be {default.text()})"
        return BlessingRule(self.min_accuracy, self.max_regression, source, text, RULE, default,
                            self.max_tflite_drop)


@dataclasses.dataclass(frozen=True)
class BlessingRule:
    """The bar and how it was set: EvalThresholds.record(), which the Evaluator keeps in its
    record (serving/model_dir.py EvaluationRecord.blessing_rule, as JSON: serving/ cannot
    import this package) and the summary reads back with `BlessingRule.parse`.
    """

    min_accuracy: float
    max_regression: float
    source: str  # "default rule" or "--min-accuracy"
    text: str
    rule: str
    default: BlessingBar | None = None  # the rule's bar for this data, when it was computed
    max_tflite_drop: float = DEFAULT_MAX_TFLITE_DROP

    @classmethod
    def parse(cls, data: Any, source: str) -> BlessingRule:
        from schema.records import parse

        return parse(cls, data, source)


def example_bars() -> str:
    """The rule's bar on two typical splits, computed (for `--min-accuracy`'s help)."""
    two = chance_bar("test", ("a", "b"), {"a": 75, "b": 75}, 150)
    ten = chance_bar("test", tuple("0123456789"), dict.fromkeys("0123456789", 100), 1000)
    return (f"{percent(two.bar)} for 150 images of 2 balanced classes, {percent(ten.bar)} for "
            "1,000 of 10")


def thresholds(min_accuracy: float | None, max_regression: float, split: str,
               class_names: tuple[str, ...] | list[str], per_class: Mapping[str, int] | None,
               examples: int, max_tflite_drop: float = DEFAULT_MAX_TFLITE_DROP
               ) -> EvalThresholds:
    """The thresholds of a run: --min-accuracy when given, else the rule's bar for the split."""
    default = chance_bar(split, class_names, per_class, examples)
    if min_accuracy is None:
        return EvalThresholds(default.bar, max_regression, default, explicit=False,
                              max_tflite_drop=max_tflite_drop)
    return EvalThresholds(min_accuracy, max_regression, default, explicit=True,
                          max_tflite_drop=max_tflite_drop)
