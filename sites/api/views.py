"""Sites API: the register, the lifecycle as POST actions, memberships, equipment, site audits,
the MHRA log and the Control Site record (issue 3; design §6).

Every queryset comes from a `sites.selectors` visibility rule, so a site you may not see is a
404, never a 403. Every write is one `sites.services` call, which checks the role (403), the
lifecycle (409) and the signature (422); views only parse input and shape output.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from controlsite.accounts.roles import Capability
from controlsite.api.base import BaseViewSet, split_reason, validated_input
from sites import selectors, services
from sites.api.filters import (
    EquipmentFilter,
    RegulatoryNotificationFilter,
    SiteAuditFilter,
    SiteFilter,
    SiteMembershipFilter,
)
from sites.api.serializers import (
    ControlSiteSerializer,
    RegulatoryNotificationMarkSentSerializer,
    RegulatoryNotificationSerializer,
    SiteAuditCompleteSerializer,
    SiteAuditCreateSerializer,
    SiteAuditFindingCreateSerializer,
    SiteAuditFindingSerializer,
    SiteAuditSerializer,
    SiteChecklistItemSerializer,
    SiteCreateSerializer,
    SiteDetailSerializer,
    SiteEquipmentCreateSerializer,
    SiteEquipmentSerializer,
    SiteEquipmentUpdateSerializer,
    SiteEvidenceSerializer,
    SiteMembershipCreateSerializer,
    SiteMembershipSerializer,
    SiteMoveSerializer,
    SiteReasonSerializer,
    SiteSerializer,
    SiteSignedActionSerializer,
    SiteSignOffSerializer,
    SiteUpdateSerializer,
)
from sites.choices import SIGNED_ACTIONS, ChecklistItemStatus, SiteAction
from sites.models import ControlSite, OnboardingItem, Site, SiteMembership

ID_REGEX = r"[0-9]{1,18}"

_REASON_EXAMPLE = OpenApiExample(
    "With a reason",
    value={"reason": "Agreed at the site readiness meeting of 12 March."},
    request_only=True,
)


def _signed_example(reason: str) -> OpenApiExample:
    return OpenApiExample(
        "Signed by Control Site QA",
        value={
            "username": "qa.lead",
            "password": "your-password",
            "meaning": "approved",
            "reason": reason,
        },
        request_only=True,
        description="Add `otp` (the 6-digit code) if your role needs a second factor.",
    )


_SIGNED_NOTE = (
    "\n\nSigned: send your `username`, `password`, `otp` (where your role needs a second factor), "
    "`meaning` = `approved` and a `reason`. A refused signature is 422 (`wrong_password`, "
    "`otp_required`, `username_mismatch`, ...) and changes nothing."
)
_STEP_NOTE = (
    "\n\nOnly Control Site QA (403 `permission_denied` otherwise). From any other status the "
    "step is 409 `transition_not_allowed`. The response is the site as it now stands."
)


#
# Sites
#


def _with_summary(qs: QuerySet[Site]) -> QuerySet[Site]:
    """Everything a site's representation reads, in the one query that lists them."""
    return qs.select_related("nominated_person").annotate(
        checklist_total=Count("checklist"),
        checklist_done=Count("checklist", filter=Q(checklist__status=ChecklistItemStatus.DONE)),
    )


_DETAIL_PREFETCH = (
    Prefetch(
        "checklist",
        queryset=OnboardingItem.objects.select_related("signed_off_by").order_by("position", "key"),
    ),
    "moves",
)


class SiteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """The register of spoke sites (SO-01). Sites are never deleted: cease them instead."""

    serializer_class = SiteSerializer
    filterset_class = SiteFilter
    lookup_field = "code"
    lookup_value_regex = "[A-Z0-9]{2,8}"
    ordering = "code"

    def get_queryset(self) -> QuerySet[Site]:
        qs = selectors.sites_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            qs = _with_summary(qs)
        if self.action == "retrieve":
            qs = qs.prefetch_related(*_DETAIL_PREFETCH)
        return qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return SiteDetailSerializer if self.action == "retrieve" else SiteSerializer

    def _detail(self, site: Site) -> dict[str, Any]:
        """The site as it stands after a write, read afresh (counts, checklist, moves)."""
        fresh = _with_summary(Site.objects.filter(pk=site.pk)).prefetch_related(*_DETAIL_PREFETCH)
        return dict(SiteDetailSerializer(fresh.get()).data)

    @extend_schema(
        summary="List the sites you can see",
        description="Control Site QA, QPs and inspectors see every site; anyone else sees the "
        "sites they are a member of. A token limited to some sites narrows either. Ordered by "
        "code; follow `next` for the following page.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one site",
        description="The site with its onboarding checklist and moves. A site you may not see "
        "is 404. The `ETag` header goes into `If-Match` on your next write to this site.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Register a site",
        description="Control Site QA registers a proposed site and its onboarding checklist. "
        "The code is final: 409 `site_code_taken` if it was ever used (codes are never reused). "
        "A nominated person becomes the site's lead. Send an `Idempotency-Key` so a retry never "
        "registers twice.",
        request=SiteCreateSerializer,
        responses={201: SiteDetailSerializer},
        examples=[
            OpenApiExample(
                "A point-of-care hospital site",
                value={
                    "code": "LON1",
                    "name": "St Elsewhere Hospital cell therapy unit",
                    "kind": "poc_hospital",
                    "host_organisation": "St Elsewhere NHS Foundation Trust",
                    "address": "1 Hospital Road, London SE1 7EH",
                    "nominated_person": "sam.lee",
                    "technical_agreement_ref": "TA-2026-014",
                    "reason": "New site approved by the Control Site board, minute 2026/07.",
                },
                request_only=True,
            ),
            OpenApiExample(
                "A modular unit",
                value={
                    "code": "MU3",
                    "name": "Modular unit 3",
                    "kind": "modular_unit",
                    "current_location": "Bay 4, Royal Infirmary loading dock",
                    "reason": "Third modular unit commissioned.",
                },
                request_only=True,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(SiteCreateSerializer, request))
        site = services.site_register(actor=request.user, reason=reason, **fields)  # type: ignore[arg-type]
        return Response(
            self._detail(site),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:site-detail", args=[site.code])},
        )

    @extend_schema(
        summary="Change a site's particulars",
        description="Only the fields you send change; `reason` is required. The code never "
        "changes (400 `site_code_immutable`) and the status moves only through the lifecycle "
        "actions (400 `unknown_field`). A ceased site is not changed (409 `site_ceased`). "
        "Send the `ETag` you read as `If-Match` to be refused (412) if someone changed it since.",
        request=SiteUpdateSerializer,
        responses={200: SiteDetailSerializer},
        examples=[
            OpenApiExample(
                "A new technical agreement",
                value={
                    "technical_agreement_ref": "TA-2026-031",
                    "reason": "Technical agreement renewed for 2026–2028.",
                },
                request_only=True,
            ),
        ],
    )
    def partial_update(self, request: Request, code: str | None = None) -> Response:
        changes, reason = split_reason(validated_input(SiteUpdateSerializer, request))
        site = self.get_object()
        updated = services.site_update(
            actor=request.user,  # type: ignore[arg-type]
            site=site,
            reason=reason,
            changes=changes,
        )
        return Response(self._detail(updated))

    def _step(self, request: Request, site_action: SiteAction) -> Response:
        if site_action in SIGNED_ACTIONS:
            signed = validated_input(SiteSignedActionSerializer, request)
            credentials = signed.credentials()
            reason = signed.validated_data["reason"]
        else:
            credentials = None
            reason = validated_input(SiteReasonSerializer, request).validated_data["reason"]
        site = self.get_object()
        services.site_transition(
            actor=request.user,  # type: ignore[arg-type]
            site=site,
            action=site_action,
            reason=reason,
            credentials=credentials,
        )
        return Response(self._detail(site))

    @extend_schema(
        summary="Start onboarding (proposed → onboarding)",
        description="The site starts on its onboarding checklist." + _STEP_NOTE,
        request=SiteReasonSerializer,
        responses={200: SiteDetailSerializer},
        examples=[_REASON_EXAMPLE],
    )
    @action(detail=True, methods=["post"], url_path="start-onboarding")
    def start_onboarding(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.START_ONBOARDING)

    @extend_schema(
        summary="Qualify (onboarding → qualified)",
        description="Refused with 409 `checklist_open` while any onboarding checklist item is "
        "not signed off; the problem's `extra.open_items` lists their keys." + _STEP_NOTE,
        request=SiteReasonSerializer,
        responses={200: SiteDetailSerializer},
        examples=[
            OpenApiExample(
                "Checklist complete",
                value={"reason": "Every onboarding item signed off; site qualified."},
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def qualify(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.QUALIFY)

    @extend_schema(
        summary="Activate (qualified → active)",
        description="The site may make product from now on. The first activation opens an MHRA "
        "notification (site added)." + _SIGNED_NOTE + _STEP_NOTE,
        request=SiteSignedActionSerializer,
        responses={200: SiteDetailSerializer},
        examples=[_signed_example("Qualified site released for manufacture.")],
    )
    @action(detail=True, methods=["post"])
    def activate(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.ACTIVATE)

    @extend_schema(
        summary="Pause (active → paused)",
        description="A planned stop, e.g. maintenance: no batch may start, no step be signed "
        "and no batch be certified until it resumes." + _STEP_NOTE,
        request=SiteReasonSerializer,
        responses={200: SiteDetailSerializer},
        examples=[
            OpenApiExample(
                "Planned maintenance",
                value={"reason": "Planned HVAC maintenance, 14–16 May."},
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.PAUSE)

    @extend_schema(
        summary="Resume (paused → active)",
        description="The site may make product again." + _STEP_NOTE,
        request=SiteReasonSerializer,
        responses={200: SiteDetailSerializer},
        examples=[
            OpenApiExample(
                "Maintenance done",
                value={"reason": "HVAC maintenance complete; requalification passed."},
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.RESUME)

    @extend_schema(
        summary="Suspend (active or paused → suspended)",
        description="Stops manufacture at once. The site lead and every QP are told at once and "
        "an MHRA notification is opened." + _SIGNED_NOTE + _STEP_NOTE,
        request=SiteSignedActionSerializer,
        responses={200: SiteDetailSerializer},
        examples=[_signed_example("Critical finding at audit SA-2026-04: sterility breach.")],
    )
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.SUSPEND)

    @extend_schema(
        summary="Reinstate (suspended → active)",
        description="The site may make product again; an MHRA notification is opened."
        + _SIGNED_NOTE
        + _STEP_NOTE,
        request=SiteSignedActionSerializer,
        responses={200: SiteDetailSerializer},
        examples=[_signed_example("CAPA-2026-09 closed and verified effective.")],
    )
    @action(detail=True, methods=["post"])
    def reinstate(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.REINSTATE)

    @extend_schema(
        summary="Cease (any status but ceased → ceased)",
        description="Final: the site never makes product again and its code is never reused. "
        "The site lead and every QP are told and an MHRA notification is opened."
        + _SIGNED_NOTE
        + _STEP_NOTE,
        request=SiteSignedActionSerializer,
        responses={200: SiteDetailSerializer},
        examples=[_signed_example("Technical agreement ended by the host trust.")],
    )
    @action(detail=True, methods=["post"])
    def cease(self, request: Request, code: str | None = None) -> Response:
        return self._step(request, SiteAction.CEASE)

    @extend_schema(
        summary="Move a modular unit",
        description="Records where a modular unit is now, as a dated move. Only a modular unit "
        "moves (409 `not_modular`) and a ceased one does not (409 `site_ceased`). Only Control "
        "Site QA.",
        request=SiteMoveSerializer,
        responses={200: SiteDetailSerializer},
        examples=[
            OpenApiExample(
                "To a new hospital",
                value={
                    "location": "Car park B, Royal Infirmary, Leeds LS1 3EX",
                    "reason": "Redeployed for the Leeds CAR-T programme.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def move(self, request: Request, code: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SiteMoveSerializer, request))
        site = self.get_object()
        services.site_move(
            actor=request.user,  # type: ignore[arg-type]
            site=site,
            location=fields["location"],
            reason=reason,
        )
        return Response(self._detail(site))

    def _checklist_item(self, key: str) -> OnboardingItem:
        site = self.get_object()
        item: OnboardingItem | None = site.checklist.filter(key=key).first()
        if item is None:
            raise exceptions.NotFound("No such checklist item at this site.")
        return item

    @extend_schema(
        summary="Attach evidence to an onboarding checklist item (by reference)",
        description="Records where the evidence is (a document number or location) while the "
        "item is open. Files are uploaded on the site's page. 409 `item_signed_off` once the "
        "item is signed off." + _STEP_NOTE,
        request=SiteEvidenceSerializer,
        responses={200: SiteChecklistItemSerializer},
        examples=[
            OpenApiExample(
                "IQ/OQ reports filed",
                value={
                    "reference": "QMS-VAL-2026-031 (IQ/OQ reports)",
                    "reason": "Reports approved by QA.",
                },
                request_only=True,
            )
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"checklist/(?P<key>[a-z0-9-]{1,50})/evidence",
    )
    def checklist_evidence(
        self, request: Request, code: str | None = None, key: str = ""
    ) -> Response:
        data = validated_input(SiteEvidenceSerializer, request).validated_data
        item = services.checklist_item_attach_evidence(
            actor=request.user,  # type: ignore[arg-type]
            item=self._checklist_item(key),
            reference=data["reference"],
            reason=data["reason"],
        )
        return Response(SiteChecklistItemSerializer(item).data)

    @extend_schema(
        summary="Sign an onboarding checklist item off",
        description="Control Site QA's e-signature with the meaning `verified`; the item needs "
        "evidence first (409 `evidence_required`)." + _SIGNED_NOTE + _STEP_NOTE,
        request=SiteSignOffSerializer,
        responses={200: SiteChecklistItemSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"checklist/(?P<key>[a-z0-9-]{1,50})/sign-off",
    )
    def checklist_sign_off(
        self, request: Request, code: str | None = None, key: str = ""
    ) -> Response:
        signed = validated_input(SiteSignOffSerializer, request)
        item = services.checklist_item_sign_off(
            actor=request.user,  # type: ignore[arg-type]
            item=self._checklist_item(key),
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(SiteChecklistItemSerializer(item).data)


#
# Memberships
#


class SiteMembershipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Who works at which site, and in what role; it decides what they see and may do there.
    Lists live memberships only."""

    serializer_class = SiteMembershipSerializer
    filterset_class = SiteMembershipFilter
    lookup_value_regex = ID_REGEX
    ordering = "id"

    def get_queryset(self) -> QuerySet[SiteMembership]:
        return selectors.memberships_visible_to(self.request.user)

    @extend_schema(
        summary="Give a person a role at a site",
        description="Only Control Site QA. 409 `already_member` if they already hold the role "
        "there; 409 `segregation_of_duties` for an administrator; 409 `site_ceased` at a ceased "
        "site. A site you cannot see is 400 `unknown_site`.",
        request=SiteMembershipCreateSerializer,
        responses={201: SiteMembershipSerializer},
        examples=[
            OpenApiExample(
                "An operator joins",
                value={
                    "site": "LON1",
                    "user": "omar.okafor",
                    "role": "site_operator",
                    "reason": "Trained and signed off for the CAR-T process.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(SiteMembershipCreateSerializer, request))
        membership = services.membership_add(actor=request.user, reason=reason, **fields)  # type: ignore[arg-type]
        return Response(SiteMembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="End a membership",
        description="From now on the person no longer sees or works on the site's records. "
        "Only Control Site QA; 409 `already_ended` if it has ended.",
        request=SiteReasonSerializer,
        responses={200: SiteMembershipSerializer},
        examples=[
            OpenApiExample(
                "Left the site",
                value={"reason": "Moved to another trust."},
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(SiteReasonSerializer, request).validated_data["reason"]
        membership = self.get_object()
        services.membership_end(
            actor=request.user,  # type: ignore[arg-type]
            membership=membership,
            reason=reason,
        )
        # An ended membership leaves the visible (live) list; show the one just ended.
        ended = SiteMembership.objects.select_related("site", "user").get(pk=membership.pk)
        return Response(SiteMembershipSerializer(ended).data)


#
# Equipment
#


class EquipmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Equipment at the sites you can see and where it stands in qualification (SO-07)."""

    serializer_class = SiteEquipmentSerializer
    filterset_class = EquipmentFilter
    lookup_value_regex = ID_REGEX
    ordering = "id"

    def get_queryset(self) -> QuerySet[Any]:
        return selectors.equipment_visible_to(self.request.user)

    @extend_schema(
        summary="Record equipment at a site",
        description="Control Site QA or the site's lead. 409 `equipment_duplicate` if that kind "
        "and serial number is already registered at the site.",
        request=SiteEquipmentCreateSerializer,
        responses={201: SiteEquipmentSerializer},
        examples=[
            OpenApiExample(
                "A cell processor",
                value={
                    "site": "LON1",
                    "kind": "closed-system processor",
                    "name": "Processor 1",
                    "serial_number": "CSP-00419",
                    "qualification_status": "iq_done",
                    "next_due": "2026-11-30",
                    "reason": "Installed and IQ complete.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(SiteEquipmentCreateSerializer, request))
        equipment = services.equipment_add(actor=request.user, reason=reason, **fields)  # type: ignore[arg-type]
        return Response(SiteEquipmentSerializer(equipment).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change equipment's name, qualification status or next due date",
        description="Only the fields you send change; `reason` is required. Control Site QA or "
        "the site's lead.",
        request=SiteEquipmentUpdateSerializer,
        responses={200: SiteEquipmentSerializer},
        examples=[
            OpenApiExample(
                "Fully qualified",
                value={
                    "qualification_status": "qualified",
                    "next_due": "2027-05-31",
                    "reason": "PQ report QR-2026-118 approved.",
                },
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        changes, reason = split_reason(validated_input(SiteEquipmentUpdateSerializer, request))
        equipment = self.get_object()
        updated = services.equipment_update(
            actor=request.user,  # type: ignore[arg-type]
            equipment=equipment,
            reason=reason,
            changes=changes,
        )
        return Response(SiteEquipmentSerializer(updated).data)


#
# Site audits
#


class SiteAuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Audits and self-inspections of the sites you can see, with their graded findings
    (SO-10). Newest first."""

    serializer_class = SiteAuditSerializer
    filterset_class = SiteAuditFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Any]:
        return selectors.site_audits_visible_to(self.request.user).prefetch_related("findings")

    def _fresh(self, audit_pk: int) -> dict[str, Any]:
        return dict(SiteAuditSerializer(self.get_queryset().get(pk=audit_pk)).data)

    @extend_schema(
        summary="Plan a site audit",
        description="Only Control Site QA.",
        request=SiteAuditCreateSerializer,
        responses={201: SiteAuditSerializer},
        examples=[
            OpenApiExample(
                "Annual audit",
                value={
                    "site": "LON1",
                    "title": "Annual GMP audit 2026",
                    "planned_for": "2026-09-14",
                    "lead_auditor": "J. Smith",
                    "reason": "Audit programme 2026.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(SiteAuditCreateSerializer, request))
        audit = services.site_audit_plan(actor=request.user, reason=reason, **fields)  # type: ignore[arg-type]
        return Response(self._fresh(audit.pk), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Record that a planned audit was done",
        description="Only Control Site QA; only a planned audit (409 `transition_not_allowed`); "
        "not in the future (400 `date_in_future`).",
        request=SiteAuditCompleteSerializer,
        responses={200: SiteAuditSerializer},
        examples=[
            OpenApiExample(
                "Done",
                value={
                    "done_on": "2026-09-15",
                    "summary": "Two minor findings; no critical or major.",
                    "reason": "Audit report SA-2026-04 issued.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def complete(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SiteAuditCompleteSerializer, request))
        audit = self.get_object()
        services.site_audit_complete(actor=request.user, audit=audit, reason=reason, **fields)  # type: ignore[arg-type]
        return Response(self._fresh(audit.pk))

    @extend_schema(
        summary="Record a graded finding",
        description="Only Control Site QA; not on a cancelled audit (409 `audit_cancelled`). "
        "A CAPA links to the finding by its `id`.",
        request=SiteAuditFindingCreateSerializer,
        responses={201: SiteAuditFindingSerializer},
        examples=[
            OpenApiExample(
                "A minor finding",
                value={
                    "grade": "minor",
                    "description": "Two cleaning log entries were not countersigned.",
                    "reason": "Audit SA-2026-04, observation 3.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def findings(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SiteAuditFindingCreateSerializer, request))
        audit = self.get_object()
        finding = services.audit_finding_add(
            actor=request.user,  # type: ignore[arg-type]
            audit=audit,
            reason=reason,
            **fields,
        )
        return Response(SiteAuditFindingSerializer(finding).data, status=status.HTTP_201_CREATED)


#
# The MHRA log
#


class RegulatoryNotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """What the Control Site must tell the MHRA, and whether it has (RP-03, RP-08). Opened by
    the lifecycle and by QP changes; QA, QPs and inspectors read it. Newest first."""

    serializer_class = RegulatoryNotificationSerializer
    filterset_class = RegulatoryNotificationFilter
    required_capability = Capability.VIEW_ALL_SITES
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Any]:
        return selectors.regulatory_notifications_visible_to(self.request.user)

    @extend_schema(
        summary="Record that a notification was sent",
        description="Only Control Site QA; once (409 `already_sent`); not in the future "
        "(400 `date_in_future`).",
        request=RegulatoryNotificationMarkSentSerializer,
        responses={200: RegulatoryNotificationSerializer},
        examples=[
            OpenApiExample(
                "Sent",
                value={
                    "sent_on": "2026-03-13",
                    "reference": "MHRA-CS-2026-0042",
                    "reason": "Notified through the MHRA portal.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], url_path="mark-sent")
    def mark_sent(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(
            validated_input(RegulatoryNotificationMarkSentSerializer, request)
        )
        notification = self.get_object()
        updated = services.regulatory_notification_mark_sent(
            actor=request.user,  # type: ignore[arg-type]
            notification=notification,
            reason=reason,
            **fields,
        )
        return Response(RegulatoryNotificationSerializer(updated).data)


#
# The Control Site
#


class ControlSiteViewSet(BaseViewSet):
    """The licence holder's record and the QPs named on the licence (SO-06, RP-08)."""

    serializer_class = ControlSiteSerializer
    pagination_class = None
    single_object = True
    queryset = ControlSite.objects.none()  # one record, read by the selector

    @extend_schema(
        summary="Read the Control Site record",
        description="The licence holder, its licence and the QPs named on it now. 404 "
        "`no_control_site` until QA has recorded it. Changes are made in the application.",
        responses={200: ControlSiteSerializer},
    )
    def list(self, request: Request) -> Response:
        control = selectors.control_site()
        if control is None:
            raise exceptions.NotFound(
                "The Control Site has not been recorded yet.", code="no_control_site"
            )
        qps = list(selectors.named_qps(control))
        return Response(ControlSiteSerializer(control, context={"named_qps": qps}).data)
