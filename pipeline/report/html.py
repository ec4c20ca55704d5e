"""The run report as one self-contained HTML file: inline CSS, PNGs embedded as data URIs.

One file a user can attach to a ticket or open from a CI artifact, with no server and no
notebook. Every value is escaped; nothing is fetched from the network.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd;
       padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f6f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #17692f; font-weight: 600; } .bad { color: #b3261e; font-weight: 600; }
.muted { color: #666; } code { background: #f4f6f8; padding: 0 .25em; border-radius: 3px;
       word-break: break-all; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: .9em; }
nav a { margin-right: 1em; }
"""

SECTIONS = (
    ("dataset", "Dataset"),
    ("validation", "Data validation"),
    ("training", "Training"),
    ("evaluation", "Evaluation"),
    ("misclassified", "Misclassified eval images"),
    ("push", "Push"),
)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class Num(str):
    """A number already formatted, aligned right like the others."""


def _cell(value: Any) -> str:
    if isinstance(value, Num) or isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{escape(_fmt(value))}</td>'
    return f"<td>{escape(_fmt(value))}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Html(str):
    """Markup that is already escaped."""


def _pairs(items: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{v if isinstance(v, _Html) else escape(_fmt(v))}</td></tr>"
        for k, v in items.items()
    )
    return f"<table>{rows}</table>"


def _code(text: Any) -> _Html:
    return _Html(f"<code>{escape(str(text))}</code>") if text else _Html("n/a")


def _verdict(ok: bool | None, yes: str, no: str) -> str:
    if ok is None:
        return '<span class="muted">n/a</span>'
    return f'<span class="{"ok" if ok else "bad"}">{escape(yes if ok else no)}</span>'


def _figure(png: Path | None, caption: str) -> str:
    if png is None or not png.is_file():
        return ""
    data = base64.b64encode(png.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}" '
            f'data-file="{escape(png.name)}"><figcaption>{escape(caption)} '
            f'(<code>{escape(png.name)}</code>)</figcaption></figure>')


def _missing(section: Mapping[str, Any]) -> str:
    return f'<p class="muted">Not available: {escape(section.get("why", "not recorded"))}.</p>'


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


def _dataset(data: Mapping[str, Any], pngs: Mapping[str, Path]) -> str:
    if not data.get("available"):
        return _missing(data)
    splits = data["splits"]
    names = list(next(iter(splits.values()))["per_class"]) if splits else []
    rows = [[name, *(splits[s]["per_class"].get(name, 0) for s in splits)] for name in names]
    rows.append(["all classes", *(splits[s]["examples"] for s in splits)])
    origins = {s: v["from"] for s, v in splits.items() if v.get("from")}
    formats = {s: ", ".join(f"{k} {v}" for k, v in v["image_formats"].items())
               or "n/a (TFDV counts formats from 100 images up)" for s, v in splits.items()}
    shape = data.get("image_shape")
    parts = [
        _pairs({
            "data": _Html(_code(data.get("data_root"))
                          + (f" (span {int(data['span'])})" if data.get("span") is not None
                             else "")),
            "examples (ImportExampleGen)": _code(data.get("examples")),
            "statistics (StatisticsGen)": _code(data.get("statistics")),
            "image shape the model gets": "x".join(map(str, shape)) if shape else "n/a",
            "image shapes in the source": ", ".join(
                f"{k}: {v}" for k, v in (data.get("image_shapes_seen") or {}).items()) or "n/a",
            "image formats": "; ".join(f"{s}: {f}" for s, f in formats.items()),
            "files skipped at ingest": data.get("skipped_files", "n/a"),
            "image formats and modes at ingest": ", ".join(
                f"{k}: {v}" for k, v in (data.get("image_modes") or {}).items()) or "n/a",
            "re-encoded at ingest": _converted(data.get("converted")),
            "duplicate images": _duplicates(data.get("duplicates")),
            "where each split came from": "; ".join(f"{s}: {o}" for s, o in origins.items())
            or "n/a",
            "what each split is for": "train: fitting; eval: early stopping and checkpoint "
            "choice; test: the reported accuracy and the blessing (nothing is chosen on it)"
            if "test" in splits else "train: fitting; eval: early stopping AND the reported "
            "accuracy (no test split: add a test/ folder for an untouched estimate)",
        }),
        "<h3>Examples per split and class</h3>",
        _table(["class", *splits], rows),
        _figure(pngs.get("class_balance"), "Class balance per split"),
    ]
    if data.get("dataset_json_matches_run") is False:
        parts.append('<p class="bad">The counts in the data folder\'s dataset.json differ from '
                     "this run's statistics: the TFRecords were changed after `ingest`, or "
                     "re-ingested since this run. The image shapes above come from "
                     "dataset.json.</p>")
    return "".join(parts)


