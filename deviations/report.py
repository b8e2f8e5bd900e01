"""The deviations app's section of the annual report: deviations and CAPA of the product, by
class and by site (issue 8 §7; DV-01…DV-04, DV-02, RP-01).

Registered in `DeviationsConfig.ready()` with `controlsite.reports`.

What counts as the product's:

- a deviation on one of its batches, or opened from one of its comparability signals; and a
  deviation raised at one of its sites without a batch (a site-level deviation touches every
  product made there), counted apart as "site-level";
- a CAPA raised from one of those deviations, from an OOS investigation of one of them, from a
  complaint about the product, or from an audit finding at one of its sites.

"Open" and "overdue" are judged at the end of the period, or at the moment the report is made
for a year not yet over (`ReportScope.cutoff`): a record raised before then and not closed by
then is open; an open one whose due date has passed is overdue. A cancelled record is neither
(its cancellation carries no date, so it is left out of both).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Case, Count, F, Q, QuerySet, When

from controlsite import reports
from controlsite.reports import ReportScope, ReportSection
from deviations.choices import (
    CapaSource,
    CapaStatus,
    DeviationClass,
    DeviationSource,
    DeviationStatus,
)
from deviations.models import Capa, Deviation
from sites.models import Site

SECTION_NAME = "deviations"
# The major and critical deviations of the period are listed one by one, up to this many.
LISTED_MAX = 100
CLASSES = (DeviationClass.MINOR, DeviationClass.MAJOR, DeviationClass.CRITICAL)


def _deviations(scope: ReportScope) -> QuerySet[Deviation]:
    return Deviation.objects.filter(
        Q(batch__product_id=scope.product_id)
        | Q(comparability_signal__product_id=scope.product_id)
        | Q(
            batch__isnull=True,
            comparability_signal__isnull=True,
            site_id__in=scope.site_ids,
        )
    )


def _capas(scope: ReportScope, deviations: QuerySet[Deviation]) -> QuerySet[Capa]:
    ids = deviations.values("pk")
    return Capa.objects.filter(
        Q(deviation_id__in=ids)
        | Q(oos__deviation_id__in=ids)
        | Q(complaint__product_id=scope.product_id)
        | Q(source=CapaSource.AUDIT, site_id__in=scope.site_ids)
    )


def _windows(scope: ReportScope) -> dict[str, Q]:
    start, cutoff = scope.start_at, scope.cutoff
    open_at_cutoff = (
        Q(created_at__lt=cutoff)
        & ~Q(status=DeviationStatus.CANCELLED)
        & (Q(closed_at__isnull=True) | Q(closed_at__gte=cutoff))
    )
    return {
        "raised": Q(created_at__gte=start, created_at__lt=cutoff),
        "closed": Q(closed_at__gte=start, closed_at__lt=cutoff),
        "open": open_at_cutoff,
        "overdue": open_at_cutoff & Q(due_on__lt=scope.cutoff_date),
    }


def _class_label(value: str) -> str:
    return str(DeviationClass(value).label)


def collect_deviations(scope: ReportScope) -> dict[str, Any]:
    """Deviations raised, closed, open and overdue by class and by site, the major and critical
    ones listed, and CAPAs opened, closed, open and overdue by site: four grouped queries and
    two lists, whatever the number of sites."""
    cutoff = scope.cutoff
    deviations = _deviations(scope)
    w = _windows(scope)
    touched = w["raised"] | w["closed"] | w["open"]
    klass = Case(
        When(~Q(confirmed_class=""), then=F("confirmed_class")), default=F("proposed_class")
    )
    site_level = Q(batch__isnull=True, comparability_signal__isnull=True)
    from_comparability = Q(source=DeviationSource.COMPARABILITY)
    by_site_class: list[dict[str, Any]] = [
        dict(row)
        for row in deviations.filter(touched)
        .annotate(klass=klass)
        .values("site_id", "klass")
        .annotate(
            raised=Count("id", filter=w["raised"]),
            closed=Count("id", filter=w["closed"]),
            open=Count("id", filter=w["open"]),
            overdue=Count("id", filter=w["overdue"]),
            site_level=Count("id", filter=w["raised"] & site_level),
            comparability=Count("id", filter=w["raised"] & from_comparability),
        )
    ]
    measures = ("raised", "closed", "open", "overdue", "site_level", "comparability")
    classes: dict[str, dict[str, Any]] = {
        c.value: {"key": c.value, "label": str(c.label), **dict.fromkeys(measures, 0)}
        for c in CLASSES
    }
    per_site: dict[int, dict[str, int]] = {}
    for row in by_site_class:
        bucket = classes[row["klass"]]
        counts = per_site.setdefault(
            row["site_id"], dict.fromkeys((*measures, *(c.value for c in CLASSES)), 0)
        )
        for measure in measures:
            bucket[measure] += row[measure]
            counts[measure] += row[measure]
        counts[row["klass"]] += row["raised"]

    capa_windows = {
        "opened": Q(created_at__gte=scope.start_at, created_at__lt=cutoff),
        "closed": Q(closed_at__gte=scope.start_at, closed_at__lt=cutoff),
        "open": Q(created_at__lt=cutoff)
        & ~Q(status=CapaStatus.CANCELLED)
        & (Q(closed_at__isnull=True) | Q(closed_at__gte=cutoff)),
    }
    capa_windows["overdue"] = capa_windows["open"] & Q(due_on__lt=scope.cutoff_date)
    capas = _capas(scope, deviations)
    touched_capas = capa_windows["opened"] | capa_windows["closed"] | capa_windows["open"]
    capa_rows: dict[int | None, dict[str, Any]] = {
        row["site_id"]: dict(row)
        for row in capas.filter(touched_capas)
        .values("site_id")
        .annotate(**{name: Count("id", filter=q) for name, q in capa_windows.items()})
    }
    site_ids = {*scope.site_ids, *per_site, *(k for k in capa_rows if k is not None)}
    sites = sorted(
        Site.objects.filter(pk__in=site_ids),
        key=lambda s: (s.pk != scope.reference_site_id, s.code),
    )
    capa_measures = tuple(capa_windows)
    site_rows: list[dict[str, Any]] = []
    capa_site_rows: list[dict[str, Any]] = []
    for site in sites:
        site_counts = per_site.get(site.pk, {})
        site_rows.append(
            {
                "code": site.code,
                "name": site.name,
                "reference": site.pk == scope.reference_site_id,
                **{m: site_counts.get(m, 0) for m in measures},
                **{c.value: site_counts.get(c.value, 0) for c in CLASSES},
            }
        )
        found = capa_rows.get(site.pk, {})
        capa_site_rows.append({"code": site.code, **{m: found.get(m, 0) for m in capa_measures}})
    unsited = capa_rows.get(None)
    if unsited is not None:  # audit CAPAs of the Control Site itself carry no site
        capa_site_rows.append({"code": "", **{m: unsited.get(m, 0) for m in capa_measures}})
    capa_totals = {m: sum(row[m] for row in capa_site_rows) for m in capa_measures}

    notable = [
        {
            "number": d.number,
            "code": d.site.code,
            "batch": d.batch.number if d.batch else "",
            "class": _class_label(d.deviation_class),
            "class_key": d.deviation_class,
            "title": d.title,
            "status": str(d.get_status_display()),
            "source": str(d.get_source_display()),
            "raised_on": d.created_at.astimezone(dt.UTC).date().isoformat(),
            "closed_on": d.closed_at.astimezone(dt.UTC).date().isoformat()
            if d.closed_at and d.closed_at < cutoff
            else None,
        }
        for d in deviations.filter(w["raised"])
        .annotate(klass=klass)
        .filter(klass__in=[DeviationClass.MAJOR, DeviationClass.CRITICAL])
        .select_related("site", "batch")
        .order_by("created_at", "id")[:LISTED_MAX]
    ]
    overdue_capas = [
        {
            "number": c.number,
            "code": c.site.code if c.site else "",
            "title": c.title,
            "due_on": c.due_on.isoformat(),
            "status": str(c.get_status_display()),
            "owner": c.owner.printed_name,
        }
        for c in capas.filter(capa_windows["overdue"])
        .select_related("site", "owner")
        .order_by("due_on", "id")[:LISTED_MAX]
    ]
    class_rows = list(classes.values())
    return {
        "as_at": scope.cutoff.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "as_at_text": f"{scope.cutoff.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "classes": class_rows,
        "totals": {m: sum(c[m] for c in class_rows) for m in measures},
        "sites": site_rows,
        "notable": notable,
        "notable_cut": len(notable) == LISTED_MAX,
        "capa_sites": capa_site_rows,
        "capa_totals": capa_totals,
        "capa_overdue": overdue_capas,
        "notes": {"class": "QA's confirmed class, or the proposed one until confirmed (DV-03)."},
    }


SECTION = ReportSection(
    name=SECTION_NAME,
    title="Deviations and CAPA",
    order=40,
    collect=collect_deviations,
    template="pdf/partials/report_deviations.html",
    description="Deviations raised, closed, open and overdue, by class and by site; the major "
    "and critical ones; CAPAs opened, closed and overdue (DV-01…DV-04, DV-02).",
)


def register_report_sections() -> None:
    """Called from `DeviationsConfig.ready()`."""
    reports.register(SECTION)
