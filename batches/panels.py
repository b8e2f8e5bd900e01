"""The batches app's panel on the home dashboard: batches in progress and awaiting
certification, decisions of the last week, and the soonest to expire (issue 5 §6). Hidden from
users who see no recent batch.

Its work is bounded by what is open or recent, never by the whole table (design §8): open
statuses are read through the (status, expiry) index, decisions through the creation-time index.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count
from django.http import HttpRequest
from django.utils import timezone

from batches.choices import BATCH_BADGE, DECIDED_STATUSES, BatchStatus
from batches.selectors import QueueFilters, batches_visible_to, qp_queue
from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability

AWAITING_SHOWN = 5
RECENT_DAYS = 7
OPEN_STATUSES = (BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED)


def batches_panel(request: HttpRequest) -> dict[str, Any] | None:
    user = request.user
    if not user.is_authenticated:
        return None
    visible = batches_visible_to(user).order_by()
    recent = timezone.now() - dt.timedelta(days=RECENT_DAYS)
    counts = {
        row["status"]: row["n"]
        for part in (
            visible.filter(status__in=OPEN_STATUSES),
            visible.filter(created_at__gte=recent, status__in=list(DECIDED_STATUSES)),
        )
        for row in part.values("status").annotate(n=Count("pk"))
    }
    total = sum(counts.values())
    if not total:
        return None
    statuses = [
        {
            "value": status.value,
            "label": status.label,
            "count": counts.get(status, 0),
            "badge": BATCH_BADGE[status],
            "pct": round(100 * counts.get(status, 0) / total),
        }
        for status in BatchStatus
    ]
    return {
        "total": total,
        "statuses": statuses,
        "awaiting": counts.get(BatchStatus.COMPLETED, 0),
        "recent_days": RECENT_DAYS,
        "soonest": list(qp_queue(user=user, filters=QueueFilters())[:AWAITING_SHOWN]),
        "is_qp": permissions.user_can(user, Capability.CERTIFY_BATCH),
    }