def _validation(data: Mapping[str, Any]) -> str:
    if not data.get("available"):
        return _missing(data)
    anomalies = data["anomalies"]
    allowed = set(data.get("allowed_anomaly_types", []))
    gate = data.get("gate_state")
    drift = data.get("drift", [])
    drift_ok = all(m["distance"] <= m["threshold"] for m in drift)
    blocking = [a for a in anomalies if a["anomaly_type"] not in allowed]
    passed = gate in ("executed", "cached") and not blocking and drift_ok
    parts = [
        f"<p>Data gate: {_verdict(passed, 'passed', 'REJECTED the data')} "
        f'<span class="muted">(DataGate {escape(str(gate))})</span></p>',
        "<h3>Anomalies against the curated schema (ExampleValidator)</h3>",
    ]
    if anomalies:
        parts.append(_table(
            ["split", "feature", "type", "description", "accepted (--allow-anomaly)"],
            [[a["split"], a["feature"], a["anomaly_type"], a["description"],
              "yes" if a["anomaly_type"] in allowed else "no"] for a in anomalies],
        ))
    else:
        parts.append('<p class="ok">No anomalies.</p>')
    parts.append(f"<p class='muted'>anomalies: {_code(data.get('anomalies_uri'))}</p>")
    parts.append("<h3>Label drift against the previous accepted data</h3>")
    if drift:
        parts.append(_table(
            ["split", "L-infinity distance", "threshold", "result"],
            [[m["split"], m["distance"], m["threshold"],
              "ok" if m["distance"] <= m["threshold"] else "DRIFTED"] for m in drift],
        ))
        if data.get("drift_compared"):
            parts.append(f"<p>Compared: {escape(data['drift_compared'])}.</p>")
        parts.append(f"<p class='muted'>baseline: {_code(data.get('drift_baseline'))}</p>")
    elif data.get("drift_baseline") is None:
        parts.append("<p>No drift baseline: no version is served yet (or the served one has no "
                     "training statistics). Once a model trained on this data is pushed, its "
                     "statistics become the baseline of the next run.</p>")
    else:
        parts.append("<p>Label drift check turned off (--max-label-drift 0).</p>")
    return "".join(parts)


_CONFIG_KEYS = ("model", "epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule",
                "label_smoothing", "augment_flip", "augment_translate", "precision")


def _warm_start(record: Mapping[str, Any] | None) -> str | _Html:
    if not record:
        return "random initialization"
    if record.get("used"):
        return _Html(f"the weights of served version {int(record['version'])} (warm start): "
                     + _code(record.get("from")))
    return f"random initialization; warm start not possible: {record.get('why')}"


def _skip(decision: Mapping[str, Any] | None) -> str:
    if not decision:
        return "not asked"
    verb = ("training skipped: served version {} handed on".format(decision.get("version"))
            if decision.get("skip") else "trained")
    return f"{verb}; {decision.get('why')}"


def _training(data: Mapping[str, Any], pngs: Mapping[str, Path]) -> str:
    if not data.get("available"):
        return _missing(data)
    config = data.get("config", {})
    history = data.get("history", {})
    last = {k: v[-1] for k, v in history.items() if v}
    return "".join([
        _pairs({
            "Trainer": data.get("state"),
            "recipe": f"{data.get('recipe') or 'n/a'}"
            + (f" ({data['recipe_reason']})" if data.get("recipe_reason") else ""),
            "epochs run": data.get("epochs_run"),
            "fitted on / early stopping on": f"{data.get('train_split', 'train')} split "
            f"({data.get('num_train')} examples) / {data.get('eval_split', 'eval')} split "
            f"({data.get('num_eval')} examples)",
            "training input": (data.get("input") or {}).get("reason", "n/a"),
            "started from": _warm_start(data.get("warm_start")),
            "--skip-if-unchanged": _skip(data.get("skip_if_unchanged")),
            "final eval-split accuracy (no test-time augmentation)":
                _fmt(data.get("final_eval_accuracy")),
            "fit time": f"{_fmt(data.get('fit_seconds'), 1)} s"
            + (f" ({data['train_images_per_second']:.0f} training images/s)"
               if data.get("train_images_per_second") else ""),
            "last epoch": ", ".join(f"{k} {_fmt(v)}" for k, v in last.items()),
            "model": _code(data.get("model")),
            "TensorBoard logs": _code(data.get("tensorboard_dir")),
        }),
        "<h3>Training config</h3>",
        _table(["setting", "value"], [[k, config[k]] for k in _CONFIG_KEYS if k in config]),
        _figure(pngs.get("training_curves"), "Loss and accuracy per epoch, train vs eval"),
    ])


