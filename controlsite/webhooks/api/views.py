"""Webhook API: subscriptions (create, read, change, deactivate) and their deliveries (read with
the attempt log, retry). Control Site QA and the system administrator only (design §6).

Every write is one `controlsite.webhooks.services` call, which checks the role (403), the state
(409) and the input (400); views only parse input and shape output. A write parses its body
before it fetches the record, so a malformed body is a 400 whatever `If-Match` says.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from controlsite.accounts.models import User
from controlsite.api import idempotency
from controlsite.api.base import BaseViewSet, split_reason, validated_input
from controlsite.webhooks import selectors, services
from controlsite.webhooks.api.filters import WebhookDeliveryFilter, WebhookSubscriptionFilter
from controlsite.webhooks.api.permissions import WebhookApiPermission
from controlsite.webhooks.api.serializers import (
    WebhookDeliveryDetailSerializer,
    WebhookDeliverySerializer,
    WebhookReasonSerializer,
    WebhookSubscriptionCreatedSerializer,
    WebhookSubscriptionCreateSerializer,
    WebhookSubscriptionSerializer,
    WebhookSubscriptionUpdateSerializer,
)
from controlsite.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

ID_REGEX = r"[0-9]{1,18}"

_WHO = " Control Site QA and the system administrator only (403 otherwise)."
_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


def _reason_example(reason: str) -> OpenApiExample:
    return OpenApiExample("With a reason", value={"reason": reason}, request_only=True)


#
# Subscriptions
#


class WebhookSubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Receivers outside the QMS that are sent signed JSON for the event types they name.
    Subscriptions are deactivated, never deleted. Newest first."""

    permission_classes = [WebhookApiPermission]
    serializer_class = WebhookSubscriptionSerializer
    filterset_class = WebhookSubscriptionFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[WebhookSubscription]:
        return selectors.webhook_subscriptions_visible_to(self.request.user).select_related(
            "created_by"
        )

    def _fresh(self, subscription: WebhookSubscription) -> dict[str, Any]:
        fresh = WebhookSubscription.objects.select_related("created_by").get(pk=subscription.pk)
        return dict(WebhookSubscriptionSerializer(fresh).data)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # The secret is shown once: the answer kept for an `Idempotency-Key` replay leaves it out,
        # so it is never stored outside the subscription or shown a second time.
        record = self._idempotency
        data = getattr(response, "data", None)
        if record is None or not isinstance(data, dict) or data.get("secret") is None:
            return super().finalize_response(request, response, *args, **kwargs)
        self._idempotency = None
        response = super().finalize_response(request, response, *args, **kwargs)
        idempotency.settle(record, Response({**data, "secret": None}, status=response.status_code))
        return response

    @extend_schema(
        summary="List webhook subscriptions",
        description="Every subscription, newest first; `active` filters." + _WHO,
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one webhook subscription",
        description="Never shows the secret. The `ETag` header goes into `If-Match` on your "
        "next write to it." + _WHO,
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Subscribe a receiver",
        description="Each event of the named types (only of the named sites, if any are given) "
        "is POSTed to `url` as signed JSON; see the README's Webhooks section for the body, the "
        "headers and how to verify `X-ControlSite-Signature`. The answer carries the signing "
        "`secret`, shown this once and never again. 400 `unknown_event_type` (the known types "
        "are in `extra.known`), `url_scheme`, `url_https_required`, `url_credentials`, "
        "`invalid_url` or `invalid_site_code` for input the rules refuse." + _WHO + _REASON_NOTE,
        request=WebhookSubscriptionCreateSerializer,
        responses={201: WebhookSubscriptionCreatedSerializer},
        examples=[
            OpenApiExample(
                "Certified batches of two sites",
                value={
                    "name": "ERP release feed",
                    "url": "https://erp.example.org/hooks/qms",
                    "event_types": ["batches.batch_certified"],
                    "site_codes": ["LON1", "MAN2"],
                    "reason": "Change control CC-2026-014: ERP receives releases.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(WebhookSubscriptionCreateSerializer, request))
        subscription = services.webhook_subscription_create(
            actor=_actor(request), reason=reason, **fields
        )
        fresh = WebhookSubscription.objects.select_related("created_by").get(pk=subscription.pk)
        return Response(
            WebhookSubscriptionCreatedSerializer(fresh).data,
            status=status.HTTP_201_CREATED,
            headers={
                "Location": reverse("api:webhook-subscription-detail", args=[subscription.pk])
            },
        )

    @extend_schema(
        summary="Change a webhook subscription",
        description="Only the fields you send change. Deliveries already queued go to the new "
        "`url`; `event_types` and `site_codes` decide which later events are sent. 409 "
        "`subscription_inactive` once deactivated." + _WHO + _REASON_NOTE,
        request=WebhookSubscriptionUpdateSerializer,
        responses={200: WebhookSubscriptionSerializer},
        examples=[
            OpenApiExample(
                "Another event type",
                value={
                    "event_types": ["batches.batch_certified", "batches.batch_rejected"],
                    "reason": "The ERP also books rejected batches out.",
                },
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        changes, reason = split_reason(
            validated_input(WebhookSubscriptionUpdateSerializer, request)
        )
        subscription = self.get_object()
        updated = services.webhook_subscription_update(
            actor=_actor(request), subscription=subscription, reason=reason, changes=changes
        )
        return Response(self._fresh(updated))

    @extend_schema(
        summary="Deactivate a webhook subscription",
        description="Nothing more is sent to it, for good; its pending deliveries are failed "
        "(`Not sent: the subscription was deactivated.`). 409 `subscription_inactive` if it "
        "already is." + _WHO + _REASON_NOTE,
        request=WebhookReasonSerializer,
        responses={200: WebhookSubscriptionSerializer},
        examples=[_reason_example("The ERP interface was retired (CC-2026-031).")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def deactivate(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(WebhookReasonSerializer, request).validated_data["reason"]
        subscription = self.get_object()
        deactivated = services.webhook_subscription_deactivate(
            actor=_actor(request), subscription=subscription, reason=reason
        )
        return Response(self._fresh(deactivated))


#
# Deliveries
#


_ATTEMPT_LOG = Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("id"))


class WebhookDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """One event sent to one subscription: `pending → delivered | failed`, with every attempt.
    Newest first."""

    permission_classes = [WebhookApiPermission]
    serializer_class = WebhookDeliverySerializer
    filterset_class = WebhookDeliveryFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        qs = selectors.webhook_deliveries_visible_to(self.request.user).select_related(
            "subscription", "event"
        )
        if self.action != "list":
            qs = qs.prefetch_related(_ATTEMPT_LOG)
        return qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "list":
            return WebhookDeliverySerializer
        return WebhookDeliveryDetailSerializer

    def _fresh(self, delivery: WebhookDelivery) -> dict[str, Any]:
        fresh = (
            WebhookDelivery.objects.select_related("subscription", "event")
            .prefetch_related(_ATTEMPT_LOG)
            .get(pk=delivery.pk)
        )
        return dict(WebhookDeliveryDetailSerializer(fresh).data)

    @extend_schema(
        summary="List webhook deliveries",
        description="Newest first; filter by `subscription`, `status`, `event_type` or "
        "`event_id`. A pending delivery's `next_attempt_at` says when it is next tried." + _WHO,
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one webhook delivery with its attempts",
        description="The event as it is sent (`event.data`) and `attempt_log`: each attempt's "
        "time, HTTP status (null if the receiver was not reached), error, duration and the "
        "first 1 KB of the answer." + _WHO,
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Retry a failed delivery",
        description="A failed delivery goes back to pending with a fresh set of attempts and "
        "is sent at once; the log keeps the earlier attempts. 409 `delivery_not_failed` "
        "unless it failed, 409 `subscription_inactive` if its subscription was deactivated. "
        "202 with the delivery." + _WHO + _REASON_NOTE,
        request=WebhookReasonSerializer,
        responses={202: WebhookDeliveryDetailSerializer},
        examples=[_reason_example("The ERP was down for maintenance; it is back.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def retry(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(WebhookReasonSerializer, request).validated_data["reason"]
        delivery = self.get_object()
        retried = services.webhook_delivery_retry(
            actor=_actor(request), delivery=delivery, reason=reason
        )
        return Response(self._fresh(retried), status=status.HTTP_202_ACCEPTED)
