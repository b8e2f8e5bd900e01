"""Deviations API: deviations by number with their lifecycle as POST actions, extension
requests and QA's decision, CAPAs by number with their actions, effectiveness check and signed
closure (issue 6; design §6; DV-01…DV-05).

Every queryset comes from a `deviations.selectors` visibility rule, so a deviation or CAPA you
may not see is a 404, never a 403 — a token limited to some sites sees only their records.
Every write is one `deviations.services` call, which checks the role (403), the lifecycle
(409), the dates and text (400) and the signature (422); views only parse input and shape
output. A write parses its body before it fetches the record, so a malformed body is a 400
whatever the record or `If-Match` says. `Idempotency-Key` on any POST makes an integrator's
retry replay the first answer.
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

from controlsite.accounts.models import User
from controlsite.api.base import BaseViewSet, split_reason, validated_input
from deviations import selectors, services
from deviations.api.filters import (
    CapaActionFilter,
    CapaFilter,
    DeviationFilter,
    ExtensionFilter,
)
from deviations.api.serializers import (
    CAPA_NUMBER_PATTERN,
    DEVIATION_NUMBER_PATTERN,
    CapaActionAddSerializer,
    CapaActionCompleteSerializer,
    CapaActionSerializer,
    CapaCloseSerializer,
    CapaCreateSerializer,
    CapaEffectivenessSerializer,
    CapaSerializer,
    DeviationClassConfirmSerializer,
    DeviationCloseSerializer,
    DeviationDetailSerializer,
    DeviationExtensionSerializer,
    DeviationInvestigationSerializer,
    DeviationRaiseSerializer,
    DeviationReasonSerializer,
    DeviationSerializer,
    ExtensionDecideSerializer,
    ExtensionRequestSerializer,
)
from deviations.choices import (
    DeviationAction,
)
from deviations.models import Capa, CapaAction, Deviation, DeviationExtension

ID_REGEX = r"[0-9]{1,18}"

_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."
_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."
_NOT_VISIBLE = (
    " A deviation you may not see — another site's, or any under a token limited to other "
    "sites — is 404 and nothing is written."
)
_CAPA_NOT_VISIBLE = (
    " A CAPA you may not see — another site's, or any under a token limited to other sites — "
    "is 404 and nothing is written."
)
_OPEN_NOTE = " A closed or cancelled deviation no longer changes (409 `deviation_not_open`)."
_STEP_NOTE = (
    " From any other status the step is 409 `transition_not_allowed`. The answer is the "
    "deviation as it now stands."
)
_SIGNED_NOTE = (
    " Signed: send your `username`, `password`, `otp` (where your role needs the second "
    "factor), `meaning` = `approved` and a `reason`. A refused signature is 422 "
    "(`wrong_password`, `otp_required`, `username_mismatch`, ...) and changes nothing."
)
_IDEMPOTENT = (
    " Send an `Idempotency-Key` so a retry replays the first answer instead of writing twice; "
    "the same key with another body is 409."
)


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


def _regex(pattern: str) -> str:
    """A body pattern (anchored) as a URL lookup pattern (the router anchors it)."""
    return pattern.removeprefix("^").removesuffix("$")


def _reason_example(reason: str) -> OpenApiExample:
    return OpenApiExample("With a reason", value={"reason": reason}, request_only=True)


def _signed_example(reason: str) -> OpenApiExample:
    return OpenApiExample(
        "Signed by Control Site QA",
        value={
            "username": "quinn.adams",
            "password": "your-password",
            "meaning": "approved",
            "reason": reason,
        },
        request_only=True,
        description="Add `otp` (the 6-digit code) if your role needs a second factor.",
    )


#
# Deviations
#

_DEVIATION_RELATED = (
    "site",
    "batch",
    "step_record",
    "result__specification",
    "class_confirmed_by",
    "closed_by",
    "closure_signature",
    "created_by",
)


def _capa_numbers() -> Prefetch[str, QuerySet[Capa], str]:
    return Prefetch("capas", queryset=Capa.objects.only("pk", "number", "deviation_id"))


def _deviation_detail(deviation: Deviation) -> dict[str, Any]:
    """The deviation as it stands after a write, read afresh."""
    fresh = (
        Deviation.objects.select_related(*_DEVIATION_RELATED)
        .prefetch_related(_capa_numbers())
        .get(pk=deviation.pk)
    )
    return dict(DeviationDetailSerializer(fresh, context={"today": timezone.localdate()}).data)


class DeviationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Deviations at the sites you can see, named by their number `DEV-<year>-<NNNN>`
    (DV-01). Raised by site staff, integrators, QA or a QP; classified, triaged, investigated
    and closed (signed) by Control Site QA. Newest first."""

    serializer_class = DeviationSerializer
    filterset_class = DeviationFilter
    lookup_field = "number"
    lookup_value_regex = _regex(DEVIATION_NUMBER_PATTERN)
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Deviation]:
        visible = selectors.deviations_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            return visible.select_related(*_DEVIATION_RELATED).prefetch_related(_capa_numbers())
        # Every write's service locks the row and reads it afresh.
        return visible.select_related("site")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return DeviationDetailSerializer if self.action == "retrieve" else DeviationSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        summary="List the deviations you can see",
        description="Control Site QA, QPs and inspectors see every site's deviations; site "
        "staff and integrators those of their sites (a site-limited token narrows them). "
        "Filter by `site`, `status`, `deviation_class` (in force), `batch` or `overdue=true`. "
        "Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one deviation",
        description="By number: its class (proposed, confirmed, in force, with the criteria), "
        "status and due dates, the investigation, the closure signature, its CAPAs and "
        "extension requests. The `ETag` header goes into `If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Raise a deviation",
        description="At a site you work at, optionally on one of its batches — and a recorded "
        "step (`step`, its position) or result (`result`, its specification key) of that batch "
        "— or from an audit finding. You propose a class; Control Site QA confirms it. QA and "
        "the site lead are told at once; triage is due the next working day. A site or batch "
        "you cannot see is 400 `unknown_site` / `unknown_batch`; 400 `batch_required`, "
        "`unknown_step`, `unknown_result`; 400 `date_in_future` for `occurred_at`. Site staff, "
        "integrators at the site, Control Site QA and QPs (403 `permission_denied` otherwise)."
        + _IDEMPOTENT,
        request=DeviationRaiseSerializer,
        responses={201: DeviationDetailSerializer},
        examples=[
            OpenApiExample(
                "Out of limit during thaw",
                value={
                    "site": "LDS1",
                    "batch": "LDS1-261122-001",
                    "step": 1,
                    "title": "Bath over temperature",
                    "description": "The water bath read 39.5 °C during thaw.",
                    "proposed_class": "major",
                    "immediate_action": "Bag moved to the spare bath.",
                    "occurred_at": "2026-11-22T09:40:00Z",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields = dict(validated_input(DeviationRaiseSerializer, request).validated_data)
        deviation = services.deviation_raise(actor=_actor(request), **fields)
        return Response(
            _deviation_detail(deviation),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:deviation-detail", args=[deviation.number])},
        )

    @extend_schema(
        summary="Confirm (or change) the class",
        description="Control Site QA confirms the class against the criteria (DV-03); the "
        "closure date follows the class unless an extension was granted. Triage needs it."
        + _OPEN_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=DeviationClassConfirmSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[
            OpenApiExample(
                "Major",
                value={"deviation_class": "major", "reason": "Batch quality may be affected."},
                request_only=True,
            )
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="confirm-class",
        url_name="confirm-class",
        filterset_class=None,
    )
    def confirm_class(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(DeviationClassConfirmSerializer, request))
        deviation = self.get_object()
        services.deviation_confirm_class(
            actor=_actor(request),
            deviation=deviation,
            deviation_class=fields["deviation_class"],
            reason=reason,
        )
        return Response(_deviation_detail(deviation))

    @extend_schema(
        summary="Write the investigation",
        description="Send the fields that change — `immediate_action`, `impact_assessment`, "
        "`root_cause_category`, `root_cause`, `human_error_justification` — and a reason; the "
        "others stay as they are (400 `nothing_to_change` with none). A root cause of "
        "`human_error` needs its justification (400 `human_error_unjustified`, DV-01). "
        "Control Site QA, or the site lead at the deviation's site (403 `permission_denied` "
        "otherwise)." + _OPEN_NOTE + _NOT_VISIBLE + _REASON_NOTE,
        request=DeviationInvestigationSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[
            OpenApiExample(
                "Root cause found",
                value={
                    "impact_assessment": "Cells within viability; no impact on the batch.",
                    "root_cause_category": "equipment",
                    "root_cause": "Thermostat drift on bath 1.",
                    "reason": "Investigation written.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def investigation(self, request: Request, number: str | None = None) -> Response:
        changes, reason = split_reason(validated_input(DeviationInvestigationSerializer, request))
        deviation = self.get_object()
        services.deviation_update(
            actor=_actor(request), deviation=deviation, reason=reason, changes=changes
        )
        return Response(_deviation_detail(deviation))

    def _step(self, request: Request, step: DeviationAction) -> Response:
        if step == DeviationAction.CLOSE:
            signed = validated_input(DeviationCloseSerializer, request)
            credentials = signed.credentials()
            reason = signed.validated_data["reason"]
        else:
            credentials = None
            reason = validated_input(DeviationReasonSerializer, request).validated_data["reason"]
        deviation = self.get_object()
        services.deviation_transition(
            actor=_actor(request),
            deviation=deviation,
            action=step,
            reason=reason,
            credentials=credentials,
        )
        return Response(_deviation_detail(deviation))

    @extend_schema(
        summary="Triage (open → triaged)",
        description="Control Site QA has confirmed the class first (409 "
        "`class_not_confirmed`)." + _STEP_NOTE + _QA_ONLY + _NOT_VISIBLE + _REASON_NOTE,
        request=DeviationReasonSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[_reason_example("Class confirmed; investigation assigned to the site lead.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def triage(self, request: Request, number: str | None = None) -> Response:
        return self._step(request, DeviationAction.TRIAGE)

    @extend_schema(
        summary="Start the investigation (triaged → investigating)",
        description="The investigation's fields are then written with `investigation/`."
        + _STEP_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=DeviationReasonSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[_reason_example("Investigation started.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def investigate(self, request: Request, number: str | None = None) -> Response:
        return self._step(request, DeviationAction.INVESTIGATE)

    @extend_schema(
        summary="Hand over to CAPA (investigating → pending CAPA)",
        description="A CAPA has been raised from the deviation first (409 `no_capa`)."
        + _STEP_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=DeviationReasonSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[_reason_example("CAPA raised; closure awaits its actions.")],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="await-capa",
        url_name="await-capa",
        filterset_class=None,
    )
    def await_capa(self, request: Request, number: str | None = None) -> Response:
        return self._step(request, DeviationAction.AWAIT_CAPA)

    @extend_schema(
        summary="Close, signed (investigating or pending CAPA → closed)",
        description="Control Site QA signs the findings with the meaning `approved`. Refused "
        "while the impact assessment, root-cause category or root cause is missing (409 "
        "`investigation_incomplete`) or while any action of its CAPAs is open (409 "
        "`capa_actions_open`): nothing is written. Closing clears the deviation from the "
        "batch's release gate." + _SIGNED_NOTE + _STEP_NOTE + _QA_ONLY + _NOT_VISIBLE,
        request=DeviationCloseSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[_signed_example("Investigation complete; CAPA actions done.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def close(self, request: Request, number: str | None = None) -> Response:
        return self._step(request, DeviationAction.CLOSE)

    @extend_schema(
        summary="Cancel (any open status → cancelled)",
        description="For a deviation raised in error or twice; the reason is kept with it."
        + _STEP_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=DeviationReasonSerializer,
        responses={200: DeviationDetailSerializer},
        examples=[_reason_example("Duplicate of DEV-2026-0006.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request: Request, number: str | None = None) -> Response:
        return self._step(request, DeviationAction.CANCEL)

    @extend_schema(
        summary="Ask for an extension of the closure date",
        description="Control Site QA decides it (`/deviation-extensions/{id}/approve/` or "
        "`refuse/`). The new date is after the current one (400 `invalid`), at most 180 days "
        "later (400 `too_long`) and not in the past (400 `date_in_past`); one request awaits a "
        "decision at a time (409 `extension_pending`). Control Site QA, or the site lead at "
        "the deviation's site (403 `permission_denied` otherwise)."
        + _OPEN_NOTE
        + _NOT_VISIBLE
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=ExtensionRequestSerializer,
        responses={201: DeviationExtensionSerializer},
        examples=[
            OpenApiExample(
                "Vendor delay",
                value={
                    "requested_due_on": "2027-01-15",
                    "reason": "The replacement thermostat ships in six weeks.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def extensions(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(ExtensionRequestSerializer, request))
        deviation = self.get_object()
        extension = services.extension_request(
            actor=_actor(request),
            deviation=deviation,
            requested_due_on=fields["requested_due_on"],
            reason=reason,
        )
        return Response(
            _extension(extension),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:deviation-extension-detail", args=[extension.pk])},
        )


#
# Extensions (DV-04)
#

_DECIDED = (
    " A request already decided is 409 `extension_decided`; the reason is kept with the "
    "decision." + _QA_ONLY + _NOT_VISIBLE
)


def _extension(extension: DeviationExtension) -> dict[str, Any]:
    fresh = DeviationExtension.objects.select_related("deviation", "created_by", "decided_by").get(
        pk=extension.pk
    )
    return dict(DeviationExtensionSerializer(fresh).data)


class DeviationExtensionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Requests to move a deviation's closure date, of the deviations you can see, and Control
    Site QA's decisions (DV-04). Newest first."""

    serializer_class = DeviationExtensionSerializer
    filterset_class = ExtensionFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[DeviationExtension]:
        return DeviationExtension.objects.filter(
            deviation__in=selectors.deviations_visible_to(self.request.user)
        ).select_related("deviation", "created_by", "decided_by")

    @extend_schema(
        summary="List the extension requests you can see",
        description="Those of the deviations you can see. Filter by `deviation` (number) or "
        "`status` (`requested` is QA's queue). Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Read one extension request")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    def _decide(self, request: Request, *, approve: bool) -> Response:
        reason = validated_input(ExtensionDecideSerializer, request).validated_data["reason"]
        extension = self.get_object()
        decided = services.extension_decide(
            actor=_actor(request), extension=extension, approve=approve, reason=reason
        )
        return Response(_extension(decided))

    @extend_schema(
        summary="Approve (requested → approved)",
        description="The deviation's closure date moves to the date asked for, and its overdue "
        "escalation is re-armed." + _DECIDED,
        request=ExtensionDecideSerializer,
        responses={200: DeviationExtensionSerializer},
        examples=[_reason_example("Vendor delay documented; new date agreed.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, approve=True)

    @extend_schema(
        summary="Refuse (requested → refused)",
        description="The closure date stays." + _DECIDED,
        request=ExtensionDecideSerializer,
        responses={200: DeviationExtensionSerializer},
        examples=[_reason_example("An interim control can close it on time.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def refuse(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(request, approve=False)


#
# CAPA (DV-02)
#

_CAPA_RELATED = (
    "deviation",
    "site",
    "owner",
    "effectiveness_checked_by",
    "created_by",
    "closure_signature",
)


def _actions_prefetch() -> Prefetch[str, QuerySet[CapaAction], str]:
    return Prefetch(
        "actions", queryset=CapaAction.objects.select_related("capa", "owner", "done_by")
    )


def _capa_detail(capa: Capa) -> dict[str, Any]:
    """The CAPA as it stands after a write, read afresh."""
    fresh = (
        Capa.objects.select_related(*_CAPA_RELATED)
        .prefetch_related(_actions_prefetch())
        .get(pk=capa.pk)
    )
    return dict(CapaSerializer(fresh).data)


def _capa_action(action: CapaAction) -> dict[str, Any]:
    fresh = CapaAction.objects.select_related("capa", "owner", "done_by").get(pk=action.pk)
    return dict(CapaActionSerializer(fresh).data)


def _action_input(fields: dict[str, Any]) -> services.ActionInput:
    return services.ActionInput(
        description=fields["description"], owner=fields["owner"], due_on=fields["due_on"]
    )


class CapaViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """CAPAs of the sites you can see, named by their number `CAPA-<year>-<NNNN>` (DV-02):
    raised by Control Site QA from a deviation or an audit finding, with an owner, a due date
    and actions; checked for effectiveness and closed, signed. Newest first."""

    serializer_class = CapaSerializer
    filterset_class = CapaFilter
    lookup_field = "number"
    lookup_value_regex = _regex(CAPA_NUMBER_PATTERN)
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Capa]:
        visible = selectors.capas_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            return visible.select_related(*_CAPA_RELATED).prefetch_related(_actions_prefetch())
        # Every write's service locks the row and reads it afresh.
        return visible.select_related("site")

    @extend_schema(
        summary="List the CAPAs you can see",
        description="Control Site QA, QPs and inspectors see every CAPA; site staff and "
        "integrators those of their sites. Filter by `site`, `status`, `kind`, `deviation` "
        "(number) or `owner` (username). Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one CAPA",
        description="By number: source, owner, due dates, status, the effectiveness check, the "
        "closure signature and every action. The `ETag` header goes into `If-Match` on your "
        "next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Raise a CAPA",
        description="From exactly one source — an open `deviation` (by number) or an "
        "`audit_reference` (400 `source_required` otherwise; 409 `deviation_not_open`) — with "
        "an active `owner` (username; 400 `unknown_user`), a `due_on` and an "
        "`effectiveness_due_on` on or after it (400 `invalid`), neither in the past (400 "
        "`date_in_past`), and optionally its first actions, each with its own owner and due "
        "date. The owner is told. A deviation you cannot see is 400 `unknown_deviation`."
        + _QA_ONLY
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=CapaCreateSerializer,
        responses={201: CapaSerializer},
        examples=[
            OpenApiExample(
                "From a deviation",
                value={
                    "deviation": "DEV-2026-0007",
                    "kind": "corrective",
                    "title": "Replace the bath thermostat",
                    "description": "Replace and requalify; add a daily check.",
                    "owner": "sam.lee",
                    "due_on": "2026-12-15",
                    "effectiveness_due_on": "2027-02-15",
                    "actions": [
                        {
                            "description": "Replace the thermostat",
                            "owner": "sam.lee",
                            "due_on": "2026-12-01",
                        }
                    ],
                    "reason": "CAPA from the deviation's root cause.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(CapaCreateSerializer, request))
        actions = [_action_input(item) for item in fields.pop("actions", [])]
        capa = services.capa_create(
            actor=_actor(request),
            reason=reason,
            actions=actions,
            title=fields["title"],
            description=fields["description"],
            kind=fields["kind"],
            owner=fields["owner"],
            due_on=fields["due_on"],
            effectiveness_due_on=fields["effectiveness_due_on"],
            deviation=fields.get("deviation"),
            audit_reference=fields.get("audit_reference", ""),
        )
        return Response(
            _capa_detail(capa),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:capa-detail", args=[capa.number])},
        )

    @extend_schema(
        summary="Add an action",
        description="To an open CAPA (409 `capa_not_open`), with its own active owner "
        "(username) and a due date not in the past (400 `date_in_past`). The answer is the "
        "action." + _QA_ONLY + _CAPA_NOT_VISIBLE + _REASON_NOTE + _IDEMPOTENT,
        request=CapaActionAddSerializer,
        responses={201: CapaActionSerializer},
        examples=[
            OpenApiExample(
                "An alarm",
                value={
                    "description": "Fit a high-temperature alarm to bath 1.",
                    "owner": "sam.lee",
                    "due_on": "2026-12-10",
                    "reason": "Effectiveness check found a recurrence.",
                },
                request_only=True,
            )
        ],
    )
    @action(
        detail=True, methods=["post"], url_path="actions", url_name="actions", filterset_class=None
    )
    def add_action(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(CapaActionAddSerializer, request))
        capa = self.get_object()
        added = services.capa_action_add(
            actor=_actor(request), capa=capa, item=_action_input(fields), reason=reason
        )
        return Response(
            _capa_action(added),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:capa-action-detail", args=[added.pk])},
        )

    @extend_schema(
        summary="Record the effectiveness check",
        description="Once every action is done (409 `capa_actions_open`, `no_actions`): "
        "`effective` readies the CAPA to close; `not_effective` keeps it open for more "
        "actions. 409 `capa_not_open` after an effective check or closure."
        + _QA_ONLY
        + _CAPA_NOT_VISIBLE
        + _REASON_NOTE,
        request=CapaEffectivenessSerializer,
        responses={200: CapaSerializer},
        examples=[
            OpenApiExample(
                "Effective",
                value={
                    "effectiveness": "effective",
                    "notes": "No recurrence in 60 days of daily checks.",
                    "reason": "Effectiveness check due.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def effectiveness(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(CapaEffectivenessSerializer, request))
        capa = self.get_object()
        services.capa_effectiveness_check(
            actor=_actor(request),
            capa=capa,
            effectiveness=fields["effectiveness"],
            notes=fields["notes"],
            reason=reason,
        )
        return Response(_capa_detail(capa))

    @extend_schema(
        summary="Close, signed (effectiveness check → closed)",
        description="Only after an effectiveness check found it effective (409 "
        "`effectiveness_not_checked`)." + _SIGNED_NOTE + _QA_ONLY + _CAPA_NOT_VISIBLE,
        request=CapaCloseSerializer,
        responses={200: CapaSerializer},
        examples=[_signed_example("Found effective; CAPA complete.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def close(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(CapaCloseSerializer, request)
        capa = self.get_object()
        services.capa_close(
            actor=_actor(request),
            capa=capa,
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_capa_detail(capa))

    @extend_schema(
        summary="Cancel (open or effectiveness check → cancelled)",
        description="For a CAPA raised in error or folded into another; the reason is kept "
        "with it (`cancel_reason`). A CAPA past its actions cannot be cancelled (409 "
        "`capa_not_open`)." + _QA_ONLY + _CAPA_NOT_VISIBLE + _REASON_NOTE,
        request=DeviationReasonSerializer,
        responses={200: CapaSerializer},
        examples=[_reason_example("Folded into CAPA-2026-0004, which covers both sites.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request: Request, number: str | None = None) -> Response:
        reason = validated_input(DeviationReasonSerializer, request).validated_data["reason"]
        capa = self.get_object()
        services.capa_cancel(actor=_actor(request), capa=capa, reason=reason)
        return Response(_capa_detail(capa))


class CapaActionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Actions of the CAPAs you can see, each with its owner and due date (DV-02). Newest
    first."""

    serializer_class = CapaActionSerializer
    filterset_class = CapaActionFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[CapaAction]:
        return CapaAction.objects.filter(
            capa__in=selectors.capas_visible_to(self.request.user)
        ).select_related("capa", "owner", "done_by")

    @extend_schema(
        summary="List the CAPA actions you can see",
        description="Those of the CAPAs you can see. Filter by `capa` (number), `status` or "
        "`owner` (username): `?owner=<you>&status=open` is your to-do list. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Read one CAPA action")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Record it done (open → done)",
        description="Its owner or Control Site QA (403 `permission_denied` otherwise) records "
        "what was done. 409 `action_done` for an action already done, `capa_not_open` once "
        "the CAPA has left open. An action of a CAPA you may not see is 404 and nothing is "
        "written.",
        request=CapaActionCompleteSerializer,
        responses={200: CapaActionSerializer},
        examples=[
            OpenApiExample(
                "Replaced",
                value={"outcome": "Thermostat replaced; IQ/OQ passed.", "reason": "Done."},
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def complete(self, request: Request, pk: str | None = None) -> Response:
        fields = dict(validated_input(CapaActionCompleteSerializer, request).validated_data)
        capa_action = self.get_object()
        done = services.capa_action_complete(
            actor=_actor(request),
            action=capa_action,
            outcome=fields["outcome"],
            reason=fields.get("reason", ""),
        )
        return Response(_capa_action(done))
