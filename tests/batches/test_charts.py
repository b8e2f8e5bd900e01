"""The control-chart renderer (issue 8; SO-09 trend charts): the SVG is well-formed, standalone,
accessible, deterministic, marks the points that break a Nelson rule, and stays small for a
year of daily results. No database."""

from __future__ import annotations

import datetime
import math
import random
import re
import threading
import xml.etree.ElementTree as ET

import pytest

from batches.charts import ChartPoint, control_chart_svg
from batches.stats import flagged_points, nelson_breaks

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
START = datetime.datetime(2025, 3, 1, 8, 30, tzinfo=datetime.UTC)
TITLE = "Assay — LDN01 against the reference site"

# Measured with matplotlib 3.11.2 (glyphs drawn as paths): 0 points about 33 kB, 40 points with
# 30 reference points about 59 kB, 1,000 points about 77 kB, 5,000 points about 160 kB.
MAX_BYTES_1000 = 100_000


def series(values: list[float], *, centre: float = 100.0, sigma: float = 1.0) -> list[ChartPoint]:
    """Points a day apart, each carrying the Nelson rules it breaks (as the caller builds them)."""
    flags = flagged_points(nelson_breaks(values, centre, sigma))
    return [
        ChartPoint(
            label=f"LDN01-{i + 1:04d}",
            when=START + datetime.timedelta(days=i),
            value=v,
            rules=tuple(flags.get(i, ())),
        )
        for i, v in enumerate(values)
    ]


def clean_values(n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [100.0 + rng.uniform(-1.5, 1.5) for _ in range(n)]


def chart(points: list[ChartPoint], **kwargs: object) -> str:
    options: dict[str, object] = {
        "centre": 100.0,
        "lower": 97.0,
        "upper": 103.0,
        "title": TITLE,
        "unit": "% label claim",
    }
    options.update(kwargs)
    return control_chart_svg(points, **options)  # type: ignore[arg-type]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314 - our own renderer's output, not untrusted input
    assert root.tag == f"{SVG}svg"
    return root


def group(root: ET.Element, suffix: str) -> ET.Element | None:
    found = [e for e in root.iter() if e.get("id", "").endswith(f"-{suffix}")]
    assert len(found) <= 1
    return found[0] if found else None


def markers(element: ET.Element | None) -> list[ET.Element]:
    return [] if element is None else list(element.iter(f"{SVG}use"))


#
# Shape of the output
#


def test_the_svg_is_standalone_well_formed_and_titled() -> None:
    svg = chart(series(clean_values(30)))
    assert svg.startswith("<svg ")
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label") == TITLE
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == TITLE
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert desc.text.startswith("Individuals chart of 30 results")
    assert "No point breaks a Nelson rule." in desc.text
    assert root.get("aria-describedby") == desc.get("id")
    # About 720 x 300 CSS px (540 x 225 pt).
    assert (root.get("width"), root.get("height")) == ("540pt", "225pt")
    # No creation date, so the bytes do not change from one rendering to the next.
    assert "dc:date" not in svg


def test_the_title_is_escaped() -> None:
    title = 'pH <7> & "buffer" at $5 and $6 a vial'  # "$...$" is not a formula here
    root = parse(chart(series(clean_values(5)), title=title, unit="$ per mL"))
    assert root.get("aria-label") == title
    title_element = root.find(f"{SVG}title")
    assert title_element is not None and title_element.text == title


def test_the_limit_lines_and_the_points_are_drawn() -> None:
    root = parse(chart(series(clean_values(30))))
    for name in ("upper-limit", "centre-line", "lower-limit"):
        assert group(root, name) is not None, name
    assert len(markers(group(root, "points"))) == 30
    assert group(root, "flagged") is None
    assert group(root, "reference") is None


#
# Rule breaks
#


def test_points_breaking_a_rule_are_marked_in_red_and_numbered() -> None:
    values = clean_values(40)
    values[3] = 104.2  # rule 1
    values[20:31] = [101.0 + 0.01 * i for i in range(11)]  # 11 above the centre: rule 2 from 28
    points = series(values)
    flagged = [i for i, p in enumerate(points) if p.rules]
    assert flagged[0] == 3 and len(flagged) >= 4
    root = parse(chart(points))

    red = markers(group(root, "flagged"))
    assert len(red) == len(flagged)
    assert all("fill: #c00000" in (m.get("style") or "") for m in red)
    # Numbered once per stretch of neighbours marked by the same rules.
    stretches = [i for i in flagged if i == 0 or points[i - 1].rules != points[i].rules]
    numbered = sorted(
        int(e.get("id", "").rsplit("-", 1)[1])
        for e in root.iter()
        if re.search(r"-rules-\d+$", e.get("id", ""))
    )
    assert numbered == stretches
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert "LDN01-0004 (rule 1)" in desc.text


def test_a_point_breaking_two_rules_is_one_red_marker() -> None:
    values = [100.5] * 8 + [104.0]  # the ninth above the centre is also beyond 3 SD
    points = series(values)
    assert points[8].rules == (1, 2)
    root = parse(chart(points))
    assert len(markers(group(root, "flagged"))) == 1
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert "LDN01-0009 (rule 1, 2)" in desc.text


def test_reference_points_are_drawn_in_grey() -> None:
    reference = [
        ChartPoint(f"REF-{i}", datetime.date(2025, 2, 1) + datetime.timedelta(days=i), v)
        for i, v in enumerate(clean_values(25, seed=3))
    ]
    root = parse(chart(series(clean_values(10)), reference=reference))
    grey = markers(group(root, "reference"))
    assert len(grey) == 25
    assert all("#9a9a9a" in (m.get("style") or "") for m in grey)
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert "25 reference-site results" in desc.text


#
# Edge cases
#


def test_an_empty_chart_says_there_are_no_results_yet() -> None:
    root = parse(chart([]))
    assert group(root, "no-results") is not None
    assert group(root, "points") is None
    assert group(root, "centre-line") is not None
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.text is not None
    assert desc.text.startswith("Individuals chart of 0 results")


def test_one_point_dates_and_naive_datetimes_all_render() -> None:
    one = [ChartPoint("LDN01-0001", START, 100.4)]
    assert len(markers(group(parse(chart(one)), "points"))) == 1
    mixed = [
        ChartPoint("A", datetime.date(2025, 1, 2), 99.0),
        ChartPoint("B", datetime.datetime(2025, 1, 3, 12, 0), 100.0),  # noqa: DTZ001 - naive on purpose
        ChartPoint("C", START, 101.0),
    ]
    assert len(markers(group(parse(chart(mixed)), "points"))) == 3


def test_decimal_values_and_only_reference_results_render() -> None:
    from decimal import Decimal

    points = [ChartPoint("LDN01-0001", START, Decimal("100.25"))]  # type: ignore[arg-type]
    assert len(markers(group(parse(chart(points)), "points"))) == 1
    reference = [ChartPoint("REF-1", START, 99.5), ChartPoint("REF-2", START, 100.5)]
    root = parse(chart([], reference=reference))
    assert group(root, "no-results") is not None
    assert len(markers(group(root, "reference"))) == 2


def test_values_outside_the_limits_widen_the_axis_and_flat_limits_work() -> None:
    parse(chart(series([100.0, 140.0, 60.0], sigma=10.0)))
    parse(chart(series([5.0, 5.0, 5.0]), centre=5.0, lower=5.0, upper=5.0, unit=""))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lower": 104.0}, "lower limit"),
        ({"centre": math.nan}, "centre"),
        ({"upper": math.inf}, "upper"),
    ],
)
def test_nonsense_limits_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chart(series(clean_values(3)), **kwargs)


