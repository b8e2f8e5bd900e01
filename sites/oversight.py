"""The oversight dashboard (SO-07; issue 8 §6): every site a person may see on one page, with
its status, batches, certification rate, open deviations, overdue CAPAs, training compliance,
last audit and comparability verdict, so the Control Site can show it supervises and controls
each site (HMR reg 22(1A)/(1B)).

The page belongs to `sites`, which owns the site list, but its columns come from the apps that
own the records, through the kernel's registry (`controlsite.dashboard.OversightColumn`):
`sites` registers the status and last-audit columns here, `batches`, `deviations` and
`training` theirs in their own `oversight.py` (design §2: `sites` never imports them). Each
column answers for all the sites in a fixed number of queries, so the page's query count does
not grow with the number of sites (design §8).

A site is flagged (a red marker, and it may sort to the top) when any column says why: a
comparability signal in the last 90 days, a verdict "not shown" or an overdue annual check
(`batches`), an overdue CAPA or a critical deviation open (`deviations`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db.models import Count, DateField, IntegerField, OuterRef, Subquery
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from controlsite import dashboard
from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.dashboard import Cell, OversightColumn, OversightRow
from sites.choices import STATUS_BADGE, SiteAuditStatus, SiteStatus
from sites.models import Site, SiteAudit
from sites.selectors import sites_visible_to

# A site that may make product (or has) should have been audited within this many days.
AUDIT_INTERVAL_DAYS = 365
AUDITED_STATES = frozenset(
    {SiteStatus.QUALIFIED, SiteStatus.ACTIVE, SiteStatus.PAUSED, SiteStatus.SUSPENDED}
)
# The lifecycle's order, for sorting by status.
STATUS_ORDER: dict[str, int] = {status.value: i for i, status in enumerate(SiteStatus)}
# Seconds between refreshes of the table (htmx polling).
REFRESH_SECONDS = 60
# Flagged sites shown by name on the home panel.
PANEL_FLAGGED_SHOWN = 5


def _day(day: dt.date) -> str:
    return f"{day.day} {day:%b %Y}"


#
# The sites app's columns
#


def status_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """Each site's lifecycle status as its badge, linked to the site page; one query."""
    link = dashboard.link_maker("sites:detail")
    rows = Site.objects.filter(pk__in=site_ids).values_list(
        "pk", "code", "status", "status_changed_at"
    )
    return {
        pk: Cell(
            text=str(SiteStatus(status).label),
            sort_value=STATUS_ORDER[status],
            colour=STATUS_BADGE[status],
            link=link(code),
            detail=f"since {_day(timezone.localdate(changed))}" if changed else "",
        )
        for pk, code, status, changed in rows
    }


def audit_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """Each site's last audit done (the record of the Control Site's visits and of the site's
    self-inspections, SO-10), its title, and the next one planned; amber when a site that may
    make product was last audited more than a year ago, or never, or a planned audit is past
    its date. One query."""
    today = timezone.localdate(now)
    done = SiteAudit.objects.filter(site=OuterRef("pk"), status=SiteAuditStatus.DONE).order_by(
        "-done_on", "-id"
    )
    planned = SiteAudit.objects.filter(
        site=OuterRef("pk"), status=SiteAuditStatus.PLANNED
    ).order_by("planned_for", "id")
    rows = (
        Site.objects.filter(pk__in=site_ids)
        .annotate(
            last_on=Subquery(done.values("done_on")[:1], output_field=DateField()),
            last_title=Subquery(done.values("title")[:1]),
            next_on=Subquery(planned.values("planned_for")[:1], output_field=DateField()),
            late=Subquery(
                planned.filter(planned_for__lt=today)
                .order_by()
                .values("site")
                .annotate(n=Count("pk"))
                .values("n")[:1],
                output_field=IntegerField(),
            ),
        )
        .values_list("pk", "code", "status", "last_on", "last_title", "next_on", "late")
    )
    link = dashboard.link_maker("sites:detail")
    stale_before = today - dt.timedelta(days=AUDIT_INTERVAL_DAYS)
    cells = {}
    for pk, code, status, last_on, last_title, next_on, late in rows:
        details = [last_title] if last_title else []
        if late:
            details.append(f"planned audit overdue since {_day(next_on)}")
        elif next_on is not None:
            details.append(f"next {_day(next_on)}")
        due = status in AUDITED_STATES and (last_on is None or last_on < stale_before)
        cells[pk] = Cell(
            text=_day(last_on) if last_on else "never",
            # Oldest first when sorted ascending; never audited is older than any date.
            sort_value=last_on.toordinal() if last_on else 0,
            colour="warn" if due or late else "",
            link=link(code) + "#audits",
            detail=" · ".join(details),
        )
    return cells


