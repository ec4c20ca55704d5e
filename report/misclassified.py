"""The images of the evaluated split that the trained model gets wrong, found through the
signature clients call.

TFMA keeps aggregate metrics, not per-example predictions, so the report runs the Trainer's
model (the one the Evaluator judged) over the evaluated split (test, or eval without one) once
more. On large splits it looks at the first `max_examples` images only and says so; it keeps
only the images it shows. Each mistake names its file by the source path ingest stored in the
example (schema/features.py): ExampleGen reshuffles records, so a record's index says nothing.
"""

from __future__ import annotations

import dataclasses
import glob
import heapq
import os

import numpy as np

from report.records import MisclassifiedFacts, MistakeFacts, NotRun
from report.summary import class_name, gone
from schema import features


@dataclasses.dataclass
class Mistake:
    index: int  # the record's position in the split as ExampleGen wrote it
    true: str
    predicted: str
    confidence: float
    image: bytes = dataclasses.field(repr=False)
    split: str = ""
    # Relative to the ingested folder; None for data ingested before ingest stored it.
    source_path: str | None = None

    def facts(self) -> MistakeFacts:
        """What report.json keeps of it: no image bytes, the confidence to 4 digits."""
        return MistakeFacts(source_path=self.source_path, split=self.split, index=self.index,
                            true=self.true, predicted=self.predicted,
                            confidence=round(self.confidence, 4))


def _unavailable(why: str) -> tuple[NotRun, list[Mistake]]:
    return NotRun(why=why), []


def find_mistakes(
    model_uri: str,
    examples_uri: str,
    class_names: list[str],
    split: str,
    max_examples: int = 2000,
    max_shown: int = 24,
    batch_size: int = 128,
) -> tuple[MisclassifiedFacts | NotRun, list[Mistake]]:
    """(summary, the most confident mistakes first) over the split's first examples."""
    import tensorflow as tf
    from tfx.utils import path_utils

    examples_gone = gone(examples_uri, "the examples (ImportExampleGen)", plural=True)
    if examples_gone:
        return _unavailable(examples_gone)
    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        return _unavailable(f"no {split} split under {examples_uri}")
    serving_dir = path_utils.serving_model_path(model_uri)
    model_gone = gone(serving_dir, "the trained model")
    if model_gone:
        return _unavailable(model_gone)
    serve = tf.saved_model.load(serving_dir).signatures[features.SERVING_SIGNATURE]
    spec = features.raw_example_spec()
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .take(max_examples)
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec))
    )
    # The most confident mistakes only, in a min-heap: memory stays O(max_shown) images however
    # many examples are scanned. The index breaks ties, so Mistakes are never compared.
    shown: list[tuple[float, int, Mistake]] = []
    misclassified = seen = 0
    for batch in dataset:
        images = batch[features.IMAGE_KEY]
        outputs = serve(**{features.SERVING_INPUT: images})
        probabilities = outputs[features.OUTPUT_PROBABILITIES].numpy()
        predicted = probabilities.argmax(axis=1)
        labels = batch[features.LABEL_KEY].numpy()
        paths = batch[features.SOURCE_PATH_KEY].numpy()
        for i in np.flatnonzero(predicted != labels):
            misclassified += 1
            confidence = float(probabilities[i, predicted[i]])
            if len(shown) == max_shown and confidence <= shown[0][0]:
                continue
            mistake = Mistake(seen + int(i), class_name(class_names, str(labels[i])),
                              class_name(class_names, str(predicted[i])), confidence,
                              images[i].numpy(), split, _path(paths[i]))
            entry = (confidence, -mistake.index, mistake)
            if len(shown) < max_shown:
                heapq.heappush(shown, entry)
            else:
                heapq.heapreplace(shown, entry)
        seen += len(labels)
    mistakes = [m for _, _, m in sorted(shown, key=lambda e: (-e[0], -e[1]))]
    summary = MisclassifiedFacts(
        model=serving_dir, signature=features.SERVING_SIGNATURE, split=split, scanned=seen,
        complete=seen < max_examples, misclassified=misclassified,
        source_paths=any(m.source_path for m in mistakes) if mistakes else None,
        shown=tuple(m.facts() for m in mistakes))
    return summary, mistakes


def _path(raw: bytes) -> str | None:
    return raw.decode("utf-8", "replace") if raw else None