def _evaluation(data: Mapping[str, Any], pngs: Mapping[str, Path]) -> str:
    if not data.get("available"):
        return _missing(data)
    baseline = data.get("baseline_accuracy")
    accuracy = data.get("accuracy")
    if data.get("class_map_changed"):
        baseline_text = "new class map: no baseline (accepted with --accept-new-classes)"
    elif data.get("baseline_is_candidate"):
        baseline_text = "this same model is the one served (unchanged re-run): no comparison"
    elif data.get("baseline_model") is None:
        baseline_text = "none: no version served yet"
    else:
        change = (accuracy or 0) - (baseline or 0)
        baseline_text = f"{_fmt(baseline)} (change {change:+.4f})"
    thresholds = [[t["metric"], t["slice"], t["kind"], t["value"]] for t in data["thresholds"]]
    parts = [
        _pairs({
            "signature evaluated": _code(data.get("signature")),
            "split evaluated": f"{data.get('split') or 'eval'}"
            + ("" if data.get("split") == "test" else
               " (no test split: early stopping chose on this split too)"),
            "examples": data.get("eval_examples"),
            "accuracy": _fmt(accuracy),
            "baseline accuracy": baseline_text,
            "baseline model (served version)": _code(data.get("baseline_model")),
            "thresholds met": _Html(_verdict(data.get("validation_ok"), "yes", "no")),
            "blessing": _Html(_verdict(data.get("blessed"), "BLESSED", "NOT blessed")),
            "evaluation": _code(data.get("evaluation_uri")),
        }),
        "<h3>Thresholds</h3>",
        _table(["metric", "slice", "rule", "bound"], thresholds) if thresholds
        else "<p>No thresholds configured.</p>",
    ]
    if data.get("failures"):
        parts.append("<ul>" + "".join(f'<li class="bad">{escape(f)}</li>'
                                      for f in data["failures"]) + "</ul>")
    per_class = data.get("per_class_accuracy") or {}
    if per_class:
        parts.append("<h3>Accuracy per class</h3>")
        parts.append(_table(["class", "accuracy"], list(per_class.items())))
    split = data.get("split") or "eval"
    parts.append(_figure(pngs.get("per_class_accuracy"), f"Accuracy per class, {split} split"))
    parts.append(_figure(pngs.get("confusion_matrix"),
                         f"Confusion matrix on the {split} split (rows: actual, columns: "
                         "predicted)"))
    return "".join(parts)


def _most_confident(shown: int) -> str:
    return "; the most confident:" if shown == 1 else f"; the {shown} most confident:"


def _misclassified(data: Mapping[str, Any], pngs: Mapping[str, Path]) -> str:
    if not data.get("available"):
        return _missing(data)
    split = data.get("split", "eval")
    scope = ("all" if data.get("complete") else "the first") + f" {data['scanned']} {split} images"
    text = (f"<p>{data['misclassified']} of {scope} are misclassified by "
            f"<code>{escape(data['signature'])}</code>"
            + (_most_confident(len(data["shown"])) if data["shown"] else ".")
            + "</p>")
    if not data["shown"]:
        return text
    return text + _figure(pngs.get("misclassified"),
                          f"Misclassified {split} images: true / predicted (confidence)") + _table(
        [f"{split} index", "true", "predicted", "confidence"],
        [[m["index"], m["true"], m["predicted"], m["confidence"]] for m in data["shown"]],
    )


def _push(data: Mapping[str, Any], model_name: str | None) -> str:
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
    return _pairs(items)


def render(report: Mapping[str, Any], pngs: Mapping[str, Path]) -> str:
    failed = report.get("failed_components") or []
    status = (f'<span class="bad">failed in {escape(", ".join(failed))}</span>' if failed
              else '<span class="ok">completed</span>')
    total = sum(c["seconds"] for c in report["components"])
    components = _table(
        ["component", "state", "seconds"],
        [[c["name"], c["state"], Num(f"{c['seconds']:.1f}")] for c in report["components"]],
    )
    push = report["push"]
    model_name = (push.get("destination") or "").rstrip("/").split("/")[-2:-1]
    bodies = {
        "dataset": _dataset(report["dataset"], pngs),
        "validation": _validation(report["validation"]),
        "training": _training(report["training"], pngs),
        "evaluation": _evaluation(report["evaluation"], pngs),
        "misclassified": _misclassified(report["misclassified"], pngs),
        "push": _push(push, model_name[0] if model_name else None),
    }
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in SECTIONS)
    sections = "".join(
        f'<section id="{key}"><h2>{escape(title)}</h2>{bodies[key]}</section>'
        for key, title in SECTIONS
    )
    title = f"{report['pipeline_name']}: run {report['run_id']}"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"<p>Started {escape(report['started'])}, {total:.0f} s in components: {status}.</p>"
        f"<nav>{nav}</nav>"
        f'<section id="components"><h2>Components</h2>{components}</section>'
        f"{sections}</body></html>\n"
    )
