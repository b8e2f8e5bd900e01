"""Who sees webhook subscriptions and deliveries: whoever may manage them, and no one else."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from controlsite.accounts import permissions
from controlsite.accounts.roles import Capability
from controlsite.webhooks.models import WebhookDelivery, WebhookSubscription


def webhook_subscriptions_visible_to(user: Any) -> QuerySet[WebhookSubscription]:
    """Every subscription for Control Site QA and the administrator; none for anyone else.
    Subscriptions span sites, so there is no per-site view of them."""
    if not permissions.user_can(user, Capability.MANAGE_WEBHOOKS):
        return WebhookSubscription.objects.none()
    return WebhookSubscription.objects.all()


def webhook_deliveries_visible_to(user: Any) -> QuerySet[WebhookDelivery]:
    """The deliveries of the subscriptions `user` sees."""
    if not permissions.user_can(user, Capability.MANAGE_WEBHOOKS):
        return WebhookDelivery.objects.none()
    return WebhookDelivery.objects.all()
