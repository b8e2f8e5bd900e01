"""Outbound webhooks (design §6): who is told, what happened, and every attempt to tell them.

These are outbox and job rows, not GMP records. The change a webhook reports is audited by the app
that made it; creating, changing and deactivating a subscription, and retrying a delivery, are
audit events (`controlsite.webhooks.services`).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlsite.base_models import TimeStampedModel
from controlsite.webhooks.choices import WebhookDeliveryStatus

URL_MAX = 500
ERROR_MAX = 500
# Bytes of a receiver's answer kept in the delivery log.
RESPONSE_EXCERPT_MAX = 1024


class WebhookSubscription(TimeStampedModel):
    """A receiver outside the QMS (an ERP, a hospital system, a message bridge) that is sent a
    signed JSON POST for each event of the types it names, optionally only for some sites.

    The secret signs every delivery (HMAC-SHA256); it is generated here, shown once when the
    subscription is created and never again. A subscription is deactivated, never deleted, so its
    deliveries keep their log.
    """

    name = models.CharField(_("name"), max_length=100)
    url = models.CharField(
        _("target URL"),
        max_length=URL_MAX,
        help_text=_("Where each event is POSTed: https (http only outside production)."),
    )
    secret = models.CharField(
        _("signing secret"),
        max_length=100,
        help_text=_("Signs every delivery; shown once, when the subscription is created."),
    )
    event_types = models.JSONField(
        _("event types"),
        default=list,
        blank=True,
        help_text=_("The event types sent to this receiver. Empty: none (there is no wildcard)."),
    )
    site_codes = models.JSONField(
        _("limited to sites"),
        default=list,
        blank=True,
        help_text=_(
            "Only events about these sites. Empty: events about every site, and events that "
            "concern no site."
        ),
    )
    active = models.BooleanField(_("active"), default=True)
    deactivated_at = models.DateTimeField(_("deactivated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("webhook subscription")
        verbose_name_plural = _("webhook subscriptions")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(active=True, deactivated_at__isnull=True)
                | Q(active=False, deactivated_at__isnull=False),
                name="webhooksubscription_deactivated_at_iff_inactive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.url}"

    def signature_content(self) -> dict[str, Any]:
        """The content the API's `ETag` is computed from: everything but the secret."""
        return {
            "name": self.name,
            "url": self.url,
            "event_types": self.event_types,
            "site_codes": self.site_codes,
            "active": self.active,
            "deactivated_at": self.deactivated_at,
        }


class WebhookEvent(models.Model):
    """One thing that happened, as sent to subscribers: the outbox row an app writes inside the
    transaction of the change it reports (`webhook_emit`). `event_id` goes to every receiver,
    so a receiver that is sent an event twice can tell."""

    event_id = models.UUIDField(_("event id"), default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(_("event type"), max_length=100)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    site_code = models.CharField(
        _("site code"),
        max_length=8,
        blank=True,
        help_text=_("The site the event concerns; blank if it concerns no one site."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-id"]
        indexes = [models.Index(fields=["event_type", "-id"], name="webhookevent_type_idx")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class WebhookDelivery(models.Model):
    """Sending one event to one subscriber: pending until the receiver answers 2xx (delivered)
    or the last attempt fails (failed). While pending, `next_attempt_at` says when it is due;
    during an attempt it is pushed past the attempt's time-out, so a worker that dies mid-way
    leaves the delivery due again rather than lost."""

    subscription = models.ForeignKey(
        WebhookSubscription,
        verbose_name=_("subscription"),
        on_delete=models.PROTECT,
        related_name="deliveries",
        # The one-per-subscriber constraint and webhookdelivery_sub_idx both lead with it.
        db_index=False,
    )
    event = models.ForeignKey(
        WebhookEvent, verbose_name=_("event"), on_delete=models.PROTECT, related_name="deliveries"
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=WebhookDeliveryStatus.choices,
        default=WebhookDeliveryStatus.PENDING,
    )
    attempts = models.PositiveSmallIntegerField(
        _("attempts"),
        default=0,
        help_text=_("Attempts made since the delivery was queued (or last retried by a person)."),
    )
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(
        _("last HTTP status"), null=True, blank=True
    )
    last_error = models.CharField(_("last error"), max_length=ERROR_MAX, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "event"], name="webhookdelivery_one_per_subscriber"
            ),
            models.CheckConstraint(
                condition=Q(status__in=WebhookDeliveryStatus.values),
                name="webhookdelivery_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=WebhookDeliveryStatus.PENDING)
                | Q(next_attempt_at__isnull=False),
                name="webhookdelivery_pending_is_scheduled",
            ),
            models.CheckConstraint(
                condition=~Q(status=WebhookDeliveryStatus.DELIVERED)
                | Q(delivered_at__isnull=False),
                name="webhookdelivery_delivered_has_time",
            ),
        ]
        indexes = [
            # The work queue the beat sweep reads every minute (healthchecks `Flip` index).
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=Q(status=WebhookDeliveryStatus.PENDING),
                name="webhookdelivery_due_idx",
            ),
            models.Index(fields=["subscription", "-id"], name="webhookdelivery_sub_idx"),
            models.Index(fields=["status", "-id"], name="webhookdelivery_status_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, as the log shows it: when, the answer's status (none if
    the receiver could not be reached), the error, how long it took and the start of the
    answer's body."""

    delivery = models.ForeignKey(
        WebhookDelivery,
        verbose_name=_("delivery"),
        on_delete=models.PROTECT,
        related_name="attempt_log",
    )
    number = models.PositiveSmallIntegerField(
        _("attempt number"), help_text=_("1 for the first attempt; a retry starts again at 1.")
    )
    attempted_at = models.DateTimeField(_("attempted at"))
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=ERROR_MAX, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    response_excerpt = models.TextField(
        _("response excerpt"), blank=True, help_text=_("The first 1 KB of the receiver's answer.")
    )

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["id"]
        indexes = [models.Index(fields=["delivery", "id"], name="webhookattempt_delivery_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
