"""Kernel API resources: the audit trail and its reviews."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.api.auth import request_token
from controlsite.api.base import BaseViewSet, ReadOnlyBaseViewSet
from controlsite.api.filters import AwareDateTimeFilter
from controlsite.api.serializers import (
    AuditEventSerializer,
    AuditReviewCreateSerializer,
    AuditReviewSerializer,
    MeSerializer,
)
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.audit.review import audit_review_sign
from controlsite.audit.selectors import audit_events_visible_to


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_username", lookup_expr="iexact")
    record_type = django_filters.CharFilter(field_name="target_type")
    record_id = django_filters.CharFilter(field_name="target_id")
    event_type = django_filters.CharFilter()
    site_code = django_filters.CharFilter()
    occurred_after = AwareDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = AwareDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


class AuditEventViewSet(ReadOnlyBaseViewSet):
    """The append-only audit trail (AT-01…AT-08). Read-only; QA, QPs and inspectors."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    required_capability = Capability.VIEW_AUDIT_TRAIL
    lookup_field = "seq"
    lookup_value_regex = r"[0-9]{1,18}"
    ordering = "-seq"

    def get_queryset(self) -> QuerySet[AuditEvent]:
        return audit_events_visible_to(self.request.user)


class AuditReviewViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Signed reviews of the audit trail (AT-06)."""

    serializer_class = AuditReviewSerializer
    required_capability = Capability.VIEW_AUDIT_TRAIL
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet[AuditReview]:
        return AuditReview.objects.all()

    @extend_schema(
        request=AuditReviewCreateSerializer,
        responses={201: AuditReviewSerializer},
        description="Review every event since the last review and sign it with the meaning "
        "`reviewed`. The hash chain over the range is verified and recorded.",
    )
    def create(self, request: Request) -> Response:
        data = AuditReviewCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review = audit_review_sign(
            reviewer=request.user,  # type: ignore[arg-type]
            credentials=data.credentials(),
            comment=data.validated_data.get("comment", ""),
            reason=data.validated_data["reason"],
        )
        return Response(AuditReviewSerializer(review).data, status=status.HTTP_201_CREATED)


class MeViewSet(BaseViewSet):
    """Who am I? The first call an integrator makes with a new token."""

    serializer_class = MeSerializer
    pagination_class = None
    single_object = True
    queryset = User.objects.none()  # nothing is listed; the schema generator wants a model

    @extend_schema(responses={200: MeSerializer})
    def list(self, request: Request) -> Response:
        user = request.user
        token = request_token(request)
        body = {
            "username": user.get_username(),
            "printed_name": getattr(user, "printed_name", ""),
            "roles": sorted(r.value for r in permissions.user_roles(user)),
            "capabilities": sorted(c.value for c in permissions.user_capabilities(user)),
            "mfa_required": permissions.mfa_required(user),
            "token": None
            if token is None
            else {
                "name": token.name,
                "prefix": token.prefix,
                "scope": token.scope,
                "site_codes": token.site_codes,
                "expires_at": token.expires_at,
            },
        }
        return Response(MeSerializer(body).data)
