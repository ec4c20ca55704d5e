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
from report.summary import backbone_text
from trainer.config import settings_of

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

SECTION_KEYS = ("dataset", "validation", "training", "evaluation", "misclassified", "push")
# A table of more rows than this (one per class, say) is folded: the page stays scannable.
FOLD_ROWS = 30


def sections(split: str | None) -> list[tuple[str, str]]:
    """(id, heading) of each section; the mistakes' heading names the evaluated split."""
    names = {"dataset": "Dataset", "validation": "Data validation", "training": "Training",
             "evaluation": f"Evaluation on the {split} split" if split else "Evaluation",
             "misclassified": f"Misclassified {split} images" if split
             else "Misclassified images", "push": "Push"}
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


def _missing(section: Mapping[str, Any]) -> dict[str, Any]:
    return {"missing": {"why": section.get("why", "not recorded")}}


def _converted(converted: Mapping[str, Any] | None) -> str:
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


def _shapes_seen(data: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Ingest's most common shapes, most common first, without its `other` count."""
    return [(k, v) for k, v in (data.get("image_shapes_seen") or {}).items() if k != "other"]


def _source_shapes(data: Mapping[str, Any]) -> str:
    """One line: how many sizes, pointing at the sizes table; never one entry per size."""
    seen = data.get("image_shapes_seen") or {}
    shapes = _shapes_seen(data)
    common = ", ".join(f"{k}: {v:,}" for k, v in shapes[:_SHAPES_SHOWN])
    sizes = data.get("image_sizes")
    if not sizes:  # ingested before sizes were summarized: the shapes, cut short
        more = len(shapes) - _SHAPES_SHOWN + (1 if "other" in seen else 0)
        return (common + (f" (and {more} more)" if more > 0 else "")) or "n/a"
    distinct = sizes.get("distinct_sizes") or len(shapes)
    if distinct == 1:
        return common or "n/a"
    return f"{distinct:,} distinct sizes in {sizes['count']:,} images: see Image sizes below"


def _size_rows(sizes: Mapping[str, Any] | None) -> list[list[Cell]]:
    """The min, median and max of height, width and short side, when the sizes vary."""
    if not sizes or (sizes.get("distinct_sizes") or 0) < 2:
        return []
    return _rows([name.replace("_", " "), sizes[name]["min"], sizes[name]["median"],
                  sizes[name]["max"]] for name in ("height", "width", "short_side")
                 if name in sizes)


def _common_sizes(data: Mapping[str, Any]) -> list[list[Cell]]:
    return _rows([shape, count] for shape, count in _shapes_seen(data)[:_SHAPES_SHOWN])


def _model_shape(data: Mapping[str, Any]) -> str:
    shape = data.get("image_shape")
    if not shape:
        return "n/a"
    text = "x".join(map(str, shape))
    if data.get("sizes_vary"):
        text += " (the median size: sizes vary, and the run chooses the model's input)"
    chosen = data.get("channels_chosen") or {}
    if chosen.get("chosen_by") == "ingest" and chosen.get("gray_images") \
            and chosen.get("colour_images"):
        text += f"; {chosen['why']}"
    return text


def _dataset(data: Mapping[str, Any], pngs: Mapping[str, Path], split: str | None
             ) -> dict[str, Any]:
    if not data.get("available"):
        return _missing(data)
    splits = data["splits"]
    names = list(next(iter(splits.values()))["per_class"]) if splits else []
    rows = [["all classes", *(splits[s]["examples"] for s in splits)]]
    rows += [[name, *(splits[s]["per_class"].get(name, 0) for s in splits)] for name in names]
    origins = {s: v["from"] for s, v in splits.items() if v.get("from")}
    formats = {s: ", ".join(f"{k} {v}" for k, v in v["image_formats"].items())
               or "n/a (TFDV counts formats from 100 images up)" for s, v in splits.items()}
    span = f" (span {int(data['span'])})" if data.get("span") is not None else ""
    return {
        "pairs": _pairs({
            "data": _code(data.get("data_root"), span),
            "examples (ImportExampleGen)": _code(data.get("examples")),
            "statistics (StatisticsGen)": _code(data.get("statistics")),
            "image shape the model gets": _model_shape(data),
            "image shapes in the source": _source_shapes(data),
            "image formats": "; ".join(f"{s}: {f}" for s, f in formats.items()),
            "files skipped at ingest": data.get("skipped_files", "n/a"),
            "image formats and modes at ingest": ", ".join(
                f"{k}: {v}" for k, v in (data.get("image_modes") or {}).items()) or "n/a",
            "re-encoded at ingest": _converted(data.get("converted")),
            "duplicate images": _duplicates(data.get("duplicates")),
            "where each split came from": "; ".join(f"{s}: {o}" for s, o in origins.items())
            or "n/a",
            "what each split is for": _split_roles(split),
        }),
        "header": ["class", *splits],
        "rows": _rows(rows),
        "figure": _figure(pngs.get("class_balance"), "Class balance per split"),
        "counts_differ": data.get("dataset_json_matches_run") is False,
        "gone": list(data.get("missing") or []),
        "splits_from": data.get("splits_from"),
        "sizes": _size_rows(data.get("image_sizes")),
        "common_sizes": _common_sizes(data),
        "sizes_figure": _figure(pngs.get("image_sizes"),
                                "Image heights and widths in the source, before any resize"),
    }


def _split_roles(split: str | None) -> str:
    """What each split is for, given the split the Evaluator scores."""
    if split == TEST:
        return (f"{TRAIN}: fitting; {EVAL}: early stopping and checkpoint choice; {TEST}: the "
                "reported accuracy and the blessing (nothing is chosen on it)")
    return (f"{TRAIN}: fitting; {EVAL}: early stopping AND the reported accuracy (no {TEST} "
            f"split: add a {TEST}/ folder for an untouched estimate)")


def _validation(data: Mapping[str, Any]) -> dict[str, Any]:
    if not data.get("available"):
        return _missing(data)
    anomalies = data["anomalies"]
    allowed = set(data.get("allowed_anomaly_types", []))
    gate = data.get("gate_state")
    drift = data.get("drift", [])
    drift_ok = all(m["distance"] <= m["threshold"] for m in drift)

    def accepted(anomaly: Mapping[str, Any]) -> bool:
        return anomaly["anomaly_type"] in allowed or bool(anomaly.get("bookkeeping"))

    blocking = [a for a in anomalies if not accepted(a)]
    passed = gate in ("executed", "cached") and not blocking and drift_ok
    return {
        "verdict": _verdict(passed, "passed", "REJECTED the data"),
        "gate": str(gate),
        "anomalies": _rows([a["split"], a["feature"], a["anomaly_type"], a["description"],
                            "yes (ingest's source path: the model never reads it)"
                            if a.get("bookkeeping") else "yes" if accepted(a) else "no"]
                           for a in anomalies),
        "anomalies_uri": _code(data.get("anomalies_uri")),
        "drift": _rows([m["split"], m["distance"], m["threshold"],
                        "ok" if m["distance"] <= m["threshold"] else "DRIFTED"] for m in drift),
        "drift_compared": data.get("drift_compared"),
        "drift_missing": data.get("drift_missing"),
        "drift_baseline": _code(data.get("drift_baseline")),
        "no_baseline": data.get("drift_baseline") is None,
    }


# Training settings the report shows, by dotted path (trainer/config.py).
_CONFIG_KEYS = ("model.kind", "optimizer.epochs", "optimizer.batch_size", "optimizer.kind",
                "optimizer.learning_rate", "optimizer.lr_schedule", "optimizer.label_smoothing",
                "augmentation.flip", "augmentation.translate", "runtime.precision")


def _warm_start(record: Mapping[str, Any] | None) -> str | Cell:
    if not record:
        return "random initialization"
    if record.get("used"):
        return _code(record.get("from"), prefix=f"the weights of served version "
                                                f"{int(record['version'])} (warm start): ")
    return f"random initialization; warm start not possible: {record.get('why')}"


def _skip(decision: Mapping[str, Any] | None) -> str:
    if not decision:
        return "not asked"
    verb = ("training skipped: served version {} handed on".format(decision.get("version"))
            if decision.get("skip") else "trained")
    return f"{verb}; {decision.get('why')}"


def _training(data: Mapping[str, Any], pngs: Mapping[str, Path]) -> dict[str, Any]:
    if not data.get("available"):
        return _missing(data)
    config = settings_of(data.get("config", {}))
    history = data.get("history", {})
    last = {k: v[-1] for k, v in history.items() if v}
    eval_split = data.get("eval_split", EVAL)  # early stopping's split, not the Evaluator's
    return {
        "pairs": _pairs({
            "Trainer": data.get("state"),
            "recipe": f"{data.get('recipe') or 'n/a'}"
            + (f" ({data['recipe_reason']})" if data.get("recipe_reason") else ""),
            "backbone": backbone_text(data["backbone"]) if data.get("backbone") else "none "
            "(trained from scratch)",
            "epochs run": data.get("epochs_run"),
            "fitted on / early stopping on": f"{data.get('train_split', TRAIN)} split "
            f"({data.get('num_train')} examples) / {eval_split} split "
            f"({data.get('num_eval')} examples)",
            "training input": (data.get("input") or {}).get("reason", "n/a"),
            "started from": _warm_start(data.get("warm_start")),
            "--skip-if-unchanged": _skip(data.get("skip_if_unchanged")),
            f"final {eval_split}-split accuracy (no test-time augmentation)":
                _fmt(data.get("final_eval_accuracy")),
            "fit time": f"{_fmt(data.get('fit_seconds'), 1)} s"
            + (f" ({data['train_images_per_second']:.0f} training images/s)"
               if data.get("train_images_per_second") else ""),
            "last epoch": ", ".join(f"{k} {_fmt(v)}" for k, v in last.items()),
            "model": _code(data.get("model")),
            "TensorBoard logs": _code(data.get("tensorboard_dir")),
        }),
        "config": _rows([k, config[k]] for k in _CONFIG_KEYS if k in config),
        "figure": _figure(pngs.get("training_curves"),
                          f"Loss and accuracy per epoch, {data.get('train_split', TRAIN)} vs "
                          f"{eval_split}"),
    }


def _baseline_text(data: Mapping[str, Any]) -> str:
    if data.get("class_map_changed"):
        return "new class map: no baseline (accepted with --accept-new-classes)"
    if data.get("baseline_is_candidate"):
        return "this same model is the one served (unchanged re-run): no comparison"
    if data.get("new_model"):
        from serving.model_dir import NewModel

        return "none: " + "; ".join(NewModel.from_dict(data["new_model"]).lines())
    if data.get("baseline_model") is None:
        return f"none: {data.get('baseline_note') or 'no version served yet'}"
    baseline = data.get("baseline_accuracy")
    change = (data.get("accuracy") or 0) - (baseline or 0)
    return f"{_fmt(baseline)} (change {change:+.4f})"


def _evaluation(data: Mapping[str, Any], pngs: Mapping[str, Path], split: str | None
                ) -> dict[str, Any]:
    if not data.get("available"):
        return _missing(data)
    confused = data.get("most_confused") or []
    return {
        "pairs": _pairs({
            "signature evaluated": _code(data.get("signature")),
            "split evaluated": f"{split}" + ("" if split == TEST else
                                             " (no test split: early stopping chose on this "
                                             "split too)"),
            "examples": data.get("eval_examples"),
            "accuracy": _fmt(data.get("accuracy")),
            "baseline accuracy": _baseline_text(data),
            "baseline model (served version)": _code(data.get("baseline_model")),
            "thresholds met": _verdict(data.get("validation_ok"), "yes", "no"),
            "blessing": _verdict(data.get("blessed"), "BLESSED", "NOT blessed"),
            "blessing bar": (data.get("blessing_rule") or {}).get("text", "not recorded"),
            "evaluation": _code(data.get("evaluation_uri")),
        }),
        "thresholds": _rows([t["metric"], t["slice"], t["kind"], t["value"]]
                            for t in data["thresholds"]),
        "failures": list(data.get("failures") or []),
        "per_class_heading": f"Accuracy per class on the {split} split",
        "per_class": _rows((data.get("per_class_accuracy") or {}).items()),
        "confused_heading": f"Most confused classes on the {split} split",
        "confused": _rows([p["actual"], p["predicted"], p["count"]] for p in confused),
        "per_class_figure": _figure(pngs.get("per_class_accuracy"),
                                    f"Accuracy per class on the {split} split"),
        "confusion_figure": _figure(pngs.get("confusion_matrix"),
                                    f"Confusion matrix on the {split} split (rows: actual, "
                                    "columns: predicted)")
        or _figure(pngs.get("confused_pairs"),
                   f"The most confused class pairs on the {split} split (actual → predicted)"),
    }


def _most_confident(shown: int) -> str:
    return "; the most confident:" if shown == 1 else f"; the {shown} most confident:"


# Data ingested before ingest stored source paths: the file cannot be named.
NO_SOURCE_PATHS = ("This data was ingested before ingest stored each image's source path, so "
                   "the files cannot be named. Ingest the folder again to see them "
                   "(`python -m pipeline ingest SRC OUT --overwrite`; `run --data SRC` "
                   "ingests again when the folder changes).")


def _source_cell(mistake: Mapping[str, Any]) -> Cell:
    if mistake.get("source_path"):
        return Cell(mistake["source_path"], "code")
    return Cell(f"not recorded (record {mistake['index']} of the split)", "muted")


def _misclassified(data: Mapping[str, Any], pngs: Mapping[str, Path], split: str | None,
                   source: str | None) -> dict[str, Any]:
    if not data.get("available"):
        return _missing(data)
    scope = ("all" if data.get("complete") else "the first") + f" {data['scanned']} {split} images"
    shown = data["shown"]
    return {
        "text": f"{data['misclassified']} of {scope} are misclassified by",
        "signature": data["signature"],
        "tail": _most_confident(len(shown)) if shown else ".",
        "figure": _figure(pngs.get("misclassified"),
                          f"Misclassified {split} images, numbered as in the table: true / "
                          "predicted (confidence)"),
        "header": ["#", "file", "split", "true", "predicted", "confidence"],
        "rows": _rows([n, _source_cell(m), m.get("split") or split, m["true"], m["predicted"],
                       m["confidence"]] for n, m in enumerate(shown, 1)),
        "source": _code(source, prefix="Files are relative to the ingested folder ")
        if source and data.get("source_paths") else None,
        "no_source_paths": NO_SOURCE_PATHS if data.get("source_paths") is False else None,
    }


def _push(data: Mapping[str, Any], model_name: str | None) -> dict[str, Any]:
    if not data.get("available"):
        return _missing(data)
    if data.get("pushed") and data.get("already_served"):
        outcome = "already served: this model is the newest version, no new version was created"
    elif data.get("pushed"):
        outcome = "pushed"
    else:
        outcome = "not pushed: the model was not blessed; the serving directory is unchanged"
    items: dict[str, Any] = {"outcome": outcome}
    if data.get("pushed"):
        destination = data.get("destination") or ""
        base = destination.rsplit("/", 1)[0]
        items.update({
            "version": data.get("version"),
            "destination": _code(destination),
            "serve it": _code(f"tensorflow_model_server --model_name={model_name or 'MODEL'} "
                              f"--model_base_path={base} --rest_api_port=8501"),
        })
    return {"pairs": _pairs(items)}


def render(report: Mapping[str, Any], pngs: Mapping[str, Path]) -> str:
    split = report.get("evaluation_split")  # the one source of every split name below
    push = report["push"]
    model_name = (push.get("destination") or "").rstrip("/").split("/")[-2:-1]
    return _template().render(
        title=f"{report['pipeline_name']}: run {report['run_id']}",
        css=Markup(CSS),  # ours, not a run's
        started=report["started"],
        total_seconds=f"{sum(c['seconds'] for c in report['components']):.0f}",
        failed=list(report.get("failed_components") or []),
        sections=sections(split),
        fold_rows=FOLD_ROWS,
        components=[[Cell(c["name"]), Cell(c["state"]), num(f"{c['seconds']:.1f}")]
                    for c in report["components"]],
        views={
            "dataset": _dataset(report["dataset"], pngs, split),
            "validation": _validation(report["validation"]),
            "training": _training(report["training"], pngs),
            "evaluation": _evaluation(report["evaluation"], pngs, split),
            "misclassified": _misclassified(report["misclassified"], pngs, split,
                                            report["dataset"].get("source")),
            "push": _push(push, model_name[0] if model_name else None),
        },
    ) + "\n"
