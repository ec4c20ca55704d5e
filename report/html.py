"""The run report as one self-contained HTML file: inline CSS, PNGs embedded as data URIs.

One file a user can attach to a ticket or open from a CI artifact, with no server and no
notebook. The page is a Jinja2 template (templates/report.html.j2) with autoescaping: every
value from a run is escaped there, nothing is fetched from the network. This module turns the
report's facts into the rows and cells the template lays out.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ingest.dataset import EVAL, TEST, TRAIN
from ingest.manifest import ImageSizes
from report.plots import Charts
from report.records import (
    AnomalyFacts,
    DatasetFacts,
    EvaluationFacts,
    MisclassifiedFacts,
    MistakeFacts,
    NotRun,
    PushFacts,
    RunReport,
    TfliteFacts,
    TrainingFacts,
    ValidationFacts,
)
from report.summary import (
    tflite_drop_text,
    tflite_latency_text,
    tflite_push_text,
    tuning_text,
)
from trainer.config import settings_of
from trainer.memory import human
from trainer.record import MemberRecord, SkipDecision, WarmStart
from trainer.tuning import TuningRecord, settings_text

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd;
       padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left;
         overflow-wrap: anywhere; }
table { max-width: 100%; }
th { background: #f4f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #17692f; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.muted { color: #666; } code { background: #f4f6f8; padding: 0 .25em; border-radius: 3px;
       word-break: break-all; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; }
nav a { margin-right: 1em; }
summary { cursor: pointer; color: #4878a8; margin: .4em 0; }
"""

SECTION_KEYS = ("dataset", "validation", "training", "evaluation", "misclassified", "push",
                "tflite")
# A table of more rows than this (one per class, say) is folded: the page stays scannable.
FOLD_ROWS = 30


def sections(split: str | None) -> list[tuple[str, str]]:
    """(id, heading) of each section; the mistakes' heading names the evaluated split."""
    names = {"dataset": "Dataset", "validation": "Data validation", "training": "Training",
             "evaluation": f"Evaluation on the {split} split" if split else "Evaluation",
             "misclassified": f"Misclassified {split} images" if split
             else "Misclassified images", "push": "Push", "tflite": "TFLite model"}
    return [(key, names[key]) for key in SECTION_KEYS]



@functools.cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("report.html.j2")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One value as the template shows it: text, num (aligned right), code, ok, bad, muted."""

    text: str
    kind: str = "text"
    prefix: str = ""  # plain text around a code cell
    suffix: str = ""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def num(text: str) -> Cell:
    """A number already formatted, aligned right like the others."""
    return Cell(text, "num")


def cell(value: Any) -> Cell:
    if isinstance(value, Cell):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Cell(_fmt(value), "num")
    return Cell(_fmt(value))


def _rows(rows: Iterable[Sequence[Any]]) -> list[list[Cell]]:
    return [[cell(value) for value in row] for row in rows]


def _pairs(items: Mapping[str, Any]) -> list[tuple[str, Cell]]:
    """Label -> value rows; numbers are not right-aligned here (one value per row)."""
    pairs = []
    for key, value in items.items():
        shown = cell(value)
        pairs.append((key, Cell(shown.text) if shown.kind == "num" else shown))
    return pairs


def _code(text: Any, suffix: str = "", prefix: str = "") -> Cell:
    return Cell(str(text), "code", prefix, suffix) if text else Cell(prefix + "n/a" + suffix)


def _verdict(ok: bool | None, yes: str, no: str) -> Cell:
    if ok is None:
        return Cell("n/a", "muted")
    return Cell(yes, "ok") if ok else Cell(no, "bad")


def _figure(png: Path | None, caption: str) -> dict[str, str] | None:
    if png is None or not png.is_file():
        return None
    return {"data": base64.b64encode(png.read_bytes()).decode(), "caption": caption,
            "name": png.name}


def _missing(section: NotRun) -> dict[str, Any]:
    return {"missing": {"why": section.why}}


def _converted(converted: Mapping[str, Any] | None) -> str:
    """dataset.json's `converted`, the JSON object ingest/dataset.py wrote (DatasetManifest
    keeps it untyped: no stage decides on it).
    """
    if not converted:
        return "n/a"
    if not converted.get("count"):
        return "none"
    sources = ", ".join(f"{n} {kind}" for kind, n in converted["from"].items())
    return f"{converted['count']} to {converted['to']} ({sources})"


def _duplicates(duplicates: Mapping[str, Any] | None) -> str:
    """Across splits (leakage, only present when --allow-duplicates kept them) and within."""
    if not duplicates:
        return "n/a (not counted by the ingest that wrote this data)"
    within = ", ".join(f"{split} {n}" for split, n in duplicates["within_split"].items())
    across = duplicates["across_splits"]
    kept = " (kept with --allow-duplicates; listed in dataset.json)" if across else ""
    return f"{across} across splits{kept}; extra copies within a split: {within}"


_SHAPES_SHOWN = 5


def _shapes_seen(data: DatasetFacts) -> list[tuple[str, int]]:
    """Ingest's most common shapes, most common first, without its `other` count."""
    return [(k, v) for k, v in data.image_shapes_seen.items() if k != "other"]


