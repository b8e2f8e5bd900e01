"""Control charts for cross-site comparability (issue 8; SO-09 trend charts, DV-06).

`control_chart_svg` draws an individuals (I-) chart of one CQA at one site as a standalone
`<svg>` string, to inline in a page or embed in a WeasyPrint PDF:

- results in time order joined by a thin line; the centre line and the lower/upper limits as
  horizontal lines labelled on the right ("UCL 12.3", "CL 10", "LCL 7.7");
- points that break a Nelson rule (`batches.stats.nelson_breaks`) in red diamonds, numbered with
  the rule(s) — once per stretch of neighbouring points marked by the same rules, so a long run
  reads as one episode rather than a row of labels;
- optionally the reference site's results in grey behind them;
- no results: the limits and a "No results yet" note.

Rendering is deterministic (no date in the metadata, a fixed hash salt, element ids derived from
the content), so the same data gives the same bytes and a PDF's SHA-256 does not drift. Text is
drawn as DejaVu Sans glyph outlines ("svg.fonttype": "path"): the chart looks the same in every
browser and in a PDF/A, which must not depend on fonts it does not embed; the `<title>`, `<desc>`
and `aria-label` carry the words for assistive technology.

Thread and worker safety: a `matplotlib.figure.Figure` is made directly with the SVG canvas —
never `pyplot`, whose global figure registry is neither thread-safe nor freed. The rcParams the
SVG writer reads are global, so rendering holds a module lock for the few milliseconds it takes.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import RcKeyType

# Beyond this many results the per-point markers merge into a band at 720 px; the line alone
# shows the series and keeps the SVG small. Flagged points keep their red markers at any size.
MARKER_LIMIT = 250
# Flagged points named in the accessible description before "and N more".
DESCRIBED_FLAGS = 10

WIDTH_IN, HEIGHT_IN = 7.5, 3.125  # 720 x 300 CSS px (540 x 225 pt)

COLOUR_POINTS = "#1f4e79"
COLOUR_REFERENCE = "#9a9a9a"
COLOUR_FLAG = "#c00000"
COLOUR_CENTRE = "#2e7d32"
COLOUR_LIMIT = "#b45f06"

_RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "controlsite-qms-control-chart",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "axes.unicode_minus": True,
    "path.simplify": True,
    "timezone": "UTC",
}
_LOCK = threading.Lock()
_ID = re.compile(r'\bid="([^"]+)"')


@dataclass(frozen=True)
class ChartPoint:
    """One result on the chart: `label` names it (the batch number), `rules` are the Nelson
    rules it breaks (from `batches.stats.flagged_points`)."""

    label: str
    when: datetime.datetime | datetime.date
    value: float
    rules: tuple[int, ...] = ()


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _as_datetime(when: datetime.datetime | datetime.date) -> datetime.datetime:
    # A date is the start of that day in UTC; a naive datetime is taken as UTC (the project
    # stores aware UTC times, so this only happens with hand-made data).
    if isinstance(when, datetime.datetime):
        return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)
    return datetime.datetime(when.year, when.month, when.day, tzinfo=datetime.UTC)


def _tick_positions(count: int, most: int = 7) -> list[int]:
    """At most `most` evenly spaced batch positions, the first and the last among them."""
    if count <= most:
        return list(range(1, count + 1))
    step = math.ceil((count - 1) / (most - 1))
    ticks = list(range(1, count + 1, step))
    if count - ticks[-1] <= step / 2:
        ticks[-1] = count  # too close to the end to carry a label of its own
    else:
        ticks.append(count)
    return ticks


def _check_finite(value: float, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    return number


def _content_key(
    points: Sequence[ChartPoint],
    reference: Sequence[ChartPoint],
    *,
    centre: float,
    lower: float,
    upper: float,
    title: str,
    unit: str,
) -> str:
    digest = hashlib.sha256()
    digest.update(repr((title, unit, centre, lower, upper)).encode())
    for series in (points, reference):
        digest.update(b"\x00")
        for p in series:
            digest.update(
                repr((p.label, _as_datetime(p.when).isoformat(), p.value, p.rules)).encode()
            )
    return digest.hexdigest()[:10]


def _description(
    points: Sequence[ChartPoint],
    *,
    centre: float,
    lower: float,
    upper: float,
    unit: str,
    reference: Sequence[ChartPoint],
) -> str:
    suffix = f" {unit}" if unit else ""
    parts = [
        f"Individuals chart of {len(points)} result{'s' if len(points) != 1 else ''}"
        f"; centre line {_fmt(centre)}{suffix}, limits {_fmt(lower)} to {_fmt(upper)}{suffix}."
    ]
    if reference:
        parts.append(f"{len(reference)} reference-site results shown in grey.")
    flagged = [p for p in points if p.rules]
    if flagged:
        named = ", ".join(
            f"{p.label} (rule {', '.join(str(r) for r in p.rules)})"
            for p in flagged[:DESCRIBED_FLAGS]
        )
        more = len(flagged) - DESCRIBED_FLAGS
        parts.append(
            f"{len(flagged)} point{'s' if len(flagged) != 1 else ''} break a Nelson rule: {named}"
            + (f" and {more} more." if more > 0 else ".")
        )
    elif points:
        parts.append("No point breaks a Nelson rule.")
    return " ".join(parts)


def _draw(
    figure: Figure,
    points: Sequence[ChartPoint],
    reference: Sequence[ChartPoint],
    *,
    centre: float,
    lower: float,
    upper: float,
    title: str,
    unit: str,
    key: str,
) -> None:
    axes = figure.add_axes((0.085, 0.16, 0.80, 0.64))
    # parse_math=False: a "$" in a title or unit is text, not the start of a formula.
    figure.text(
        0.085,
        0.93,
        title,
        fontsize=10,
        fontweight="bold",
        ha="left",
        va="baseline",
        parse_math=False,
    )

    # x: the order of manufacture (an individuals chart plots observations in sequence, so a
    # quiet month and a busy day take the same room); dates label the ticks.
    xs = [float(i) for i in range(1, len(points) + 1)]
    ys = [float(p.value) for p in points]  # a Decimal from the database is welcome too
    ref_xs = [float(i) for i in range(1, len(reference) + 1)]
    ref_ys = [float(p.value) for p in reference]

    # The limit lines, labelled at the right-hand edge outside the plot.
    for value, name, colour, style, gid in (
        (upper, "UCL", COLOUR_LIMIT, (0, (4, 2)), "upper-limit"),
        (centre, "CL", COLOUR_CENTRE, "-", "centre-line"),
        (lower, "LCL", COLOUR_LIMIT, (0, (4, 2)), "lower-limit"),
    ):
        axes.axhline(
            value, color=colour, linewidth=0.9, linestyle=style, zorder=1, gid=f"{key}-{gid}"
        )
        axes.annotate(
            f"{name} {_fmt(value)}",
            xy=(1.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            ha="left",
            fontsize=7.5,
            color=colour,
            annotation_clip=False,
        )

    if reference:
        axes.plot(
            ref_xs,
            ref_ys,
            linestyle="none",
            marker="o",
            markersize=2.5,
            color=COLOUR_REFERENCE,
            alpha=0.8,
            zorder=2,
            gid=f"{key}-reference",
        )

    if points:
        axes.plot(
            xs,
            ys,
            linestyle="-",
            linewidth=0.7,
            marker="o" if len(points) <= MARKER_LIMIT else "none",
            markersize=3,
            color=COLOUR_POINTS,
            zorder=3,
            gid=f"{key}-points",
        )
    flagged = [i for i, p in enumerate(points) if p.rules]
    if flagged:
        axes.plot(
            [xs[i] for i in flagged],
            [ys[i] for i in flagged],
            linestyle="none",
            marker="D",
            markersize=5,
            markerfacecolor=COLOUR_FLAG,
            markeredgecolor="white",
            markeredgewidth=0.5,
            zorder=4,
            gid=f"{key}-flagged",
        )
        for i in flagged:
            rules = points[i].rules
            if i > 0 and points[i - 1].rules == rules:
                continue  # the stretch is already numbered at its first point
            axes.annotate(
                ",".join(str(r) for r in rules),
                xy=(xs[i], ys[i]),
                xytext=(0, 5),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                fontweight="bold",
                color=COLOUR_FLAG,
                zorder=5,
                gid=f"{key}-rules-{i}",
            )

    # y: every value and every limit in view, with a margin for the rule numbers.
    all_ys = [*ys, *ref_ys, lower, upper, centre]
    low, high = min(all_ys), max(all_ys)
    span = high - low or max(abs(high), 1.0) * 0.1
    axes.set_ylim(low - 0.08 * span, high + 0.14 * span)
    if unit:
        axes.set_ylabel(unit, parse_math=False)

    all_xs = [*xs, *ref_xs]
    if all_xs:
        count = int(max(all_xs))
        axes.set_xlim(0.5 - count * 0.01, count + 0.5 + count * 0.01)
        ticks = _tick_positions(count)
        dated = points if len(points) >= len(reference) else reference
        axes.set_xticks(
            ticks,
            [f"{t}\n{_as_datetime(dated[t - 1].when):%d %b %y}" for t in ticks],
            fontsize=7,
        )
        axes.set_xlabel("Batch, in order of manufacture", fontsize=7.5)
    else:
        axes.set_xticks([])
    if not points:
        axes.text(
            0.5,
            0.5,
            "No results yet",
            transform=axes.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color="#555555",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85},
            gid=f"{key}-no-results",
        )

    handles: list[Line2D] = []
    if points:
        handles.append(
            Line2D(
                [],
                [],
                color=COLOUR_POINTS,
                marker="o",
                markersize=3,
                linewidth=0.7,
                label="Site results",
            )
        )
    if reference:
        handles.append(
            Line2D(
                [],
                [],
                color=COLOUR_REFERENCE,
                marker="o",
                markersize=2.5,
                linestyle="none",
                label="Reference site",
            )
        )
    if flagged:
        handles.append(
            Line2D(
                [],
                [],
                color=COLOUR_FLAG,
                marker="D",
                markersize=5,
                markeredgecolor="white",
                linestyle="none",
                label="Nelson rule broken (rule no.)",
            )
        )
    if handles:
        axes.legend(
            handles=handles,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=len(handles),
            frameon=False,
            borderaxespad=0.2,
            handletextpad=0.4,
            columnspacing=1.2,
        )
    axes.grid(axis="y", color="#e6e6e6", linewidth=0.5, zorder=0)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _standalone(svg: str, *, key: str, title: str, description: str) -> str:
    """Strip the XML declaration and DOCTYPE, prefix every id with the chart's key (so several
    charts inlined in one page never share an id), and add the accessible title/description."""
    svg = svg[svg.index("<svg") :]
    ids = set(_ID.findall(svg))

    def prefixed(name: str) -> str:
        return name if name.startswith(f"{key}-") else f"{key}-{name}"

    svg = _ID.sub(lambda m: f'id="{prefixed(m.group(1))}"', svg)
    svg = re.sub(
        r"url\(#([^)]+)\)",
        lambda m: f"url(#{prefixed(m.group(1))})" if m.group(1) in ids else m.group(0),
        svg,
    )
    svg = re.sub(
        r'xlink:href="#([^"]+)"',
        lambda m: f'xlink:href="#{prefixed(m.group(1))}"' if m.group(1) in ids else m.group(0),
        svg,
    )
    # matplotlib's stylesheet sets defaults with `*{...}`: inlined in a page that would restyle
    # every SVG on it, so scope it to this chart.
    svg = svg.replace('<style type="text/css">*{', f'<style type="text/css">#{key} *{{', 1)
    open_end = svg.index(">") + 1
    opening = svg[: open_end - 1]
    accessible = (
        f' id="{key}" role="img" aria-label={quoteattr(title)} aria-describedby="{key}-desc">'
        f'<title id="{key}-title">{escape(title)}</title>'
        f'<desc id="{key}-desc">{escape(description)}</desc>'
    )
    return opening + accessible + svg[open_end:].rstrip() + "\n"


def control_chart_svg(
    points: Sequence[ChartPoint],
    *,
    centre: float,
    lower: float,
    upper: float,
    title: str,
    unit: str = "",
    reference: Sequence[ChartPoint] = (),
) -> str:
    """An individuals chart of `points` (in time order) as a standalone `<svg>` string (SO-09).

    `centre`, `lower` and `upper` are the centre line and the reference limits (e.g. the
    reference site's mean ± 3 SD); `reference` are the reference site's results, drawn in grey.
    Raises ValueError for a non-finite number or lower > upper.
    """
    centre = _check_finite(centre, "the centre line")
    lower = _check_finite(lower, "the lower limit")
    upper = _check_finite(upper, "the upper limit")
    if lower > upper:
        raise ValueError("the lower limit is above the upper limit")
    for p in (*points, *reference):
        _check_finite(p.value, f"the value of {p.label}")
    key = "cc" + _content_key(
        points, reference, centre=centre, lower=lower, upper=upper, title=title, unit=unit
    )
    description = _description(
        points, centre=centre, lower=lower, upper=upper, unit=unit, reference=reference
    )
    buffer = io.StringIO()
    with _LOCK, matplotlib.rc_context(_RC):
        figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=96)
        FigureCanvasSVG(figure)
        _draw(
            figure,
            points,
            reference,
            centre=centre,
            lower=lower,
            upper=upper,
            title=title,
            unit=unit,
            key=key,
        )
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return _standalone(buffer.getvalue(), key=key, title=title, description=description)
