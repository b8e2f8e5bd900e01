"""The kernel's models, gathered so Django finds them under the `controlsite` app."""

from controlsite.accounts.models import RoleGrant, User
from controlsite.api.models import ApiToken, IdempotencyRecord
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.background.models import WorkerHeartbeat
from controlsite.base_models import TimeStampedModel
from controlsite.notifications.models import Notification
from controlsite.signatures.models import ElectronicSignature
from controlsite.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)

__all__ = [
    "ApiToken",
    "AuditEvent",
    "AuditReview",
    "ElectronicSignature",
    "IdempotencyRecord",
    "Notification",
    "RoleGrant",
    "TimeStampedModel",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
    "WorkerHeartbeat",
]
