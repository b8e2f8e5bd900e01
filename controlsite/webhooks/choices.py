"""The lifecycle of a webhook delivery, as data (style "Status fields")."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class WebhookDeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")


# Pending is retried until it is delivered or the last attempt fails; only a person sends a failed
# delivery back to pending (`webhook_delivery_retry`).
ALLOWED_TRANSITIONS: dict[WebhookDeliveryStatus, frozenset[WebhookDeliveryStatus]] = {
    WebhookDeliveryStatus.PENDING: frozenset(
        {WebhookDeliveryStatus.DELIVERED, WebhookDeliveryStatus.FAILED}
    ),
    WebhookDeliveryStatus.DELIVERED: frozenset(),
    WebhookDeliveryStatus.FAILED: frozenset({WebhookDeliveryStatus.PENDING}),
}
TERMINAL = frozenset({WebhookDeliveryStatus.DELIVERED, WebhookDeliveryStatus.FAILED})
