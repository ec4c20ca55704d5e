"""The run report as a browser shows it: headless Chromium loads report.html from disk, and a
probe script records which sections exist and whether every embedded image decoded and has
a size on the page.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import PipelineRuns
from report import REPORT_HTML

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser", "google-chrome")
     if (found := shutil.which(name))),
    None,
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)

SECTIONS = ["components", "dataset", "validation", "training", "evaluation", "misclassified",
            "push"]

# Appended to a copy of the report: after load, writes what the browser rendered onto <body>.
PROBE = """<script>
addEventListener("load", () => {
  const images = [...document.images].map(i => ({
    file: i.dataset.file, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight],
    shown: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]}));
  const sections = [...document.querySelectorAll("section")].map(s => ({
    id: s.id, title: s.querySelector("h2").textContent, text: s.innerText}));
  document.body.dataset.probe = JSON.stringify({images, sections});
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