def _source_shapes(data: DatasetFacts) -> str:
    """One line: how many sizes, pointing at the sizes table; never one entry per size."""
    shapes = _shapes_seen(data)
    common = ", ".join(f"{k}: {v:,}" for k, v in shapes[:_SHAPES_SHOWN])
    sizes = data.sizes
    if not sizes:  # ingested before sizes were summarized: the shapes, cut short
        more = len(shapes) - _SHAPES_SHOWN + (1 if "other" in data.image_shapes_seen else 0)
        return (common + (f" (and {more} more)" if more > 0 else "")) or "n/a"
    distinct = sizes.distinct_sizes or len(shapes)
    if distinct == 1:
        return common or "n/a"
    return f"{distinct:,} distinct sizes in {sizes.count:,} images: see Image sizes below"


def _size_rows(sizes: ImageSizes | None) -> list[list[Cell]]:
    """The min, median and max of height, width and short side, when the sizes vary."""
    if not sizes or sizes.distinct_sizes < 2:
        return []
    return _rows([name.replace("_", " "), *sizes.stats(name)]
                 for name in ("height", "width", "short_side"))


def _common_sizes(data: DatasetFacts) -> list[list[Cell]]:
    return _rows([shape, count] for shape, count in _shapes_seen(data)[:_SHAPES_SHOWN])


def _model_shape(data: DatasetFacts) -> str:
    if not data.image_shape:
        return "n/a"
    text = "x".join(map(str, data.image_shape))
    if data.sizes_vary:
        text += " (the median size: sizes vary, and the run chooses the model's input)"
    # ingest/dataset.py choose_channels' record, kept by dataset.json as the object it wrote.
    chosen = data.channels_chosen or {}
    if chosen.get("chosen_by") == "ingest" and chosen.get("gray_images") \
            and chosen.get("colour_images"):
        text += f"; {chosen['why']}"
    return text


