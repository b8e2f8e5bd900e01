"""Webhook API: one read serializer per model, and a strict input serializer per write.

The secret appears in one place only: the answer to the POST that created the subscription.
`status` is read-only everywhere: a delivery moves only by being sent, or by `retry`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controlsite.api.base import StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.webhooks.choices import WebhookDeliveryStatus
from controlsite.webhooks.models import (
    URL_MAX,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from controlsite.webhooks.registry import EVENT_TYPE_MAX
from controlsite.webhooks.services import (
    EVENT_TYPES_MAX,
    NAME_MAX,
    REASON_MAX,
    SITE_CODES_MAX,
)

REASON_HELP = "Why: kept with the change in the audit trail."
URL_HELP = (
    "Where each event is POSTed: https, or http outside production (unless the server allows "
    "it). No user name or password in it; at most 500 characters."
)
EVENT_TYPES_HELP = (
    "The event types to send, e.g. `batches.batch_certified`; each must be one the apps "
    "registered (400 `unknown_event_type` lists them). An empty list sends nothing: there is no "
    "wildcard."
)
SITE_CODES_HELP = (
    "Send only the events about these sites (codes such as LON1). Empty or left out: events "
    "about every site, and events that concern no site."
)


class StrictCharField(serializers.CharField):
    """Text that must be a JSON string (for list items, which the strict mixin does not see)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


def _reason_field() -> serializers.CharField:
    return serializers.CharField(max_length=REASON_MAX, help_text=REASON_HELP)


#
# Subscriptions
#


class WebhookSubscriptionSerializer(serializers.ModelSerializer[WebhookSubscription]):
    event_types = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text=EVENT_TYPES_HELP
    )
    site_codes = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text=SITE_CODES_HELP
    )
    created_by = serializers.CharField(
        source="created_by.username",
        read_only=True,
        allow_null=True,
        help_text="Who created it (username).",
    )

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "name",
            "url",
            "event_types",
            "site_codes",
            "active",
            "created_at",
            "created_by",
            "updated_at",
            "deactivated_at",
        ]
        read_only_fields = fields


class WebhookSubscriptionCreatedSerializer(WebhookSubscriptionSerializer):
    """The answer to the POST that creates a subscription: the only one with the secret."""

    secret = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="Signs every delivery (HMAC-SHA256). Shown here once and never again: store "
        "it now. null when the answer is an `Idempotency-Key` replay.",
    )

    class Meta(WebhookSubscriptionSerializer.Meta):
        fields = [*WebhookSubscriptionSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookSubscriptionCreateSerializer(StrictSerializer):
    """A new subscription: a receiver, the event types it is sent and, optionally, its sites."""

    name = serializers.CharField(max_length=NAME_MAX)
    url = serializers.CharField(max_length=URL_MAX, help_text=URL_HELP)
    event_types = serializers.ListField(
        child=StrictCharField(max_length=EVENT_TYPE_MAX),
        max_length=EVENT_TYPES_MAX,
        help_text=EVENT_TYPES_HELP,
    )
    site_codes = serializers.ListField(
        child=StrictCharField(max_length=8),
        max_length=SITE_CODES_MAX,
        required=False,
        help_text=SITE_CODES_HELP,
    )
    reason = _reason_field()


class WebhookSubscriptionUpdateSerializer(StrictSerializer):
    """The fields to change (only those sent change) and why."""

    name = serializers.CharField(max_length=NAME_MAX, required=False)
    url = serializers.CharField(max_length=URL_MAX, required=False, help_text=URL_HELP)
    event_types = serializers.ListField(
        child=StrictCharField(max_length=EVENT_TYPE_MAX),
        max_length=EVENT_TYPES_MAX,
        required=False,
        help_text=EVENT_TYPES_HELP,
    )
    site_codes = serializers.ListField(
        child=StrictCharField(max_length=8),
        max_length=SITE_CODES_MAX,
        required=False,
        help_text=SITE_CODES_HELP,
    )
    reason = _reason_field()


class WebhookReasonSerializer(StrictSerializer):
    """A step that needs only a reason."""

    reason = _reason_field()


#
# Events, deliveries and their attempts
#


class WebhookEventSerializer(serializers.ModelSerializer[WebhookEvent]):
    id = serializers.UUIDField(
        source="event_id", read_only=True, help_text="The `id` receivers are sent."
    )
    type = serializers.CharField(source="event_type", read_only=True)

    class Meta:
        model = WebhookEvent
        fields = ["id", "type", "site_code", "created_at"]
        read_only_fields = fields


class WebhookEventDetailSerializer(WebhookEventSerializer):
    # A field named like Serializer.data, as the body receivers get names it; DRF's metaclass
    # takes declared fields off the class, so the property is untouched.
    data = serializers.DictField(  # type: ignore[assignment]
        source="payload", read_only=True, help_text="The `data` receivers are sent."
    )

    class Meta(WebhookEventSerializer.Meta):
        fields = [*WebhookEventSerializer.Meta.fields, "data"]
        read_only_fields = fields


class WebhookAttemptSerializer(serializers.ModelSerializer[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "attempted_at",
            "status_code",
            "error",
            "duration_ms",
            "response_excerpt",
        ]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    status = NamedChoiceField(WebhookDeliveryStatus, read_only=True)
    subscription = serializers.IntegerField(
        source="subscription_id", read_only=True, help_text="The subscription's id."
    )
    subscription_name = serializers.CharField(source="subscription.name", read_only=True)
    event = WebhookEventSerializer(read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "subscription",
            "subscription_name",
            "event",
            "status",
            "attempts",
            "next_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    event = WebhookEventDetailSerializer(read_only=True)
    attempt_log = WebhookAttemptSerializer(
        many=True, read_only=True, help_text="Every attempt, oldest first."
    )

    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "attempt_log"]
        read_only_fields = fields
