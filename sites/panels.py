"""The sites app's panel on the home dashboard."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from sites.choices import STATUS_BADGE, SiteStatus
from sites.selectors import (
    regulatory_notifications_visible_to,
    site_status_counts,
    sites_visible_to,
)


def sites_panel(request: HttpRequest) -> dict[str, Any] | None:
    user = request.user
    if not user.is_authenticated:
        return None
    counts = site_status_counts(user=user)
    total = sum(counts.values())
    statuses = [
        {
            "value": status.value,
            "label": status.label,
            "count": counts.get(status, 0),
            "badge": STATUS_BADGE[status],
            "pct": round(100 * counts.get(status, 0) / total) if total else 0,
        }
        for status in SiteStatus
    ]
    context: dict[str, Any] = {"statuses": statuses, "total": total}
    if permissions.user_can(user, Capability.VIEW_ALL_SITES):
        pending = regulatory_notifications_visible_to(user).filter(sent_on__isnull=True)
        today = timezone.localdate()
        context["mhra_due"] = pending.count()
        context["mhra_overdue"] = pending.filter(due_on__lt=today).count()
    else:
        context["my_sites"] = list(sites_visible_to(user).order_by("code")[:10])
    if not total and "mhra_due" not in context and not context.get("my_sites"):
        context["empty"] = True
    return context