def test_a_non_finite_value_is_refused() -> None:
    with pytest.raises(ValueError, match="LDN01-0002"):
        chart([ChartPoint("LDN01-0001", START, 1.0), ChartPoint("LDN01-0002", START, math.nan)])


#
# Determinism and inlining
#


def test_the_same_data_gives_the_same_bytes() -> None:
    points = series(clean_values(60))
    assert chart(points) == chart(list(points))


def test_renders_from_several_threads_are_identical() -> None:
    """Celery threads or gunicorn threads may render at once; the global rc settings the SVG
    writer reads must not leak between them."""
    cases = [series(clean_values(50, seed=s)) for s in range(4)]
    expected = [chart(points) for points in cases]
    results: dict[int, str] = {}

    def render(i: int) -> None:
        results[i] = chart(cases[i % 4])

    threads = [threading.Thread(target=render, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(8)] == [expected[i % 4] for i in range(8)]


def test_every_reference_resolves_and_two_charts_share_no_id() -> None:
    """Charts are inlined side by side in one page: each one's ids are its own."""
    first = chart(series(clean_values(20, seed=1)))
    second = chart(series(clean_values(20, seed=2)), title="Endotoxin")
    ids = []
    for svg in (first, second):
        root = parse(svg)
        own = [e.get("id") for e in root.iter() if e.get("id")]
        assert len(own) == len(set(own))
        refs = {e.get(XLINK_HREF, "")[1:] for e in root.iter() if e.get(XLINK_HREF)}
        refs |= set(re.findall(r"url\(#([^)]+)\)", svg))
        assert refs <= set(own)
        ids.append(set(own))
    assert not ids[0] & ids[1]
    # matplotlib's stylesheet is scoped to its own chart, not the whole page.
    assert re.search(r"<style[^>]*>\s*\*\s*\{", first) is None


def test_the_chart_embeds_in_a_weasyprint_pdf() -> None:
    import weasyprint

    svg = chart(series(clean_values(40)))
    pdf = weasyprint.HTML(string=f"<html><body><h1>Trend</h1>{svg}</body></html>").write_pdf()
    assert pdf is not None and pdf.startswith(b"%PDF")


#
# Size
#


def test_a_thousand_points_stay_small() -> None:
    values = clean_values(1000)
    values[500] = 105.0
    points = series(values)
    svg = chart(points)
    root = parse(svg)
    assert len(svg.encode()) < MAX_BYTES_1000
    # The line carries the series; per-point markers only for the flagged points.
    assert markers(group(root, "points")) == []
    assert len(markers(group(root, "flagged"))) == sum(1 for p in points if p.rules) >= 1
