"""OOS investigations API (issue 6 §2; design §6; DV-10, DV-05): investigations by number
`OOS-<year>-<NNNN>`, with their phases and signed conclusion as POST actions.

The queryset comes from `deviations.selectors.oos_visible_to`, so an investigation you may not
see is a 404, never a 403. Every write is one `deviations.services.oos` call, which checks the
role (403), the phase (409), the text (400) and the signature (422); a write parses its body
before it fetches the record. `Idempotency-Key` on any POST replays the first answer.
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

from controlsite.api.base import BaseViewSet, split_reason, validated_input
from deviations import selectors
from deviations.api.filters.oos import OosFilter
from deviations.api.serializers.oos import (
    OOS_NUMBER_PATTERN,
    OosConcludeSerializer,
    OosFindingsSerializer,
    OosInvestigationSerializer,
    OosOpenSerializer,
    OosReasonSerializer,
)
from deviations.api.views import (
    _IDEMPOTENT,
    _REASON_NOTE,
    _SIGNED_NOTE,
    _actor,
    _reason_example,
    _regex,
)
from deviations.models import Capa, OosInvestigation
from deviations.selectors.oos import OOS_RELATED
from deviations.services import oos as oos_services

_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."
_NOT_VISIBLE = (
    " An investigation you may not see — another site's, or any under a token limited to "
    "other sites — is 404 and nothing is written."
)
_CONCLUDED = " A concluded investigation no longer changes (409 `oos_concluded`)."


def _capa_numbers() -> Prefetch[str, QuerySet[Capa], str]:
    return Prefetch("capas", queryset=Capa.objects.only("pk", "number", "oos_id"))


def _oos_detail(oos: OosInvestigation) -> dict[str, Any]:
    """The investigation as it stands after a write, read afresh."""
    fresh = (
        OosInvestigation.objects.select_related(*OOS_RELATED)
        .prefetch_related(_capa_numbers())
        .get(pk=oos.pk)
    )
    return dict(OosInvestigationSerializer(fresh).data)


class OosInvestigationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """OOS investigations of the results of batches you can see (DV-10): opened by the system
    when a registered specification fails, or by Control Site QA for any failed result; taken
    through Phase Ia (obvious error), Ib (laboratory), II (full investigation) and III (batch
    disposition); concluded by QA, signed — the result confirmed, or invalidated on the evidence
    of a laboratory cause. The original result is never changed. An open investigation blocks
    its batch's certification (DV-05). Newest first."""

    serializer_class = OosInvestigationSerializer
    filterset_class = OosFilter
    lookup_field = "number"
    lookup_value_regex = _regex(OOS_NUMBER_PATTERN)
    ordering = "-id"

    def get_queryset(self) -> QuerySet[OosInvestigation]:
        visible = selectors.oos_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            return visible.select_related(*OOS_RELATED).prefetch_related(_capa_numbers())
        # Every write's service locks the row and reads it afresh.
        return visible.select_related("result__batch__site")

    @extend_schema(
        summary="List the OOS investigations you can see",
        description="Control Site QA, QPs and inspectors see every site's; site staff and "
        "integrators those of their sites (a site-limited token narrows them). Filter by "
        "`outcome` (`open` is what blocks certification), `phase`, `site` (code), `batch` "
        "(number) or `deviation` (number). Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one OOS investigation",
        description="By number: the original result as recorded (value, unit, specification "
        "and limits, passed, late — never changed, also once invalidated), the phase and the "
        "findings of each, the outcome, the conclusion, the evidence of an invalidation and QA's "
        "signature. The `ETag` header goes into `If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Open an OOS investigation of a failed result",
        description="Name the failed result by `result` id, or by `batch` number and "
        "`specification` key (400 `result_required` for neither or both; 400 `unknown_result` "
        "for one you cannot see; 400 `unknown_batch`). It starts in Phase Ia, numbered "
        "`OOS-<year>-<NNNN>`, linked to `deviation` when given (an open one of the same batch: "
        "400 `deviation_not_of_batch`, 409 `deviation_not_open`) or else to the batch's open "
        "deviation about this result. A passed result is 400 `result_passed`; a result already "
        "investigated is 409 `oos_exists` — a failed registered specification gets its "
        "investigation from the system as soon as its deviation opens. QA and the site lead "
        "are told; the batch cannot be certified while it is open."
        + _QA_ONLY
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=OosOpenSerializer,
        responses={201: OosInvestigationSerializer},
        examples=[
            OpenApiExample(
                "By batch and specification",
                value={
                    "batch": "LDS1-261122-001",
                    "specification": "endotoxin",
                    "reason": "In-house endotoxin above limit: investigate.",
                },
                request_only=True,
            ),
            OpenApiExample(
                "By result id, with its deviation",
                value={
                    "result": 4711,
                    "deviation": "DEV-2026-0007",
                    "reason": "Viability below specification.",
                },
                request_only=True,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(OosOpenSerializer, request))
        oos = oos_services.oos_open(
            actor=_actor(request),
            result=fields["result"],
            deviation=fields.get("deviation"),
            reason=reason,
        )
        return Response(
            _oos_detail(oos),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:oos-investigation-detail", args=[oos.number])},
        )

    @extend_schema(
        summary="Write the findings of the current phase",
        description="They replace what was written for the current phase; the findings of "
        "earlier phases stay as written. In Phase Ia or Ib they name the assignable laboratory "
        "cause, if one was found. Control Site QA, or the site lead at the batch's site (403 "
        "`permission_denied` otherwise)." + _CONCLUDED + _NOT_VISIBLE + _REASON_NOTE,
        request=OosFindingsSerializer,
        responses={200: OosInvestigationSerializer},
        examples=[
            OpenApiExample(
                "Phase Ia",
                value={
                    "findings": "Calculation, dilution and instrument log checked: the "
                    "pipette used was out of calibration since 20 Nov.",
                    "reason": "Phase Ia checks done.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def findings(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(OosFindingsSerializer, request))
        oos = self.get_object()
        oos_services.oos_record_findings(
            actor=_actor(request), oos=oos, findings=fields["findings"], reason=reason
        )
        return Response(_oos_detail(oos))

    @extend_schema(
        summary="Move to the next phase (Ia → Ib → II → III)",
        description="Once the current phase's findings are written (409 `findings_required`). "
        "Moving from Ib to II says the laboratory found no assignable cause. Phase III is the "
        "last (409 `transition_not_allowed`)."
        + _CONCLUDED
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=OosReasonSerializer,
        responses={200: OosInvestigationSerializer},
        examples=[_reason_example("No obvious error: laboratory investigation.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def advance(self, request: Request, number: str | None = None) -> Response:
        reason = validated_input(OosReasonSerializer, request).validated_data["reason"]
        oos = self.get_object()
        oos_services.oos_advance(actor=_actor(request), oos=oos, reason=reason)
        return Response(_oos_detail(oos))

    @extend_schema(
        summary="Conclude, signed (open → confirmed | invalidated)",
        description="Control Site QA signs the conclusion with the meaning `approved`. "
        "`invalidated`: in Phase Ia or Ib only, whose findings name the laboratory cause, with "
        "`invalidation_evidence` (400 `evidence_required`; 409 `invalidation_needs_lab_cause` "
        "from Phase II on). `confirmed`: from Phase II on (409 `confirmation_too_early`), without "
        "invalidation evidence (400 `evidence_not_applicable`). The current phase's findings are "
        "written first (409 `findings_required`). The original result is never changed; "
        "concluding clears the investigation from the batch's release gate (a confirmed failure "
        "of a registered specification still blocks there)."
        + _SIGNED_NOTE
        + _CONCLUDED
        + _QA_ONLY
        + _NOT_VISIBLE,
        request=OosConcludeSerializer,
        responses={200: OosInvestigationSerializer},
        examples=[
            OpenApiExample(
                "Invalidated in Phase Ia",
                value={
                    "outcome": "invalidated",
                    "conclusion": "Assignable laboratory cause: pipette out of calibration.",
                    "invalidation_evidence": "Calibration certificate CAL-0917 expired 20 Nov; "
                    "retest with a calibrated pipette read 91 %.",
                    "username": "quinn.adams",
                    "password": "your-password",
                    "meaning": "approved",
                    "reason": "Result invalidated on evidence.",
                },
                request_only=True,
                description="Add `otp` (the 6-digit code) if your role needs a second factor.",
            ),
            OpenApiExample(
                "Confirmed in Phase II",
                value={
                    "outcome": "confirmed",
                    "conclusion": "No laboratory cause; the wash step ran short. Batch rejected.",
                    "username": "quinn.adams",
                    "password": "your-password",
                    "meaning": "approved",
                    "reason": "Result confirmed out of specification.",
                },
                request_only=True,
            ),
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def conclude(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(OosConcludeSerializer, request)
        fields = signed.validated_data
        oos = self.get_object()
        oos_services.oos_conclude(
            actor=_actor(request),
            oos=oos,
            outcome=fields["outcome"],
            conclusion=fields["conclusion"],
            invalidation_evidence=fields.get("invalidation_evidence", ""),
            credentials=signed.credentials(),
            reason=fields["reason"],
        )
        return Response(_oos_detail(oos))
