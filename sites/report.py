"""The sites app's section of the annual report: what happened to the product's sites in the
period — status changes (onboarding, activation, pause, suspension, cessation) and audits done
(issue 8 §7; SO-01, SO-04, SO-10, RP-01).

Registered in `SitesConfig.ready()` with `controlsite.reports`. `sites` knows nothing of
products: the scope names the sites (those linked to the product during the period).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from controlsite import reports
from controlsite.reports import ReportScope, ReportSection
from sites.choices import SiteAuditStatus, SiteStatus
from sites.models import Site, SiteAudit, SiteStatusChange

SECTION_NAME = "sites.status"
REASON_SHOWN = 300


def _label(value: str) -> str:
    try:
        return str(SiteStatus(value).label)
    except ValueError:
        return value


def _status_at(changes: list[SiteStatusChange], cutoff: dt.datetime) -> str:
    """A site's status at `cutoff`: where its last change before then left it."""
    before = [c for c in changes if c.changed_at < cutoff]
    return before[-1].to_status if before else SiteStatus.PROPOSED


def collect_site_status(scope: ReportScope) -> dict[str, Any]:
    """Each site's status at the end of the period and now, its status changes in the period
    (with the reasons) and the audits done there in the period."""
    cutoff = scope.cutoff
    sites = list(Site.objects.filter(pk__in=scope.site_ids).order_by("code"))
    changes_by_site: dict[int, list[SiteStatusChange]] = {}
    for change in SiteStatusChange.objects.filter(
        site_id__in=scope.site_ids, changed_at__lt=cutoff
    ).order_by("changed_at", "id"):
        changes_by_site.setdefault(change.site_id, []).append(change)
    codes = {site.pk: site.code for site in sites}
    in_period = [
        change
        for site_changes in changes_by_site.values()
        for change in site_changes
        if change.changed_at >= scope.start_at
    ]
    in_period.sort(key=lambda c: (c.changed_at, c.pk))
    audits = list(
        SiteAudit.objects.filter(
            site_id__in=scope.site_ids,
            status=SiteAuditStatus.DONE,
            done_on__gte=scope.start,
            done_on__lt=scope.end,
        ).order_by("done_on", "id")
    )
    rows = []
    for site in sites:
        site_changes = changes_by_site.get(site.pk, [])
        rows.append(
            {
                "code": site.code,
                "name": site.name,
                "status_at_end": _label(_status_at(site_changes, cutoff)),
                "status_now": _label(site.status),
                "changes": sum(1 for c in site_changes if c.changed_at >= scope.start_at),
                "audits": sum(1 for a in audits if a.site_id == site.pk),
                "reference": site.pk == scope.reference_site_id,
            }
        )
    return {
        "sites": rows,
        "changes": [
            {
                "code": codes.get(c.site_id, "?"),
                "at": c.changed_at.astimezone(dt.UTC).isoformat(timespec="seconds"),
                "on": c.changed_at.astimezone(dt.UTC).date().isoformat(),
                "from": _label(c.from_status),
                "to": _label(c.to_status),
                "action": c.action,
                "reason": " ".join(c.reason.split())[:REASON_SHOWN],
            }
            for c in in_period
        ],
        "audits": [
            {
                "code": codes.get(a.site_id, "?"),
                "title": a.title,
                "done_on": a.done_on.isoformat() if a.done_on else None,
                "lead_auditor": a.lead_auditor,
            }
            for a in audits
        ],
    }


SECTION = ReportSection(
    name=SECTION_NAME,
    title="Site status changes and audits",
    order=20,
    collect=collect_site_status,
    template="pdf/partials/report_site_status.html",
    description="Every status change of the product's sites in the period, with its reason, "
    "and the audits done there (SO-04, SO-10).",
)


def register_report_sections() -> None:
    """Called from `SitesConfig.ready()`."""
    reports.register(SECTION)
