"""The batches app's columns on the oversight dashboard (SO-07; issue 8 §6): batches made in
the last 30 days, their certification rate, and each site's comparability with the reference
site (SO-08, SO-09).

Each column answers for every site at once in a fixed number of grouped queries, whatever the
number of sites or batches (design §8): batches through the (created_at) index of the last 30
days; comparability from the stored snapshots, the signals of the last 90 days and the overdue
annual checks, never from the results themselves.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence

from django.db.models import Count, Max, Min, Q
from django.urls import NoReverseMatch
from django.utils import timezone

from batches.choices import (
    CERTIFIED_STATUSES,
    DECIDED_STATUSES,
    VERDICT_BADGE,
    BatchStatus,
    LimitStatus,
)
from batches.comparability.selectors import checks_overdue
from batches.models import Batch, ComparabilitySignal, ComparabilitySnapshot
from batches.stats import Verdict
from controlsite import dashboard
from controlsite.dashboard import Cell

BATCH_DAYS = 30
SIGNAL_DAYS = 90
# A certification rate's colour: nearly every decided batch certified (ok), some rejected
# (warn), many rejected (block).
RATE_OK = 95
RATE_WARN = 80

# How bad a verdict is, for "the worst verdict over the product CQAs" and for sorting.
VERDICT_RANK: dict[str, int] = {
    Verdict.COMPARABLE: 1,
    Verdict.TOO_LITTLE_DATA: 2,
    Verdict.NOT_SHOWN: 3,
}
REFERENCE_RANK = 0


def _day(moment: dt.date | dt.datetime) -> str:
    day = timezone.localdate(moment) if isinstance(moment, dt.datetime) else moment
    return f"{day.day} {day:%b %Y}"


def rate_colour(pct: int) -> str:
    if pct >= RATE_OK:
        return "ok"
    if pct >= RATE_WARN:
        return "warn"
    return "block"


#
# Batches of the last 30 days
#


@dataclasses.dataclass(frozen=True)
class _Made:
    code: str = ""
    made: int = 0
    awaiting: int = 0
    decided: int = 0
    certified: int = 0
    concession: int = 0

    @property
    def rejected(self) -> int:
        return self.decided - self.certified


def _made(site_ids: Sequence[int], now: dt.datetime) -> dict[int, _Made]:
    """Batches started at each site in the last BATCH_DAYS days, by where they stand: one
    grouped query through the creation-time index."""
    since = now - dt.timedelta(days=BATCH_DAYS)
    rows = (
        Batch.objects.filter(site_id__in=site_ids, created_at__gte=since)
        .values("site_id", "site__code")
        .annotate(
            made=Count("pk"),
            awaiting=Count("pk", filter=Q(status=BatchStatus.COMPLETED)),
            decided=Count("pk", filter=Q(status__in=list(DECIDED_STATUSES))),
            certified=Count("pk", filter=Q(status__in=list(CERTIFIED_STATUSES))),
            concession=Count("pk", filter=Q(status=BatchStatus.CERTIFIED_UNDER_CONCESSION)),
        )
        .order_by()
    )
    return {
        row["site_id"]: _Made(
            row["site__code"],
            row["made"],
            row["awaiting"],
            row["decided"],
            row["certified"],
            row["concession"],
        )
        for row in rows
    }


def batch_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """Batches started in the last 30 days (linked to them), with those awaiting the QP."""
    made = _made(site_ids, now)
    link = dashboard.link_maker("batches:index", query="site={key}")
    cells = {}
    for site_id in site_ids:
        m = made.get(site_id)
        if m is None:
            cells[site_id] = Cell(text="0", sort_value=0)
            continue
        detail = f"{m.awaiting} awaiting the QP" if m.awaiting else ""
        cells[site_id] = Cell(text=str(m.made), sort_value=m.made, link=link(m.code), detail=detail)
    return cells


def certification_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """Of the batches started in the last 30 days that a QP has decided, the share certified
    (under concession included, and said). Whole percent, rounded down, so one rejection in
    300 never shows as 100 %."""
    made = _made(site_ids, now)
    cells = {}
    for site_id, m in made.items():
        if not m.decided:
            continue
        pct = (100 * m.certified) // m.decided
        parts = [f"{m.certified} of {m.decided} decided"]
        if m.rejected:
            parts.append(f"{m.rejected} rejected")
        if m.concession:
            parts.append(f"{m.concession} under concession")
        cells[site_id] = Cell(
            text=f"{pct} %",
            sort_value=pct,
            colour=rate_colour(pct),
            bar=pct,
            detail=" · ".join(parts),
        )
    return cells


#
# Comparability (SO-08, SO-09)
#


def comparability_link() -> Callable[[str], str]:
    """The comparability page of a product (batches:comparability-product), by its path should
    the page not be mounted."""
    try:
        return dashboard.link_maker("batches:comparability-product")
    except NoReverseMatch:
        return lambda code: f"/batches/comparability/{code}/"


@dataclasses.dataclass
class _SiteComparability:
    verdicts: list[tuple[int, str, str, str]] = dataclasses.field(default_factory=list)
    # (rank, verdict, product code, CQA name) per limit in force; rank 0 at the reference site
    signals: int = 0
    signal_product: str = ""
    signal_last: dt.datetime | None = None
    overdue: int = 0
    overdue_since: dt.date | None = None
    overdue_product: str = ""


def _comparability(site_ids: Sequence[int], now: dt.datetime) -> dict[int, _SiteComparability]:
    """Three queries whatever the number of sites: the snapshots under the limits in force, the
    signals of the last 90 days and the overdue annual checks, each grouped by site."""
    found: dict[int, _SiteComparability] = defaultdict(_SiteComparability)
    # The latest evaluation under each limit in force, as plain values (200 sites by a few
    # CQAs: no model instances needed).
    snapshots = ComparabilitySnapshot.objects.filter(
        site_id__in=site_ids, limit__status=LimitStatus.ACTIVE
    ).values_list("site_id", "verdict", "limit__product__code", "limit__name")
    for site_id, verdict, product_code, cqa in snapshots:
        rank = VERDICT_RANK.get(verdict, REFERENCE_RANK)
        found[site_id].verdicts.append((rank, verdict, product_code, cqa))
    since = now - dt.timedelta(days=SIGNAL_DAYS)
    signals = (
        ComparabilitySignal.objects.filter(site_id__in=site_ids, created_at__gte=since)
        .values("site_id", "product__code")
        .annotate(n=Count("pk"), last=Max("created_at"))
        .order_by()
    )
    for row in signals:
        entry = found[row["site_id"]]
        entry.signals += row["n"]
        if entry.signal_last is None or row["last"] > entry.signal_last:
            entry.signal_last, entry.signal_product = row["last"], row["product__code"]
    overdue = (
        checks_overdue(timezone.localdate(now))
        .filter(site_id__in=site_ids)
        .values("site_id", "product__code")
        .annotate(n=Count("pk"), since=Min("due_on"))
        .order_by()
    )
    for check in overdue:
        entry = found[check["site_id"]]
        entry.overdue += check["n"]
        if entry.overdue_since is None or check["since"] < entry.overdue_since:
            entry.overdue_since, entry.overdue_product = check["since"], check["product__code"]
    return found


def comparability_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """The worst verdict over the CQAs of every product the site makes (comparable, too little
    data, not shown), its comparability signals of the last 90 days and any overdue annual
    check. A "not shown" verdict, a signal or an overdue check flags the site."""
    link = comparability_link()
    cells = {}
    for site_id, c in _comparability(site_ids, now).items():
        worst = max(c.verdicts, default=None)
        flags, details = [], []
        if worst is None:
            text, colour, rank = "Not evaluated", "muted", None
        elif worst[0] == REFERENCE_RANK:
            text, colour, rank = "Reference site", "info", REFERENCE_RANK
        else:
            verdict = Verdict(worst[1])
            text, colour, rank = verdict.label, VERDICT_BADGE[verdict.value], worst[0]
        not_shown = sorted({f"{p} {name}" for r, v, p, name in c.verdicts if v == "not_shown"})
        if not_shown:
            flags.append("comparability not shown: " + ", ".join(not_shown))
            details.append("not shown: " + ", ".join(not_shown))
        if c.signals:
            flags.append(
                f"{c.signals} comparability signal{'s' if c.signals != 1 else ''} "
                f"in {SIGNAL_DAYS} days"
            )
            details.append(f"{c.signals} signal{'s' if c.signals != 1 else ''} in {SIGNAL_DAYS} d")
        if c.overdue and c.overdue_since is not None:
            flags.append(f"annual comparability check overdue since {_day(c.overdue_since)}")
            details.append(f"check overdue since {_day(c.overdue_since)}")
        # The page to drill down to: the product whose verdict is worst if not shown, else the
        # one of the latest signal, of the overdue check, or the worst verdict's.
        product = (
            (worst[2] if not_shown and worst else "")
            or c.signal_product
            or c.overdue_product
            or (worst[2] if worst else "")
        )
        # Worst first when sorted descending: a verdict not shown, then overdue checks, then
        # signals, then the verdict's own rank; reference sites and unevaluated ones last.
        score = None
        if rank is not None or c.signals or c.overdue:
            score = (
                1000 * bool(not_shown)
                + 100 * min(c.overdue, 9)
                + 10 * min(c.signals, 9)
                + (rank or 0)
            )
        cells[site_id] = Cell(
            text=text,
            sort_value=score,
            colour=colour,
            link=link(product) if product else "",
            flag="; ".join(flags),
            detail=" · ".join(details),
        )
    return cells


def register_oversight() -> None:
    """Called from `BatchesConfig.ready()`."""
    for column in (
        dashboard.OversightColumn(
            "batches",
            "Batches (30 d)",
            20,
            batch_cells,
            help="Batches started in the last 30 days.",
        ),
        dashboard.OversightColumn(
            "certification",
            "Certified",
            30,
            certification_cells,
            help="Of the batches started in the last 30 days and decided by a QP, the share "
            "certified.",
        ),
        dashboard.OversightColumn(
            "comparability",
            "Comparability",
            60,
            comparability_cells,
            flags=True,
            help="The worst verdict against the reference site over the CQAs of the products "
            "the site makes, its comparability signals of the last 90 days and overdue "
            "annual checks.",
        ),
    ):
        dashboard.register_oversight_column(column)
