"""The run report as a browser shows it: headless Chromium loads report.html from disk, and a
probe script records which sections exist, whether every embedded image decoded and has a
size on the page, the headings and captions, the table cells, and whether the page fits the
window's width with every folded table opened.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import reportfacts
from conftest import PipelineRuns
from report import REPORT_HTML, REPORT_JSON, write_report
from report.facts import MOST_CONFUSED

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser", "google-chrome")
     if (found := shutil.which(name))),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)

SECTIONS = ["components", "dataset", "validation", "training", "evaluation", "misclassified",
            "push", "tflite"]

# Appended to a copy of the report: after load, writes what the browser rendered onto <body>.
PROBE = """<script>
addEventListener("load", () => {
  document.querySelectorAll("details").forEach(d => { d.open = true; });
  const images = [...document.images].map(i => ({
    file: i.dataset.file, alt: i.alt, complete: i.complete,
    natural: [i.naturalWidth, i.naturalHeight],
    shown: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]}));
  const sections = [...document.querySelectorAll("section")].map(s => ({
    id: s.id, title: s.querySelector("h2").textContent, text: s.innerText}));
  const titles = [...document.querySelectorAll("h2, h3, figcaption, summary, th")].map(t => ({
    section: t.closest("section") ? t.closest("section").id : "", tag: t.tagName,
    text: t.textContent}));
  const cells = [...document.querySelectorAll("td, th")].map(c => ({
    length: c.textContent.length, width: c.getBoundingClientRect().width,
    text: c.textContent.slice(0, 80)}));
  const page = {scroll: document.documentElement.scrollWidth, window: innerWidth};
  document.body.dataset.probe = JSON.stringify({images, sections, titles, cells, page});
});
</script>"""


class _BodyProbe(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.probe: dict | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            found = dict(attrs).get("data-probe")
            self.probe = json.loads(found) if found else None


def render(report: Path, tmp_path: Path) -> dict:
    page = tmp_path / "probe.html"
    page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parser = _BodyProbe()
    parser.feed(result.stdout)
    assert parser.probe is not None, f"the probe did not run:\n{result.stdout[:2000]}"
    return parser.probe


def _assert_images_render(probe: dict, expected: set[str]) -> None:
    images = {image["file"]: image for image in probe["images"]}
    assert set(images) == expected
    for name, image in images.items():
        assert image["complete"] and min(image["natural"]) > 50, (name, image)
        assert min(image["shown"]) > 50, (name, image)


def test_first_run_report_renders_every_section_and_image(
    pipeline_runs: PipelineRuns, tmp_path: Path
) -> None:
    probe = render(pipeline_runs.report_dir("first") / REPORT_HTML, tmp_path)
    sections = {s["id"]: s for s in probe["sections"]}
    assert list(sections) == SECTIONS
    for section in sections.values():
        assert "Not available" not in section["text"], section["id"]
    assert "No anomalies." in sections["validation"]["text"]
    assert "BLESSED" in sections["evaluation"]["text"]
    assert "serving_default" in sections["evaluation"]["text"]
    assert "misclassified by serving_default" in sections["misclassified"]["text"]
    assert "tensorflow_model_server" in sections["push"]["text"]
    assert "TFLite file size" in sections["tflite"]["text"]
    # The first run is near perfect on these colours: the mistake grid only when it erred.
    expected = {"class_balance.png", "training_curves.png", "per_class_accuracy.png",
                "confusion_matrix.png"}
    if "0 of all" not in sections["misclassified"]["text"]:
        expected.add("misclassified.png")
    _assert_images_render(probe, expected)


def test_rejected_candidate_report_shows_mistakes_and_no_push(
    pipeline_runs: PipelineRuns, tmp_path: Path
) -> None:
    probe = render(pipeline_runs.report_dir("worse") / REPORT_HTML, tmp_path)
    sections = {s["id"]: s for s in probe["sections"]}
    assert "NOT blessed" in sections["evaluation"]["text"]
    assert "not pushed" in sections["push"]["text"]
    assert "most confident" in sections["misclassified"]["text"]
    # Zero epochs: no curves to draw, every other chart and the mistake grid are there.
    _assert_images_render(probe, {"class_balance.png", "per_class_accuracy.png",
                                  "confusion_matrix.png", "misclassified.png"})


# The figures of the evaluated split: their captions and PNG titles must name it.
EVALUATED_FIGURES = ("per_class_accuracy.png", "confusion_matrix.png", "confused_pairs.png",
                     "misclassified.png")
SPLIT_WORDS = re.compile(r"\b(train|eval|test)\b")


def _png_title(png: Path) -> str:
    from PIL import Image

    with Image.open(png) as image:
        return image.text.get("Title", "")


def test_split_names_agree_across_titles_captions_and_headings(
    pipeline_runs: PipelineRuns, tmp_path: Path
) -> None:
    report_dir = pipeline_runs.report_dir("worse")
    split = json.loads((report_dir / REPORT_JSON).read_text())["evaluation_split"]
    assert split == "test"  # the fixture's data has a test split
    probe = render(report_dir / REPORT_HTML, tmp_path)
    headings = {t["text"] for t in probe["titles"] if t["tag"] == "H2"}
    assert {f"Evaluation on the {split} split", f"Misclassified {split} images"} <= headings
    shown = [image for image in probe["images"] if image["file"] in EVALUATED_FIGURES]
    assert {image["file"] for image in shown} == {"per_class_accuracy.png",
                                                  "confusion_matrix.png", "misclassified.png"}
    titles = [t["text"] for t in probe["titles"]
              if t["section"] in ("evaluation", "misclassified") and t["tag"] != "TH"]
    captions = [image["alt"] for image in shown]
    png_titles = [_png_title(report_dir / image["file"]) for image in shown]
    for text in captions + png_titles:
        assert SPLIT_WORDS.findall(text) == [split], text
    for text in titles:
        assert set(SPLIT_WORDS.findall(text)) <= {split}, text


def test_a_report_on_two_thousand_image_sizes_has_short_cells_and_plots_the_sizes(
    tmp_path: Path
) -> None:
    names = ["ants", "bees"]
    report = reportfacts.report_facts(
        class_names=names,
        dataset=reportfacts.sized_dataset(reportfacts.photo_shapes(2000, 4000), names))
    html = write_report(report, tmp_path / "report")
    probe = render(html, tmp_path)
    longest = max(probe["cells"], key=lambda c: c["length"])
    assert longest["length"] <= 300, longest
    _assert_images_render(probe, {"class_balance.png", "image_sizes.png"})
    dataset = {s["id"]: s for s in probe["sections"]}["dataset"]["text"]
    assert "2,000 distinct sizes in 4,000 images" in dataset
    sizes = json.loads((tmp_path / "report" / REPORT_JSON).read_text())["dataset"]["image_sizes"]
    assert sizes["distinct_sizes"] == 2000 and sizes["count"] == 4000
    for dimension in ("height", "width", "short_side"):
        assert set(sizes[dimension]) == {"min", "median", "max"}
    assert _png_title(tmp_path / "report" / "image_sizes.png") == (
        "Image sizes in the source: 4,000 images, 2,000 distinct sizes")


def test_a_thousand_long_class_names_keep_the_page_within_the_window(tmp_path: Path) -> None:
    names = reportfacts.class_names(1000, length=200)
    report = reportfacts.report_facts(
        class_names=names,
        dataset=reportfacts.sized_dataset(reportfacts.photo_shapes(30, 20_000), names),
        evaluation=reportfacts.evaluation(names))
    html = write_report(report, tmp_path / "report")
    probe = render(html, tmp_path)
    _assert_images_render(probe, {"class_balance.png", "image_sizes.png",
                                  "per_class_accuracy.png", "confused_pairs.png"})
    window = probe["page"]["window"]
    assert probe["page"]["scroll"] <= window, probe["page"]
    widest = max(probe["cells"], key=lambda c: c["width"])
    assert widest["width"] <= window, widest
    assert all(image["shown"][0] <= window for image in probe["images"])
    # Every name is whole in the tables: of examples and of accuracy per class; and the most
    # confused pairs' twice.
    whole = sum(cell["length"] == 200 for cell in probe["cells"])
    assert whole == 2 * len(names) + 2 * MOST_CONFUSED
