"""Report facts (the RunReport report.facts.collect gathers from a run) generated at a scale
no test pipeline reaches: thousands of image sizes, a thousand classes, long class names.

The summaries come from the project's own functions (ingest's `image_sizes`/`shapes_seen`,
report.facts' `confusion_facts`), so what the report gets has the shape real data gives it.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import numpy as np

from report.records import DatasetFacts, EvaluationFacts, NotRun, RunReport, SplitFacts
from report.summary import ComponentRun
from serving.tflite import ClassAccuracy, TfliteEvaluation

SECTION_KEYS = ("dataset", "validation", "training", "evaluation", "misclassified", "push",
                "tflite")


def report_facts(evaluation_split: str | None = "test", class_names: Sequence[str] = (),
                 **sections: Any) -> RunReport:
    """A report whose sections did not run unless given."""
    return RunReport(
        pipeline_name="p", run_id="r1", started="2026-11-24",
        components=(ComponentRun("Trainer", "executed", 12.34),),
        class_names=tuple(class_names), evaluation_split=evaluation_split,
        **{key: sections.get(key, NotRun(why=f"no {key} here")) for key in SECTION_KEYS})


def photo_shapes(distinct: int, images: int, seed: int = 0) -> collections.Counter:
    """(height, width, 3) -> count: `distinct` sizes of phone photos and web images."""
    rng = np.random.default_rng(seed)
    shapes: set[tuple[int, int, int]] = set()
    while len(shapes) < distinct:
        short = int(rng.integers(96, 3024))
        long = int(short * rng.choice([1.0, 1.25, 1.333, 1.5, 1.778]))
        shapes.add((short, long, 3) if rng.random() < 0.7 else (long, short, 3))
    ordered = sorted(shapes)
    counts = collections.Counter({shape: 1 for shape in ordered})
    for i in rng.integers(0, len(ordered), images - distinct):
        counts[ordered[i]] += 1
    return counts


def sized_dataset(shapes: collections.Counter, class_names: list[str]) -> DatasetFacts:
    """The dataset section of data whose images have `shapes`, split 70/10/20 per class."""
    from ingest.dataset import image_sizes, shapes_seen

    total = sum(shapes.values())
    per_class = {name: total // len(class_names) for name in class_names}

    def split(share: float) -> SplitFacts:
        counts = {name: max(1, int(n * share)) for name, n in per_class.items()}
        return SplitFacts(examples=sum(counts.values()), per_class=counts)

    return DatasetFacts(data_root="/data/photos", examples="/root/Examples/1",
                        statistics="/root/Statistics/2",
                        splits={"train": split(0.7), "eval": split(0.1), "test": split(0.2)},
                        dataset_json="/data/photos/dataset.json", source="/home/u/photos",
                        image_shape=(375, 500, 3), sizes_vary=True,
                        image_sizes=image_sizes(shapes), image_shapes_seen=shapes_seen(shapes))


def class_names(count: int, length: int = 12) -> list[str]:
    """`count` distinct names of `length` characters (long ones: words with spaces)."""
    names = []
    for i in range(count):
        stem = f"class {i:04d} "
        names.append((stem + "of a very long name " * (length // 20 + 1))[:length - 1] + "Z")
    return names


def evaluation(names: list[str], seed: int = 0, per_class: int = 20) -> EvaluationFacts:
    """The evaluation section of a classifier that is right on most images of each class."""
    from report.facts import confusion_facts

    rng = np.random.default_rng(seed)
    n = len(names)
    matrix = np.zeros((n, n), dtype=np.int64)
    for actual in range(n):
        wrong = int(rng.integers(0, per_class // 2))
        matrix[actual, actual] = per_class - wrong
        for predicted in rng.integers(0, n, wrong):
            matrix[actual, predicted] += 1
    accuracy = {name: float(matrix[i, i] / per_class) for i, name in enumerate(names)}
    return EvaluationFacts(state="executed", evaluation_uri="/root/Evaluator/9",
                           signature="serving_default", split="test",
                           eval_examples=n * per_class,
                           accuracy=float(np.trace(matrix) / matrix.sum()),
                           validation_ok=True, blessed=True, per_class_accuracy=accuracy,
                           **confusion_facts(matrix.tolist(), names))


def tflite_evaluation(names: Sequence[str], saved: EvaluationFacts, drop: float = 0.0,
                      max_drop: float = 0.005) -> TfliteEvaluation:
    """The Evaluator's record of a TFLite model `drop` below the SavedModel of `saved` on each
    class (its verdict's sentence in the shape components/tflite_evaluation.py gives it).
    """
    per_class = tuple(ClassAccuracy(name, 20, max(0.0, saved.per_class_accuracy[name] - drop))
                      for name in names)
    accuracy = sum(c.accuracy for c in per_class) / len(per_class)
    blessed = drop <= max_drop
    why = (f"TFLite dynamic: {100 * accuracy:.1f} % on {20 * len(names)} test images, "
           + ("at most 0.5 point below the SavedModel's: pushed with the version" if blessed
              else "more than the 0.5 point below the SavedModel's allowed: not pushed; the "
              "version goes out without a TFLite file"))
    return TfliteEvaluation(
        mode="dynamic", split="test", examples=20 * len(names), accuracy=accuracy,
        per_class=per_class, saved_model_accuracy=saved.accuracy, max_drop=max_drop,
        blessed=blessed, why=why, size_bytes=1_234_567, saved_model_bytes=4_567_890,
        latency_ms_median=0.412, latency_ms_p99=0.987, latency_runs=200,
        differs_from_serving=("It has no test-time augmentation: serving_default averages the "
                              "image and its mirror image.",))
