"""The master-file app's section of the annual report: the product's site list and how it
changed in the period, and the master-file versions in force (issue 8 §7; MF-04, MF-07, RP-01).

Registered in `MasterfileConfig.ready()` with `controlsite.reports`. Reads only masterfile and
sites records. `scope_site_ids` gives the report's scope the sites linked to the product during
the period, which the sections of other apps (site status changes, batches) report on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q, QuerySet

from controlsite import reports
from controlsite.reports import ReportScope, ReportSection
from masterfile.choices import ProductSiteRole, VersionStatus
from masterfile.models import MasterFileVersion, Product, ProductSite
from sites.choices import SiteKind, SiteStatus

SECTION_NAME = "masterfile.sites"


def _label(choices: Any, value: str) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def links_during(product_id: int, start_at: dt.datetime, end_at: dt.datetime) -> QuerySet[Any]:
    """The product's site links that existed at any moment in [start_at, end_at)."""
    return ProductSite.objects.filter(product_id=product_id, created_at__lt=end_at).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=start_at)
    )


def scope_site_ids(product: Product, start_at: dt.datetime, end_at: dt.datetime) -> tuple[int, ...]:
    """Every site linked to the product during the period, and its reference site, by id."""
    ids = set(links_during(product.pk, start_at, end_at).values_list("site_id", flat=True))
    ids.add(product.reference_site_id)
    return tuple(sorted(ids))


def _day(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).date().isoformat() if moment else None


def collect_product_sites(scope: ReportScope) -> dict[str, Any]:
    """The sites linked to the product at the end of the period (or now, for a year not yet
    over), the links added and ended in the period, and the master-file versions in force."""
    cutoff = scope.cutoff
    links = list(
        links_during(scope.product_id, scope.start_at, cutoff)
        .select_related("site")
        .order_by("role", "site__code", "created_at")
    )

    def row(link: ProductSite) -> dict[str, Any]:
        site = link.site
        return {
            "code": site.code,
            "name": site.name,
            "kind": _label(SiteKind, site.kind),
            "role": _label(ProductSiteRole, link.role),
            "reference": link.site_id == scope.reference_site_id
            and link.role == ProductSiteRole.MANUFACTURING,
            "linked_on": _day(link.created_at),
            "ended_on": _day(link.ended_at),
            "status_now": _label(SiteStatus, site.status),
        }

    network = [row(link) for link in links if link.ended_at is None or link.ended_at >= cutoff]
    network.sort(
        key=lambda r: (
            r["role"] != str(ProductSiteRole.MANUFACTURING.label),
            not r["reference"],
            r["code"],
        )
    )
    added = [row(link) for link in links if link.created_at >= scope.start_at]
    ended = [
        row(link)
        for link in links
        if link.ended_at is not None and scope.start_at <= link.ended_at < cutoff
    ]
    versions = [
        {
            "number": v.number,
            "status": _label(VersionStatus, v.status),
            "effective_date": v.effective_date.isoformat() if v.effective_date else None,
            "superseded_on": _day(v.superseded_at),
            "change_summary": " ".join(v.change_summary.split())[:300],
        }
        for v in MasterFileVersion.objects.filter(
            master_file__product_id=scope.product_id,
            status__in=[VersionStatus.EFFECTIVE, VersionStatus.SUPERSEDED],
            effective_date__lt=scope.end,
        )
        .filter(Q(superseded_at__isnull=True) | Q(superseded_at__gte=scope.start_at))
        .order_by("number")
    ]
    manufacturing = str(ProductSiteRole.MANUFACTURING.label)
    return {
        "network": network,
        "added": added,
        "ended": ended,
        "versions": versions,
        "counts": {
            "manufacturing": sum(1 for r in network if r["role"] == manufacturing),
            "testing": sum(1 for r in network if r["role"] != manufacturing),
            "added": len(added),
            "ended": len(ended),
        },
    }


SECTION = ReportSection(
    name=SECTION_NAME,
    title="Sites and the master file",
    order=10,
    collect=collect_product_sites,
    template="pdf/partials/report_product_sites.html",
    description="The sites that make and test the product, the sites added and removed in the "
    "period, and the master-file versions in force (MF-04, RP-01).",
)


def register_report_sections() -> None:
    """Called from `MasterfileConfig.ready()`."""
    reports.register(SECTION)