def register_oversight() -> None:
    """Called from `SitesConfig.ready()`."""
    dashboard.register_oversight_column(
        OversightColumn(
            "status",
            "Status",
            10,
            status_cells,
            help="Where the site stands in its lifecycle, and since when.",
        )
    )
    dashboard.register_oversight_column(
        OversightColumn(
            "audit",
            "Last audit",
            80,
            audit_cells,
            help="The last audit or QA visit done at the site, and the next one planned. Amber: "
            "more than a year ago (or never) for a site that may make product, or a planned "
            "audit past its date.",
        )
    )


#
# The page
#

STATUS_NOT_CEASED = ""
STATUS_ALL = "all"
FLAGGED_FIRST = "first"
FLAGGED_ONLY = "only"
FLAGGED_INLINE = "off"
FLAGGED_CHOICES: dict[str, str] = {
    FLAGGED_FIRST: "Flagged sites first",
    FLAGGED_ONLY: "Only flagged sites",
    FLAGGED_INLINE: "In the order chosen",
}


def status_choices() -> list[tuple[str, str]]:
    return [
        (STATUS_NOT_CEASED, "Every site not ceased"),
        (STATUS_ALL, "Every site"),
        *((s.value, str(s.label)) for s in SiteStatus),
    ]


@dataclasses.dataclass(frozen=True)
class OversightQuery:
    """What the page shows: which sites (by status), in which order, flagged sites where.
    Unknown values fall back to the defaults: the page is a read, never refused."""

    status: str = STATUS_NOT_CEASED
    sort: str = ""
    descending: bool = False
    flagged: str = FLAGGED_FIRST

    @classmethod
    def from_params(
        cls, params: Mapping[str, str], columns: Sequence[OversightColumn]
    ) -> OversightQuery:
        status = params.get("status", STATUS_NOT_CEASED)
        if status not in {STATUS_ALL, *SiteStatus.values}:
            status = STATUS_NOT_CEASED
        sort = params.get("sort", "")
        if sort not in {c.name for c in columns if c.sortable}:
            sort = ""
        flagged = params.get("flagged", FLAGGED_FIRST)
        if flagged not in FLAGGED_CHOICES:
            flagged = FLAGGED_FIRST
        return cls(status, sort, params.get("dir") == "desc" and bool(sort), flagged)

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string's fields for this view, changed as given, defaults left out."""
        merged = dataclasses.replace(self, **changes)
        out = {}
        if merged.status != STATUS_NOT_CEASED:
            out["status"] = merged.status
        if merged.sort:
            out["sort"] = merged.sort
            if merged.descending:
                out["dir"] = "desc"
        if merged.flagged != FLAGGED_FIRST:
            out["flagged"] = merged.flagged
        return out


@dataclasses.dataclass(frozen=True)
class OversightTable:
    query: OversightQuery
    columns: list[OversightColumn]
    rows: list[OversightRow]
    sites: int  # sites matching the status filter
    flagged: int  # of which flagged
    at: dt.datetime