def _dataset(data: DatasetFacts | NotRun, charts: Charts, split: str | None) -> dict[str, Any]:
    if isinstance(data, NotRun):
        return _missing(data)
    splits = data.splits
    names = list(next(iter(splits.values())).per_class) if splits else []
    rows = [["all classes", *(counts.examples for counts in splits.values())]]
    rows += [[name, *(counts.per_class.get(name, 0) for counts in splits.values())]
             for name in names]
    origins = {s: counts.origin for s, counts in splits.items() if counts.origin}
    formats = {s: ", ".join(f"{k} {v}" for k, v in counts.image_formats.items())
               or "n/a (TFDV counts formats from 100 images up)" for s, counts in splits.items()}
    span = f" (span {data.span})" if data.span is not None else ""
    return {
        "pairs": _pairs({
            "data": _code(data.data_root, span),
            "examples (ImportExampleGen)": _code(data.examples),
            "statistics (StatisticsGen)": _code(data.statistics),
            "image shape the model gets": _model_shape(data),
            "image shapes in the source": _source_shapes(data),
            "image formats": "; ".join(f"{s}: {f}" for s, f in formats.items()),
            "files skipped at ingest": data.skipped_files,
            "image formats and modes at ingest": ", ".join(
                f"{k}: {v}" for k, v in data.image_modes.items()) or "n/a",
            "re-encoded at ingest": _converted(data.converted),
            "duplicate images": _duplicates(data.duplicates),
            "where each split came from": "; ".join(f"{s}: {o}" for s, o in origins.items())
            or "n/a",
            "what each split is for": _split_roles(split),
        }),
        "header": ["class", *splits],
        "rows": _rows(rows),
        "figure": _figure(charts.class_balance, "Class balance per split"),
        "counts_differ": data.dataset_json_matches_run is False,
        "gone": list(data.missing),
        "splits_from": data.splits_from,
        "sizes": _size_rows(data.sizes),
        "common_sizes": _common_sizes(data),
        "sizes_figure": _figure(charts.image_sizes,
                                "Image heights and widths in the source, before any resize"),
    }


def _split_roles(split: str | None) -> str:
    """What each split is for, given the split the Evaluator scores."""
    if split == TEST:
        return (f"{TRAIN}: fitting; {EVAL}: early stopping and checkpoint choice; {TEST}: the "
                "reported accuracy and the blessing (nothing is chosen on it)")
    return (f"{TRAIN}: fitting; {EVAL}: early stopping AND the reported accuracy (no {TEST} "
            f"split: add a {TEST}/ folder for an untouched estimate)")


def _validation(data: ValidationFacts | NotRun) -> dict[str, Any]:
    if isinstance(data, NotRun):
        return _missing(data)
    allowed = set(data.allowed_anomaly_types)
    drift_ok = all(m.distance <= m.threshold for m in data.drift)

    def accepted(anomaly: AnomalyFacts) -> bool:
        return anomaly.anomaly_type in allowed or anomaly.bookkeeping

    blocking = [a for a in data.anomalies if not accepted(a)]
    passed = data.gate_state in ("executed", "cached") and not blocking and drift_ok
    return {
        "verdict": _verdict(passed, "passed", "REJECTED the data"),
        "gate": data.gate_state,
        "anomalies": _rows([a.split, a.feature, a.anomaly_type, a.description,
                            "yes (ingest's source path: the model never reads it)"
                            if a.bookkeeping else "yes" if accepted(a) else "no"]
                           for a in data.anomalies),
        "anomalies_uri": _code(data.anomalies_uri),
        "drift": _rows([m.split, m.distance, m.threshold,
                        "ok" if m.distance <= m.threshold else "DRIFTED"] for m in data.drift),
        "drift_compared": data.drift_compared,
        "drift_missing": data.drift_missing,
        "drift_baseline": _code(data.drift_baseline),
        "no_baseline": data.drift_baseline is None,
    }


# Training settings the report shows, by dotted path (trainer/config.py).
_CONFIG_KEYS = ("model.kind", "model.members", "optimizer.epochs", "optimizer.batch_size",
                "optimizer.kind", "optimizer.learning_rate", "optimizer.lr_schedule",
                "optimizer.label_smoothing", "augmentation.flip", "augmentation.translate",
                "runtime.precision")


def _warm_start(record: WarmStart | None) -> str | Cell:
    if not record:
        return "random initialization"
    if record.used:
        return _code(record.origin, prefix=f"the weights of served version {record.version} "
                                           "(warm start): ")
    return f"random initialization; warm start not possible: {record.why}"


def _skip(decision: SkipDecision | None) -> str:
    if not decision:
        return "not asked"
    verb = (f"training skipped: served version {decision.version} handed on"
            if decision.skip else "trained")
    return f"{verb}; {decision.why}"


