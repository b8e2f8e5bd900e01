"""The deviations app's columns on the oversight dashboard (SO-07; issue 8 §6): each site's open
deviations by class (with its overdue ones and open OOS investigations), and its overdue CAPAs.
A critical deviation open or a CAPA past its due date flags the site.

Each column is a fixed number of grouped queries over the open records (the (site, status) and
(status, due_on) indexes), whatever the number of sites (design §8).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from controlsite import dashboard
from controlsite.dashboard import Cell, Chip
from deviations.choices import (
    CAPA_OPEN,
    CLASS_BADGE,
    DEVIATION_OPEN,
    DeviationClass,
    OosOutcome,
)
from deviations.models import Capa, Deviation, OosInvestigation
from deviations.selectors import overdue_q

# The chips, mildest first; a column sorted descending puts critical deviations on top.
CLASSES = (DeviationClass.MINOR, DeviationClass.MAJOR, DeviationClass.CRITICAL)
_WEIGHT = {DeviationClass.MINOR: 1, DeviationClass.MAJOR: 1_000, DeviationClass.CRITICAL: 1_000_000}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def deviation_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """Open deviations by the class in force (QA's once confirmed, the raiser's until then) as
    chips, with how many are overdue and how many OOS investigations are open; two queries."""
    today = timezone.localdate(now)
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    overdue: dict[int, int] = defaultdict(int)
    codes: dict[int, str] = {}
    rows = (
        Deviation.objects.filter(site_id__in=site_ids, status__in=list(DEVIATION_OPEN))
        .values("site_id", "site__code", "proposed_class", "confirmed_class")
        .annotate(n=Count("pk"), late=Count("pk", filter=overdue_q(today)))
        .order_by()
    )
    for row in rows:
        cls = row["confirmed_class"] or row["proposed_class"]
        site_counts = counts[row["site_id"]]
        site_counts[cls] = site_counts.get(cls, 0) + row["n"]
        overdue[row["site_id"]] += row["late"]
        codes[row["site_id"]] = row["site__code"]
    oos = dict(
        OosInvestigation.objects.filter(
            outcome=OosOutcome.OPEN, result__batch__site_id__in=site_ids
        )
        .values_list("result__batch__site_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    link = dashboard.link_maker("deviations:index", query="show=open&site={key}")
    cells = {}
    for site_id in site_ids:
        by_class = counts.get(site_id, {})
        total = sum(by_class.values())
        details = []
        if overdue.get(site_id):
            details.append(f"{overdue[site_id]} overdue")
        if oos.get(site_id):
            details.append(f"{_plural(oos[site_id], 'OOS investigation')} open")
        critical = by_class.get(DeviationClass.CRITICAL, 0)
        cells[site_id] = Cell(
            text=f"{total} open",
            sort_value=sum(_WEIGHT[c] * by_class.get(c, 0) for c in CLASSES),
            link=link(codes[site_id]) if site_id in codes else "",
            flag=f"{_plural(critical, 'critical deviation')} open" if critical else "",
            detail=" · ".join(details),
            chips=tuple(
                Chip(str(c.label).lower(), by_class.get(c, 0), CLASS_BADGE[c]) for c in CLASSES
            ),
        )
    return cells


def capa_cells(site_ids: Sequence[int], now: dt.datetime) -> dict[int, Cell]:
    """CAPAs of the site past their due date and still open, out of those open; one query. A
    CAPA of the Control Site itself (no site) is on no row."""
    today = timezone.localdate(now)
    rows = (
        Capa.objects.filter(site_id__in=site_ids, status__in=list(CAPA_OPEN))
        .values("site_id")
        .annotate(n=Count("pk"), late=Count("pk", filter=Q(due_on__lt=today)))
        .order_by()
    )
    found = {row["site_id"]: (row["n"], row["late"]) for row in rows}
    # The CAPA list filters by overdue, not by site: the overdue ones of every site you see.
    overdue_link = reverse("deviations:capa-index") + "?show=overdue"
    cells = {}
    for site_id in site_ids:
        open_, late = found.get(site_id, (0, 0))
        cells[site_id] = Cell(
            text=str(late),
            sort_value=late * 10_000 + open_,
            colour="block" if late else "",
            link=overdue_link if late else "",
            flag=f"{_plural(late, 'overdue CAPA')}" if late else "",
            detail=f"of {open_} open" if open_ else "",
        )
    return cells


def register_oversight() -> None:
    """Called from `DeviationsConfig.ready()`."""
    dashboard.register_oversight_column(
        dashboard.OversightColumn(
            "deviations",
            "Open deviations",
            40,
            deviation_cells,
            flags=True,
            help="Open deviations by class (minor, major, critical), those overdue and open OOS "
            "investigations. A critical deviation open flags the site.",
        )
    )
    dashboard.register_oversight_column(
        dashboard.OversightColumn(
            "capas",
            "Overdue CAPAs",
            50,
            capa_cells,
            flags=True,
            help="Open CAPAs past their due date, of those open. Any flags the site.",
        )
    )
