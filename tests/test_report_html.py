"""The report page (report/html.py + its Jinja2 template) from report facts, without a run."""

from __future__ import annotations

from typing import Any

from report.html import render

SECTION_KEYS = ("dataset", "validation", "training", "evaluation", "misclassified", "push")


def _report(**sections: dict[str, Any]) -> dict[str, Any]:
    """A report whose sections are unavailable unless given."""
    report: dict[str, Any] = {"pipeline_name": "p", "run_id": "r1", "started": "2026-11-24",
                              "components": [{"name": "Trainer", "state": "executed",
                                              "seconds": 12.34}],
                              "failed_components": []}
    for key in SECTION_KEYS:
        report[key] = sections.get(key, {"available": False, "why": f"no {key} here"})
    return report


def test_the_dataset_section_shows_duplicates_and_conversions() -> None:
    split = {"examples": 3, "per_class": {"a": 3}, "image_formats": {}}
    page = render(_report(dataset={
        "available": True, "splits": {"train": split, "test": split},
        "converted": {"count": 1, "from": {"JPEG CMYK": 1}, "to": "PNG L"},
        "duplicates": {"across_splits": 2, "within_split": {"train": 1, "test": 0},
                       "allowed": True}}), {})
    assert "2 across splits (kept with --allow-duplicates" in page
    assert "within a split: train 1, test 0" in page
    assert "1 to PNG L (1 JPEG CMYK)" in page
    assert "<section id=" in page and page.count("<section id=") == 7
    assert "Not available: no push here." in page
    assert '<td class="num">12.3</td>' in page
    unknown = render(_report(dataset={"available": True, "splits": {"train": split}}), {})
    assert "n/a (not counted" in unknown


def test_what_a_run_holds_is_escaped() -> None:
    hostile = '<script>alert("x")</script> & co'
    split = {"examples": 1, "per_class": {hostile: 1}, "image_formats": {}}
    page = render(_report(
        dataset={"available": True, "splits": {"train": split}, "data_root": hostile},
        push={"available": True, "pushed": False},
    ), {})
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page
    assert "<code>&lt;script&gt;" in page  # a path shown as code is escaped too
    assert "not pushed: the model was not blessed" in page


def test_the_dataset_section_summarizes_image_sizes_instead_of_listing_each() -> None:
    split = {"examples": 3, "per_class": {"a": 3}, "image_formats": {}}
    seen = {f"{375 + i}x500x3": 100 - i for i in range(20)} | {"other": 2034}
    sizes = {"count": 6000, "distinct_sizes": 2054,
             "height": {"min": 100, "median": 375, "max": 3024},
             "width": {"min": 120, "median": 500, "max": 4032},
             "short_side": {"min": 100, "median": 375, "max": 3024}}
    page = render(_report(dataset={
        "available": True, "splits": {"train": split}, "image_shape": [375, 500, 3],
        "sizes_vary": True, "image_sizes": sizes, "image_shapes_seen": seen}), {})
    assert ("2,054 sizes; height 100-3024 (median 375), width 120-4032 (median 500), short "
            "side 100-3024 (median 375); most common: 375x500x3: 100, 376x500x3: 99") in page
    assert "379x500x3: 96" in page and "380x500x3" not in page  # 5 shapes at most
    assert "375x500x3 (the median size: sizes vary" in page

    old = render(_report(dataset={  # a dataset.json from before sizes were summarized
        "available": True, "splits": {"train": split}, "image_shape": [8, 8, 3],
        "image_shapes_seen": {f"{8 + i}x8x3": 1 for i in range(9)}}), {})
    assert "8x8x3: 1, 9x8x3: 1, 10x8x3: 1, 11x8x3: 1, 12x8x3: 1 (and 4 more)" in old
    one = render(_report(dataset={
        "available": True, "splits": {"train": split}, "image_shape": [8, 8, 3],
        "image_sizes": sizes | {"distinct_sizes": 1}, "image_shapes_seen": {"8x8x3": 3}}), {})
    assert "8x8x3: 3" in one and "sizes;" not in one
