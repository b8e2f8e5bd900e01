"""Complaints API: quality complaints and suspected adverse reactions by number, with QA's
assessment, the report to the MHRA, CAPA from a complaint and the signed closure as POST
actions (issue 6 §5; design §6; DV-11, RP-05, RP-06).

Every queryset comes from `deviations.selectors.complaints.complaints_visible_to`, so a
complaint you may not see is a 404, never a 403. Every write is one service call, which checks
the role (403), the state (409), the dates and text (400) and the signature (422); a write
parses its body before it fetches the record. `Idempotency-Key` on any POST makes a retry
replay the first answer.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from controlsite.api.base import BaseViewSet, split_reason, validated_input
from deviations import services
from deviations.api.filters.complaints import ComplaintFilter
from deviations.api.serializers import CapaSerializer
from deviations.api.serializers.complaints import (
    COMPLAINT_NUMBER_PATTERN,
    ComplaintAssessSerializer,
    ComplaintCapaSerializer,
    ComplaintCloseSerializer,
    ComplaintDetailSerializer,
    ComplaintRecordSerializer,
    ComplaintReportedSerializer,
    ComplaintSerializer,
)
from deviations.api.views import (
    _IDEMPOTENT,
    _REASON_NOTE,
    _SIGNED_NOTE,
    _actor,
    _capa_detail,
    _regex,
    _signed_example,
)
from deviations.models import Capa, Complaint
from deviations.selectors.complaints import complaints_visible_to
from deviations.services import complaints as complaint_services

_NOT_VISIBLE = (
    " A complaint you may not see — another site's, or any under a token limited to other "
    "sites — is 404 and nothing is written."
)
_OPEN_NOTE = " A closed complaint no longer changes (409 `complaint_not_open`)."
_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."

_COMPLAINT_RELATED = ("site", "batch", "product", "reported_by", "created_by")


def _capa_numbers() -> Prefetch[str, QuerySet[Capa], str]:
    return Prefetch("capas", queryset=Capa.objects.only("pk", "number", "complaint_id"))


def _complaint_detail(complaint: Complaint) -> dict[str, Any]:
    """The complaint as it stands after a write, read afresh."""
    fresh = (
        Complaint.objects.select_related(*_COMPLAINT_RELATED)
        .prefetch_related(_capa_numbers())
        .get(pk=complaint.pk)
    )
    return dict(ComplaintDetailSerializer(fresh, context={"today": timezone.localdate()}).data)


class ComplaintViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Quality complaints and suspected adverse reactions at the sites you can see, named by
    their number `CMP-<year>-<NNNN>`, each tied to its site and, where known, its batch
    (RP-06). Recorded by site staff, integrators, QA or a QP; assessed and closed (signed) by
    Control Site QA; reported to the MHRA by QA or a QP. A serious suspected adverse reaction
    carries the 15-day reporting clock (RP-05). Newest first."""

    serializer_class = ComplaintSerializer
    filterset_class = ComplaintFilter
    lookup_field = "number"
    lookup_value_regex = _regex(COMPLAINT_NUMBER_PATTERN)
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Complaint]:
        visible = complaints_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            return visible.select_related(*_COMPLAINT_RELATED).prefetch_related(_capa_numbers())
        # Every write's service locks the row and reads it afresh.
        return visible.select_related("site")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return ComplaintDetailSerializer if self.action == "retrieve" else ComplaintSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        summary="List the complaints you can see",
        description="Control Site QA, QPs and inspectors see every site's complaints; site "
        "staff and integrators those of their sites (a site-limited token narrows them). "
        "Filter by `kind`, `serious`, `status`, `site`, `batch`, `product` or `overdue=true` "
        "(serious suspected adverse reactions past their report date, not reported). Each "
        "carries its reporting clock: `report_due_on`, `days_left`, `overdue`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one complaint",
        description="By number: site, batch and product, who told us and when it was first "
        "known, seriousness and the reporting clock, the report to the MHRA (who, when, "
        "reference), QA's assessment, its CAPAs and the closure signature. The `ETag` header "
        "goes into `If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Record a complaint or a suspected adverse reaction",
        description="At a site you work at, on one of its batches (`batch`; the product is "
        "taken from it) or, when no batch is known, on a `product`. `aware_on` is the day it "
        "was first known: not in the future (400 `date_in_future`), not before the batch was "
        "started nor more than five years ago (400 `date_out_of_range`). A serious suspected "
        "adverse reaction (`kind` = `adverse_reaction`, `serious` = true) gets its report "
        "date, 15 days after `aware_on` (RP-05). QA is told at once, and the QPs for a "
        "serious adverse reaction. A site, batch or product you cannot see is 400 "
        "`unknown_site` / `unknown_batch` / `unknown_product`; a batch of another site is "
        "400 `batch_not_at_site`; a product that is not the batch's is 400 "
        "`product_mismatch`; neither batch nor product is 400 `product_required`. Site "
        "staff, integrators at the site, Control Site QA and QPs (403 `permission_denied` "
        "otherwise)." + _REASON_NOTE + _IDEMPOTENT,
        request=ComplaintRecordSerializer,
        responses={201: ComplaintDetailSerializer},
        examples=[
            OpenApiExample(
                "A serious suspected adverse reaction",
                value={
                    "site": "LDS1",
                    "kind": "adverse_reaction",
                    "batch": "LDS1-261122-001",
                    "description": "Grade 3 cytokine release syndrome 2 days after infusion.",
                    "reporter": "Dr A. Khan, haematology ward 4",
                    "aware_on": "2026-11-24",
                    "serious": True,
                    "reason": "Reported by the treating team.",
                },
                request_only=True,
            ),
            OpenApiExample(
                "A quality complaint on a product",
                value={
                    "site": "MAN2",
                    "kind": "quality",
                    "product": "CART-01",
                    "description": "Infusion bag label partly illegible.",
                    "reporter": "Pharmacy, St Mary's",
                    "aware_on": "2026-11-20",
                    "serious": False,
                    "reason": "Complaint received by phone.",
                },
                request_only=True,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(ComplaintRecordSerializer, request))
        complaint = complaint_services.complaint_record(
            actor=_actor(request), reason=reason, **fields
        )
        return Response(
            _complaint_detail(complaint),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:complaint-detail", args=[complaint.number])},
        )

    @extend_schema(
        summary="Write QA's assessment (and judge seriousness)",
        description="Control Site QA writes the risk assessment and investigation (DV-11). "
        "Sending `serious` changes the seriousness: an adverse reaction judged serious gets "
        "its 15-day clock from `aware_on` (RP-05) and the QPs are told; judged not serious, "
        "the clock goes. The change is kept in the audit trail with old and new values."
        + _OPEN_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=ComplaintAssessSerializer,
        responses={200: ComplaintDetailSerializer},
        examples=[
            OpenApiExample(
                "Judged serious",
                value={
                    "assessment": "Hospitalised for CRS; causality possible. Batch record "
                    "reviewed: no deviation. Serious suspected ADR.",
                    "serious": True,
                    "reason": "Seriousness criteria met (hospitalisation).",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def assess(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(ComplaintAssessSerializer, request))
        complaint = self.get_object()
        complaint_services.complaint_assess(
            actor=_actor(request),
            complaint=complaint,
            assessment=fields["assessment"],
            serious=fields.get("serious"),
            reason=reason,
        )
        return Response(_complaint_detail(complaint))

    @extend_schema(
        summary="Record the report to the MHRA",
        description="Control Site QA or a QP (403 `permission_denied` otherwise) records the "
        "day it was reported — not in the future (400 `date_in_future`), not before "
        "`aware_on` (400 `report_before_awareness`) — and the MHRA's `reference` (400 "
        "`invalid` when blank). You are recorded as the reporter. Once only (409 "
        "`already_reported`). The answer says whether it was on time (`report_on_time`)."
        + _OPEN_NOTE
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=ComplaintReportedSerializer,
        responses={200: ComplaintDetailSerializer},
        examples=[
            OpenApiExample(
                "Yellow Card sent",
                value={
                    "reported_on": "2026-12-01",
                    "reference": "YC-2026-118734",
                    "reason": "Serious ADR reported by Yellow Card.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def reported(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(ComplaintReportedSerializer, request))
        complaint = self.get_object()
        complaint_services.complaint_mark_reported(
            actor=_actor(request),
            complaint=complaint,
            reported_on=fields["reported_on"],
            reference=fields["reference"],
            reason=reason,
        )
        return Response(_complaint_detail(complaint))

    @extend_schema(
        summary="Raise a CAPA from the complaint",
        description="With an active `owner` (username; 400 `unknown_user`, "
        "`owner_not_eligible`), a `due_on` and an `effectiveness_due_on` on or after it (400 "
        "`invalid`), neither in the past (400 `date_in_past`), and optionally its first "
        "actions. The owner is told. Its open CAPAs keep the complaint from closing (DV-02). "
        "The answer is the CAPA; carry on with it at `/capas/{number}/`."
        + _OPEN_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=ComplaintCapaSerializer,
        responses={201: CapaSerializer},
        examples=[
            OpenApiExample(
                "Label legibility",
                value={
                    "kind": "corrective",
                    "title": "Replace the label printer ribbon supplier",
                    "description": "Qualify a second ribbon; add a legibility check.",
                    "owner": "sam.lee",
                    "due_on": "2026-12-15",
                    "effectiveness_due_on": "2027-02-15",
                    "actions": [
                        {
                            "description": "Add a label legibility check to step 3",
                            "owner": "sam.lee",
                            "due_on": "2026-12-05",
                        }
                    ],
                    "reason": "CAPA from the complaint's root cause.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def capas(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(ComplaintCapaSerializer, request))
        complaint = self.get_object()
        capa = services.capa_create(
            actor=_actor(request),
            complaint=complaint,
            title=fields["title"],
            description=fields["description"],
            kind=fields["kind"],
            owner=fields["owner"],
            due_on=fields["due_on"],
            effectiveness_due_on=fields["effectiveness_due_on"],
            reason=reason,
            actions=[
                services.ActionInput(
                    description=item["description"], owner=item["owner"], due_on=item["due_on"]
                )
                for item in fields.get("actions", [])
            ],
        )
        return Response(
            _capa_detail(capa),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:capa-detail", args=[capa.number])},
        )

    @extend_schema(
        summary="Close, signed (open → closed)",
        description="Control Site QA signs with the meaning `approved`. Refused without QA's "
        "assessment (409 `assessment_required`), for a serious suspected adverse reaction "
        "not yet reported to the MHRA (409 `report_required`), and while a CAPA raised from "
        "it is open (409 `capa_open`): nothing is written."
        + _SIGNED_NOTE
        + _OPEN_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE,
        request=ComplaintCloseSerializer,
        responses={200: ComplaintDetailSerializer},
        examples=[_signed_example("Assessed and reported; no CAPA open.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def close(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(ComplaintCloseSerializer, request)
        complaint = self.get_object()
        complaint_services.complaint_close(
            actor=_actor(request),
            complaint=complaint,
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_complaint_detail(complaint))