def _training(data: TrainingFacts | NotRun, charts: Charts) -> dict[str, Any]:
    if isinstance(data, NotRun):
        return _missing(data)
    config = settings_of(data.config)
    last = {k: v[-1] for k, v in data.history.items() if v}
    eval_split = data.eval_split  # early stopping's split, not the Evaluator's
    # An ensemble: the epochs, last epoch and curves are its first network's.
    first = f" (network 1 of {len(data.members)})" if data.members else ""
    return {
        "pairs": _pairs({
            "Trainer": data.state,
            "recipe": f"{data.recipe or 'n/a'}"
            + (f" ({data.recipe_reason})" if data.recipe_reason else ""),
            "backbone": data.backbone.text() if data.backbone else "none "
            "(trained from scratch)",
            "epochs run" + first: data.epochs_run,
            **({"networks averaged (model.members)": _networks(data.members, eval_split)}
               if data.members else {}),
            "fitted on / validated on" if data.refit else "fitted on / early stopping on":
            f"{data.train_split} split ({data.num_train} examples) / {eval_split} split "
            f"({data.num_eval} examples)",
            "training input": data.input.reason if data.input else "n/a",
            "started from": _warm_start(data.warm_start),
            "--skip-if-unchanged": _skip(data.skip_if_unchanged),
            f"final {eval_split}-split accuracy (no test-time augmentation)":
                _fmt(data.final_eval_accuracy)
                + (" (trained on with --refit: not an estimate)" if data.refit else ""),
            "fit time": f"{_fmt(data.fit_seconds, 1)} s"
            + (f" ({data.train_images_per_second:.0f} training images/s)"
               if data.train_images_per_second else ""),
            "last epoch" + first: ", ".join(f"{k} {_fmt(v)}" for k, v in last.items()),
            "model": _code(data.model),
            "TensorBoard logs": _code(data.tensorboard_dir),
        }),
        "config": _rows([k, config[k]] for k in _CONFIG_KEYS if k in config),
        "figure": _figure(charts.training_curves,
                          f"Loss and accuracy per epoch, {data.train_split} vs {eval_split}"
                          + first),
        **_tuning(data.tuning, data.skip_if_unchanged),
    }


def _networks(members: tuple[MemberRecord, ...], eval_split: str) -> str:
    """An ensemble's networks: each one's seed, fit time and accuracy alone."""
    each = "; ".join(f"seed {m.seed}: {_fmt(m.final_eval_accuracy)} alone, "
                     f"{_fmt(m.fit_seconds, 1)} s" for m in members)
    return (f"{len(members)}, the model answers with the mean of their logits ({each}; "
            f"{eval_split}-split accuracy without test-time augmentation)")


def _tuning(record: TuningRecord | None, skip: SkipDecision | None = None) -> dict[str, Any]:
    """The Tuner's search: a line, and a row per trial (settings, eval accuracy, seconds)."""
    if record is None:
        return {"tuning": None}
    defaults = ", ".join(f"{k}={v}" for k, v in record.defaults.items())
    return {
        "tuning_text": f"{tuning_text(record, skip)}. Searched: {'; '.join(record.space)}. The "
                       f"recipe's values: {defaults}.",
        "tuning": _rows([t.trial, settings_text(t.settings),
                         _fmt(t.eval_accuracy), _fmt(t.seconds, 1),
                         "best" if t.trial == record.best_trial else ""]
                        for t in record.trials),
    }


def _baseline_text(data: EvaluationFacts) -> str:
    if data.class_map_changed:
        return "new class map: no baseline (accepted with --accept-new-classes)"
    if data.baseline_is_candidate:
        return "this same model is the one served (unchanged re-run): no comparison"
    if data.new_model:
        return "none: " + "; ".join(data.new_model.lines())
    if data.baseline_model is None:
        return f"none: {data.baseline_note or 'no version served yet'}"
    change = (data.accuracy or 0) - (data.baseline_accuracy or 0)
    return f"{_fmt(data.baseline_accuracy)} (change {change:+.4f})"


