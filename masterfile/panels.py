"""The master-file app's panel on the home dashboard: versions by status, what is in review and
what is due for its periodic review (MF-12). Hidden from users who see no product."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from masterfile.choices import REVIEW_REMINDER_DAYS, VERSION_BADGE, VersionStatus
from masterfile.selectors import products_visible_to, version_status_counts, versions_visible_to

WAITING_SHOWN = 5


def master_files_panel(request: HttpRequest) -> dict[str, Any] | None:
    user = request.user
    if not user.is_authenticated:
        return None
    products = products_visible_to(user).count()
    if not products:
        return None
    counts = version_status_counts(user=user)
    total = sum(counts.values())
    statuses = [
        {
            "value": status.value,
            "label": status.label,
            "count": counts.get(status, 0),
            "badge": VERSION_BADGE[status],
            "pct": round(100 * counts.get(status, 0) / total) if total else 0,
        }
        for status in VersionStatus
    ]
    horizon = timezone.localdate() + dt.timedelta(days=REVIEW_REMINDER_DAYS)
    due_q = Q(status=VersionStatus.EFFECTIVE, next_review_date__lte=horizon)
    visible = versions_visible_to(user)
    waiting = list(
        visible.filter(due_q | Q(status=VersionStatus.IN_REVIEW)).order_by(
            "next_review_date", "master_file__product__code"
        )[:WAITING_SHOWN]
    )
    return {
        "products": products,
        "total": total,
        "statuses": statuses,
        "in_review": counts.get(VersionStatus.IN_REVIEW, 0),
        "due": visible.filter(due_q).count(),
        "waiting": waiting,
    }
