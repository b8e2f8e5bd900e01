"""The report-section registry: what each app contributes to a product's annual report and to the
master file export's annexes (issue 8 §7; design §2; MF-07, RP-01).

The annual report of a product for a year is made by `masterfile` (it owns products and the PDF
conventions), but its figures live in apps above and below it: site status changes in `sites`,
batches and comparability in `batches`, deviations and CAPA in `deviations`. `masterfile` may not
import `batches` or `deviations`, and the kernel imports no app, so each app registers its
sections here in `AppConfig.ready()`:

    reports.register(reports.ReportSection(
        name="batches", title="Batches per site", order=30,
        collect=collect_batches, template="pdf/partials/report_batches.html",
    ))

and the report (and the master-file export, for `annex=True` sections) asks the registry.

A section reads only its own app and the apps below it. What it needs to know about the product
that it cannot read itself — which sites were linked to it during the period — comes in the
`ReportScope`, which `masterfile` fills in. `collect(scope)` runs inside the report's one
read-only database snapshot and returns plain, picklable data (dicts, lists, strings, numbers,
dates); `draw(data)`, if given, runs afterwards, outside any transaction and without the
database, to add drawings (charts as SVG) to that data. In the returned data, keys ending in
`_svg` hold drawings: they are left out of the JSON attachment of the figures
(`figures_json`). A `signatures` key, if present, lists the electronic signatures the section
shows (dicts with printed_name, username, meaning, signed_at, reason, record, valid): the
report gathers them into its signature manifest (ES-01).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

SVG_SUFFIX = "_svg"


@dataclasses.dataclass(frozen=True)
class ReportScope:
    """What a section reports on: one product over a period of whole days, `start` inclusive
    and `end` exclusive (a calendar year is 1 Jan to the next 1 Jan).

    - `site_ids`: every site linked to the product (making or testing it) at any time in the
      period, and its reference site — filled in by `masterfile`, which owns those links;
    - `as_at`: the moment the data are read. A period that has not ended yet is reported up to
      this moment, and "still open" or "overdue" mean as at the earlier of the period's end and
      this moment;
    - `annex`: True when the section is collected for the master file export's annex rather
      than for an annual report.
    """

    product_id: int
    start: dt.date
    end: dt.date
    site_ids: tuple[int, ...]
    reference_site_id: int
    as_at: dt.datetime
    annex: bool = False

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("a report period ends after it starts")
        if self.as_at.tzinfo is None:
            raise ValueError("as_at must be timezone-aware")

    @property
    def start_at(self) -> dt.datetime:
        """The period's first moment (UTC midnight)."""
        return dt.datetime.combine(self.start, dt.time.min, tzinfo=dt.UTC)

    @property
    def end_at(self) -> dt.datetime:
        """The first moment after the period (UTC midnight), exclusive."""
        return dt.datetime.combine(self.end, dt.time.min, tzinfo=dt.UTC)

    @property
    def cutoff(self) -> dt.datetime:
        """The moment "still open" and "overdue" are judged at: the period's end, or the moment
        the data are read if the period has not ended yet."""
        return min(self.end_at, self.as_at)

    @property
    def cutoff_date(self) -> dt.date:
        """The last day wholly inside the period as judged at `cutoff` (a due date before this
        day has passed)."""
        return self.cutoff.astimezone(dt.UTC).date()

    @property
    def complete(self) -> bool:
        """True when the whole period lies before `as_at`."""
        return self.as_at >= self.end_at


@dataclasses.dataclass(frozen=True)
class ReportSection:
    """One section of the annual report, contributed by an app.

    `name` is unique (`<app>` or `<app>.<what>`); `order` places it in the report; `template` is
    a partial under templates/pdf/partials/ that receives `data` (what `collect` returned, with
    `draw`'s additions) and `section` (the heading number, anchor and title). `annex` puts the
    section also into the master file export, as an annex collected for the last twelve months.
    """

    name: str
    title: str
    order: int
    collect: Callable[[ReportScope], Any]
    template: str
    annex: bool = False
    draw: Callable[[Any], Any] | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class CollectedSection:
    """A section with its data, as the report renders it."""

    name: str
    title: str
    order: int
    template: str
    description: str
    data: Any


_registry: dict[str, ReportSection] = {}


def register(section: ReportSection) -> None:
    """Add a section. Names are unique; registering another under a taken name is a bug."""
    if section.name in _registry and _registry[section.name] != section:
        raise ValueError(f"A different report section is already registered as {section.name!r}")
    _registry[section.name] = section


def unregister(name: str) -> None:
    _registry.pop(name, None)


def registered(*, annex_only: bool = False) -> list[ReportSection]:
    """The sections in report order; with `annex_only`, those that go into the master file."""
    sections = sorted(_registry.values(), key=lambda s: (s.order, s.name))
    return [s for s in sections if s.annex] if annex_only else sections


def collect(scope: ReportScope, *, annex_only: bool = False) -> list[CollectedSection]:
    """Run every registered section's `collect` (reads only; the caller holds the snapshot)."""
    sections = registered(annex_only=annex_only)
    return [
        CollectedSection(s.name, s.title, s.order, s.template, s.description, s.collect(scope))
        for s in sections
    ]


def draw(sections: Iterable[CollectedSection]) -> list[CollectedSection]:
    """Run each section's `draw` on its data: outside any transaction, no database access."""
    out = []
    for collected in sections:
        section = _registry.get(collected.name)
        if section is not None and section.draw is not None:
            collected = dataclasses.replace(collected, data=section.draw(collected.data))
        out.append(collected)
    return out


def without_drawings(data: Any) -> Any:
    """The data with every `..._svg` key left out (for the JSON attachment of the figures)."""
    if isinstance(data, dict):
        return {
            key: without_drawings(value)
            for key, value in data.items()
            if not (isinstance(key, str) and key.endswith(SVG_SUFFIX))
        }
    if isinstance(data, list | tuple):
        return [without_drawings(value) for value in data]
    return data


def signatures_in(sections: Iterable[CollectedSection]) -> list[dict[str, Any]]:
    """Every signature the sections show, in the order they list them."""
    found: list[dict[str, Any]] = []
    for section in sections:
        if isinstance(section.data, dict):
            found.extend(section.data.get("signatures") or [])
    return found