def _sites(user: Any, status: str) -> list[Site]:
    qs = sites_visible_to(user)
    if status == STATUS_NOT_CEASED:
        qs = qs.exclude(status=SiteStatus.CEASED)
    elif status != STATUS_ALL:
        qs = qs.filter(status=status)
    return list(qs.only("pk", "code", "name").order_by("code"))


def oversight_table(
    *, user: Any, query: OversightQuery, now: dt.datetime | None = None
) -> OversightTable:
    """The dashboard's rows for the sites this person may see (sites_visible_to: every site for
    Control Site QA, QPs and inspectors, their own for site staff), filtered and sorted: one
    query for the sites, then each registered column once for all of them."""
    now = now or timezone.now()
    columns = dashboard.oversight_columns()
    sites = _sites(user, query.status)
    rows = dashboard.oversight_rows(sites, columns, now)
    flagged = sum(1 for r in rows if r.flagged)
    if query.flagged == FLAGGED_ONLY:
        rows = [r for r in rows if r.flagged]
    rows = dashboard.oversight_sort(
        rows,
        columns,
        by=query.sort,
        descending=query.descending,
        flagged_first=query.flagged == FLAGGED_FIRST,
    )
    return OversightTable(query, columns, rows, len(sites), flagged, now)


def cell_html(cell: Cell) -> SafeString:
    """One cell drawn as the kernel's Cell says (chips, a small bar, a badge or text, linked
    when it has a link, with its detail below). Built here rather than in the template: 200
    sites by eight columns is 1,600 cells each minute, and the template engine takes about
    five times as long. Everything that came from a record is escaped."""
    if cell.chips:
        chips = "".join(
            f'<span class="count-chip count-chip-{escape(chip.colour)}'
            f'{"" if chip.count else " count-chip-zero"}" title="{chip.count} '
            f'{escape(chip.label)}">{chip.count}<span class="visually-hidden"> '
            f"{escape(chip.label)}</span></span>"
            for chip in cell.chips
        )
        body = f'<span class="count-chips">{chips}</span>'
    elif cell.bar is not None:
        width = max(0, min(100, int(cell.bar)))
        body = (
            f'<span class="mini-bar mini-bar-{escape(cell.colour or "info")}" aria-hidden="true">'
            f'<span style="width: {width}%"></span></span> '
            f'<span class="mini-bar-text">{escape(cell.text)}</span>'
        )
    elif cell.colour:
        body = f'<span class="badge badge-{escape(cell.colour)}">{escape(cell.text)}</span>'
    else:
        body = str(escape(cell.text))
    if cell.link:
        body = f'<a class="cell-link" href="{escape(cell.link)}">{body}</a>'
    if cell.detail:
        body += f'<div class="small muted">{escape(cell.detail)}</div>'
    return mark_safe(body)  # noqa: S308 - every value above is escaped


#
# The home panel
#


def oversight_panel(request: HttpRequest) -> dict[str, Any] | None:
    """ "Site oversight" on the home page of those who oversee every site (QA, QPs, inspectors):
    how many sites are flagged and why, and the way to the dashboard. Only the columns that
    may flag a site are asked (a handful of grouped queries)."""
    user = request.user
    if not user.is_authenticated or not permissions.user_can(user, Capability.VIEW_ALL_SITES):
        return None
    sites = _sites(user, STATUS_NOT_CEASED)
    if not sites:
        return None
    rows = dashboard.oversight_rows(
        sites, dashboard.oversight_columns(flagging_only=True), timezone.now()
    )
    flagged = [r for r in rows if r.flagged]
    return {
        "sites": len(sites),
        "flagged": len(flagged),
        "shown": flagged[:PANEL_FLAGGED_SHOWN],
        "more": max(len(flagged) - PANEL_FLAGGED_SHOWN, 0),
    }


def register_panel() -> None:
    dashboard.register(
        dashboard.Panel(
            "oversight", "Site oversight", "sites/panels/_oversight.html", oversight_panel, 6
        )
    )
