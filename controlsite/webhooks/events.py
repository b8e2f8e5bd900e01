"""The webhook subscriptions' audit event types, with the labels people read."""

from __future__ import annotations

from enum import StrEnum

from controlsite.audit.events import register_event_labels


class WebhookAuditEvent(StrEnum):
    SUBSCRIPTION_CREATED = "webhooks.subscription_created"
    SUBSCRIPTION_UPDATED = "webhooks.subscription_updated"
    SUBSCRIPTION_DEACTIVATED = "webhooks.subscription_deactivated"
    DELIVERY_RETRIED = "webhooks.delivery_retried"


LABELS: dict[str, str] = {
    WebhookAuditEvent.SUBSCRIPTION_CREATED: "Webhook subscription created",
    WebhookAuditEvent.SUBSCRIPTION_UPDATED: "Webhook subscription changed",
    WebhookAuditEvent.SUBSCRIPTION_DEACTIVATED: "Webhook subscription deactivated",
    WebhookAuditEvent.DELIVERY_RETRIED: "Webhook delivery retried",
}

# Registered on import: the services import this module and the API imports the services with the
# URL configuration, so the labels are in place before any page renders.
register_event_labels(LABELS)