def _evaluation(data: EvaluationFacts | NotRun, charts: Charts, split: str | None
                ) -> dict[str, Any]:
    if isinstance(data, NotRun):
        return _missing(data)
    return {
        "pairs": _pairs({
            "signature evaluated": _code(data.signature),
            "split evaluated": f"{split}" + ("" if split == TEST else
                                             " (no test split: early stopping chose on this "
                                             "split too)"),
            "examples": data.eval_examples,
            "accuracy": _fmt(data.accuracy),
            "baseline accuracy": _baseline_text(data),
            "baseline model (served version)": _code(data.baseline_model),
            "thresholds met": _verdict(data.validation_ok, "yes", "no"),
            "blessing": _verdict(data.blessed, "BLESSED", "NOT blessed"),
            "blessing bar": data.blessing_rule.text if data.blessing_rule else "not recorded",
            "evaluation": _code(data.evaluation_uri),
        }),
        "thresholds": _rows([t.metric, t.slice, t.kind, t.value] for t in data.thresholds),
        "failures": list(data.failures),
        "per_class_heading": f"Accuracy per class on the {split} split",
        "per_class": _rows(data.per_class_accuracy.items()),
        "confused_heading": f"Most confused classes on the {split} split",
        "confused": _rows([p.actual, p.predicted, p.count] for p in data.most_confused),
        "per_class_figure": _figure(charts.per_class_accuracy,
                                    f"Accuracy per class on the {split} split"),
        "confusion_figure": _figure(charts.confusion_matrix,
                                    f"Confusion matrix on the {split} split (rows: actual, "
                                    "columns: predicted)")
        or _figure(charts.confused_pairs,
                   f"The most confused class pairs on the {split} split (actual → predicted)"),
    }


def _most_confident(shown: int) -> str:
    return "; the most confident:" if shown == 1 else f"; the {shown} most confident:"


# Data ingested before ingest stored source paths: the file cannot be named.
NO_SOURCE_PATHS = ("This data was ingested before ingest stored each image's source path, so "
                   "the files cannot be named. Ingest the folder again to see them "
                   "(`python -m pipeline ingest SRC OUT --overwrite`; `run --data SRC` "
                   "ingests again when the folder changes).")


def _source_cell(mistake: MistakeFacts) -> Cell:
    if mistake.source_path:
        return Cell(mistake.source_path, "code")
    return Cell(f"not recorded (record {mistake.index} of the split)", "muted")


def _misclassified(data: MisclassifiedFacts | NotRun, charts: Charts, split: str | None,
                   source: str | None) -> dict[str, Any]:
    if isinstance(data, NotRun):
        return _missing(data)
    scope = ("all" if data.complete else "the first") + f" {data.scanned} {split} images"
    shown = data.shown
    return {
        "text": f"{data.misclassified} of {scope} are misclassified by",
        "signature": data.signature,
        "tail": _most_confident(len(shown)) if shown else ".",
        "figure": _figure(charts.misclassified,
                          f"Misclassified {split} images, numbered as in the table: true / "
                          "predicted (confidence)"),
        "header": ["#", "file", "split", "true", "predicted", "confidence"],
        "rows": _rows([n, _source_cell(m), m.split or split, m.true, m.predicted, m.confidence]
                      for n, m in enumerate(shown, 1)),
        "source": _code(source, prefix="Files are relative to the ingested folder ")
        if source and data.source_paths else None,
        "no_source_paths": NO_SOURCE_PATHS if data.source_paths is False else None,
    }


def _push(data: PushFacts | NotRun, model_name: str | None) -> dict[str, Any]:
    if isinstance(data, NotRun):
        return _missing(data)
    if data.pushed and data.already_served:
        outcome = "already served: this model is the newest version, no new version was created"
    elif data.pushed:
        outcome = "pushed"
    else:
        outcome = "not pushed: the model was not blessed; the serving directory is unchanged"
    items: dict[str, Any] = {"outcome": outcome}
    if data.pushed:
        destination = data.destination or ""
        base = destination.rsplit("/", 1)[0]
        items.update({
            "version": data.version,
            "destination": _code(destination),
            "serve it": _code(f"tensorflow_model_server --model_name={model_name or 'MODEL'} "
                              f"--model_base_path={base} --rest_api_port=8501"),
        })
    if data.inference is not None:
        items["batch inference"] = data.inference.text()
    return {"pairs": _pairs(items)}


