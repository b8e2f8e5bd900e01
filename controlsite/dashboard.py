"""The dashboards' registries: the home page's panels, the site page's panels and the oversight
dashboard's columns. Apps register them in `AppConfig.ready()`; the kernel renders whatever is
registered, in order, and never imports an app (design §2)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.http import HttpRequest
from django.urls import reverse


@dataclasses.dataclass(frozen=True)
class Panel:
    name: str
    title: str
    template: str
    context: Callable[[HttpRequest], dict[str, Any] | None]
    order: int = 100


_panels: dict[str, Panel] = {}


def register(panel: Panel) -> None:
    _panels[panel.name] = panel


def panels_for(request: HttpRequest) -> list[tuple[Panel, dict[str, Any]]]:
    """Panels this user may see (a panel's context callable returns None to hide itself)."""
    shown = []
    for panel in sorted(_panels.values(), key=lambda p: (p.order, p.name)):
        ctx = panel.context(request)
        if ctx is not None:
            shown.append((panel, ctx))
    return shown


#
# The site page's panels
#


@dataclasses.dataclass(frozen=True)
class SitePanel:
    """A panel on a site's own page (sites/detail.html), contributed by an app above `sites`
    (training's compliance, say) without `sites` importing it (design §2). `context` takes the
    request and the site and returns None to hide the panel from this person."""

    name: str
    title: str
    template: str
    context: Callable[[HttpRequest, Any], dict[str, Any] | None]
    order: int = 100


_site_panels: dict[str, SitePanel] = {}


def register_site_panel(panel: SitePanel) -> None:
    _site_panels[panel.name] = panel


def site_panels_for(request: HttpRequest, site: Any) -> list[tuple[SitePanel, dict[str, Any]]]:
    """The site-page panels this person may see for `site`, in order."""
    shown = []
    for panel in sorted(_site_panels.values(), key=lambda p: (p.order, p.name)):
        ctx = panel.context(request, site)
        if ctx is not None:
            shown.append((panel, ctx))
    return shown


#
# The oversight dashboard's columns (SO-07, TR-06)
#


@dataclasses.dataclass(frozen=True)
class Chip:
    """A coloured count inside a cell (open deviations of one class, say)."""

    label: str
    count: int
    colour: str


@dataclasses.dataclass(frozen=True)
class Cell:
    """One site's value in one oversight column.

    `text` is what is read; `sort_value` orders the column (None: nothing to sort by, always
    last). How it is drawn: as a badge of `colour` when a colour is given, with a small bar of
    `bar` percent when given, or as `chips`. `link` drills down to the records behind the value;
    `detail` is a second, smaller line. A non-empty `flag` says why this value puts the site on
    the watch list (a red marker on its row, and it may sort to the top).
    """

    text: str
    sort_value: float | str | None
    colour: str = ""
    link: str = ""
    flag: str = ""
    detail: str = ""
    bar: int | None = None
    chips: tuple[Chip, ...] = ()


EMPTY_CELL = Cell(text="—", sort_value=None)


@dataclasses.dataclass(frozen=True)
class OversightColumn:
    """A column of the oversight dashboard, contributed by the app that owns its records.

    `cells(site_ids, now)` answers for every given site at once, in a number of queries that
    does not grow with the number of sites (grouped queries, never one per site: design §8).
    A site it has nothing to say about may be left out (it shows as "—"). `flags` says the
    column may flag a site, so a summary of the watch list can ask only those columns.
    """

    name: str
    title: str
    order: int
    cells: Callable[[Sequence[int], dt.datetime], Mapping[int, Cell]]
    sortable: bool = True
    flags: bool = False
    help: str = ""


_oversight_columns: dict[str, OversightColumn] = {}


def register_oversight_column(column: OversightColumn) -> None:
    _oversight_columns[column.name] = column


def oversight_columns(*, flagging_only: bool = False) -> list[OversightColumn]:
    """The registered columns, in order."""
    columns = sorted(_oversight_columns.values(), key=lambda c: (c.order, c.name))
    return [c for c in columns if c.flags] if flagging_only else columns


@dataclasses.dataclass(frozen=True)
class OversightRow:
    """A site and its cells, one per column, in column order."""

    site: Any
    cells: tuple[Cell, ...]

    @property
    def flags(self) -> list[str]:
        return [cell.flag for cell in self.cells if cell.flag]

    @property
    def flagged(self) -> bool:
        return any(cell.flag for cell in self.cells)


def oversight_rows(
    sites: Sequence[Any], columns: Sequence[OversightColumn], now: dt.datetime
) -> list[OversightRow]:
    """Every site's cells: each column is asked once, for all the sites together."""
    ids = [site.pk for site in sites]
    answers = [column.cells(ids, now) if ids else {} for column in columns]
    return [
        OversightRow(site, tuple(answer.get(site.pk, EMPTY_CELL) for answer in answers))
        for site in sites
    ]


def _sort_key(value: float | str | None) -> tuple[float, str]:
    # A column sorts either numbers or words; this keeps mypy and mixed columns honest.
    if isinstance(value, str):
        return (0.0, value)
    return (float(value or 0), "")


def oversight_sort(
    rows: Sequence[OversightRow],
    columns: Sequence[OversightColumn],
    *,
    by: str = "",
    descending: bool = False,
    flagged_first: bool = True,
) -> list[OversightRow]:
    """Rows by site code, then by the column named `by` (cells without a value last, either
    way), then flagged sites first when asked. Each sort is stable, so ties keep the order of
    the sorts before it."""
    ordered = sorted(rows, key=lambda r: str(getattr(r.site, "code", r.site.pk)))
    index = next((i for i, c in enumerate(columns) if c.name == by and c.sortable), None)
    if index is not None:
        valued = [r for r in ordered if r.cells[index].sort_value is not None]
        empty = [r for r in ordered if r.cells[index].sort_value is None]
        valued.sort(key=lambda r: _sort_key(r.cells[index].sort_value), reverse=descending)
        ordered = valued + empty
    if flagged_first:
        ordered.sort(key=lambda r: not r.flagged)
    return ordered


_LINK_MARKER = "ZZ0LINK0ZZ"


def link_maker(viewname: str, *, query: str = "") -> Callable[[str], str]:
    """`link_maker("sites:detail")("MAN2")` → "/sites/MAN2/";
    `link_maker("batches:index", query="site={key}")("MAN2")` → "/batches/?site=MAN2".

    The URL is reversed once and the key substituted for each site: a refresh of 200 sites by
    several columns would otherwise reverse a thousand URLs. The key must be URL-safe (site and
    product codes are)."""
    if "{key}" in query:
        base = reverse(viewname) + "?" + query.replace("{key}", _LINK_MARKER)
    else:
        base = reverse(viewname, args=[_LINK_MARKER]) + (f"?{query}" if query else "")
    return lambda key: base.replace(_LINK_MARKER, key)
