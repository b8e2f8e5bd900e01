"""The header's notice bell: how many unread notices the signed-in person has (one query)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from controlsite.notifications.models import Notification


def unread_notifications(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Uses the partial index on unread notices (notification_unread_idx).
    count = Notification.objects.filter(recipient=user, read_at__isnull=True).count()
    return {"unread_notifications": count}