def _bytes(size: int) -> str:
    return f"{human(size)} ({size:,} bytes)"


def _tflite(data: TfliteFacts | NotRun, evaluation: EvaluationFacts | NotRun
            ) -> dict[str, Any]:
    """The TFLite model beside the SavedModel: accuracy overall and per class on the same
    split, sizes, latency here, what differs from serving_default, and its push.
    """
    if isinstance(data, NotRun):
        return _missing(data)
    e = data.evaluation
    saved = evaluation.per_class_accuracy if isinstance(evaluation, EvaluationFacts) else {}
    rows = []
    for c in e.per_class:
        theirs = saved.get(c.name)
        rows.append([c.name, c.examples, theirs, c.accuracy,
                     num("n/a") if theirs is None else num(f"{c.accuracy - theirs:+.4f}")])
    push = tflite_push_text(data.pushed, data.version, data.note)
    return {
        "pairs": _pairs({
            "mode": e.mode,
            "split scored": f"{e.split} ({e.examples} images), one at a time in TFLite's "
            "interpreter, each made into pixels as an app is told to (tflite.json)",
            "SavedModel accuracy (serving_default)": _fmt(e.saved_model_accuracy),
            "TFLite accuracy": _fmt(e.accuracy),
            "TFLite against the SavedModel": tflite_drop_text(e),
            "verdict": _verdict(e.blessed, "within the allowed drop: it goes out with the "
                                "version", "not blessed: " + ("its drop could not be checked"
                                                              if e.drop is None else
                                                              "more than the allowed drop")),
            "TFLite file size": _bytes(e.size_bytes),
            "SavedModel size": _bytes(e.saved_model_bytes) + ": graph and variables, without "
            "assets.extra/",
            "batch-1 latency (this host's CPU, TFLite's interpreter)":
                tflite_latency_text(e) + ", on the machine that ran the Evaluator",
            "push": Cell(push, "ok") if data.pushed else Cell(push, "bad")
            if data.pushed is False else Cell(push, "muted"),
        }),
        "differs": list(e.differs_from_serving),
        "per_class_heading": f"Accuracy per class on the {e.split} split: SavedModel and TFLite",
        "per_class": _rows(rows),
    }


NO_CHARTS = Charts()


def render(report: RunReport, charts: Charts = NO_CHARTS) -> str:
    """The page of `report`, with the charts drawn for it (none by default)."""
    split = report.evaluation_split  # the one source of every split name below
    push, dataset = report.push, report.dataset
    destination = push.destination if isinstance(push, PushFacts) else None
    model_name = (destination or "").rstrip("/").split("/")[-2:-1]
    return _template().render(
        title=f"{report.pipeline_name}: run {report.run_id}",
        css=Markup(CSS),  # ours, not a run's
        started=report.started,
        total_seconds=f"{sum(c.seconds for c in report.components):.0f}",
        failed=list(report.failed_components),
        sections=sections(split),
        fold_rows=FOLD_ROWS,
        components=[[Cell(c.name), Cell(c.state), num(f"{c.seconds:.1f}")]
                    for c in report.components],
        views={
            "dataset": _dataset(dataset, charts, split),
            "validation": _validation(report.validation),
            "training": _training(report.training, charts),
            "evaluation": _evaluation(report.evaluation, charts, split),
            "misclassified": _misclassified(
                report.misclassified, charts, split,
                dataset.source if isinstance(dataset, DatasetFacts) else None),
            "push": _push(push, model_name[0] if model_name else None),
            "tflite": _tflite(report.tflite, report.evaluation),
        },
    ) + "\n"
