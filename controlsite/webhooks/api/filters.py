"""Filters of the webhook API. Each narrows what the selectors already allow; a malformed value
is a 400, never silently ignored."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field

from controlsite.webhooks.choices import WebhookDeliveryStatus
from controlsite.webhooks.models import WebhookDelivery, WebhookSubscription
from controlsite.webhooks.registry import EVENT_TYPE_MAX

ID_PATTERN = r"^[0-9]{1,18}$"
ID_MAX = 10**18 - 1
YES_NO = [("true", "true"), ("false", "false")]


class IdField(forms.CharField):
    """A record id in a query string: digits only and within a 64-bit integer, so an overlong
    value is a 400 rather than an overflow in the database driver."""

    default_validators = [
        RegexValidator(ID_PATTERN, "A record id: 1 to 18 digits.", code="invalid_id")
    ]

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        return int(value) if value and value.isdigit() and len(value) <= 18 else value


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": ID_MAX})
class IdFilter(django_filters.Filter):
    field_class = IdField


class WebhookSubscriptionFilter(django_filters.FilterSet):
    # A choice rather than a BooleanFilter: a malformed value is a 400, never silently ignored.
    active = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_active",
        help_text="`true`: active subscriptions only; `false`: deactivated ones only.",
    )

    class Meta:
        model = WebhookSubscription
        fields: list[str] = []

    def filter_active(
        self, queryset: QuerySet[WebhookSubscription], name: str, value: Any
    ) -> QuerySet[WebhookSubscription]:
        return queryset.filter(active=value == "true")


class WebhookDeliveryFilter(django_filters.FilterSet):
    subscription = IdFilter(field_name="subscription_id", help_text="The subscription's id.")
    status = django_filters.ChoiceFilter(choices=WebhookDeliveryStatus.choices)
    event_type = django_filters.CharFilter(
        field_name="event__event_type", max_length=EVENT_TYPE_MAX, help_text="An event type."
    )
    event_id = django_filters.UUIDFilter(
        field_name="event__event_id", help_text="The event's `id`, as receivers are sent it."
    )

    class Meta:
        model = WebhookDelivery
        fields: list[str] = []
