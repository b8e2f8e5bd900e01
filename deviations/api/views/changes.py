"""Change-control API: changes by number with their lifecycle as POST actions, and their
implementation tasks (issue 6 §4; design §6; DV-07…DV-09, MF-09).

The flow an integrator drives from this document alone:

1. `POST /change-controls/` proposes a draft (QA, or a site lead for their site);
   `PATCH /change-controls/{number}/` edits it while it is a draft;
2. `POST …/submit/` sends it for review;
3. `POST …/approve/` signs an approval — QA's, and a QP's as well when `regulatory` (see
   `approvals_due`); the last one makes it `approved` and, for a master-file change, opens the
   new master-file draft (`master_file_draft`); for a change to a site's status or the release
   process, an MHRA notification (`regulatory_notification`). Or `POST …/reject/`;
4. `POST …/tasks/` plans implementation tasks; `POST /change-tasks/{id}/complete/` records each
   done; `POST …/implement/` once every task is done (and the master-file version is in force);
5. `POST …/close/` with the post-implementation review, signed `reviewed`.

Every queryset comes from a `deviations.selectors.changes` visibility rule, so a change you may
not see is a 404, never a 403. Every write is one service call, which checks the role (403),
the lifecycle (409), the input (400) and the signature (422); views only parse and shape.
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
from deviations.api.filters.changes import ChangeControlFilter, ChangeTaskFilter
from deviations.api.serializers.changes import (
    CHANGE_NUMBER_PATTERN,
    ChangeApproveSerializer,
    ChangeCloseSerializer,
    ChangeControlDetailSerializer,
    ChangeControlSerializer,
    ChangeProposeSerializer,
    ChangeReasonSerializer,
    ChangeTaskAddSerializer,
    ChangeTaskCompleteSerializer,
    ChangeTaskSerializer,
    ChangeUpdateSerializer,
)
from deviations.api.views import ID_REGEX, _regex
from deviations.models import ChangeControl, ChangeTask
from deviations.selectors import changes as selectors
from deviations.services import changes as services

_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."
_NOT_VISIBLE = (
    " A change you may not see — another site's, a network-wide one if you are site staff, or "
    "any under a token limited to other sites — is 404 and nothing is written."
)
_STEP_NOTE = (
    " From any other status the step is 409 `transition_not_allowed`. The answer is the change "
    "as it now stands."
)
_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."
_IDEMPOTENT = (
    " Send an `Idempotency-Key` so a retry replays the first answer instead of writing twice; "
    "the same key with another body is 409."
)
_SIGNED_NOTE = (
    " Signed: send your `username`, `password`, `otp` (where your role needs the second "
    "factor — QPs), the `meaning` shown and a `reason`. A refused signature is 422 "
    "(`wrong_password`, `otp_required`, `otp_invalid`, `username_mismatch`, …), counts "
    "toward lockout and changes nothing."
)

_CHANGE_RELATED = (
    "site",
    "product",
    "created_by",
    "qa_signature",
    "qp_signature",
    "master_file_draft",
    "regulatory_notification__site",
    "regulatory_notification__sent_by",
)


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


def _tasks_prefetch() -> Prefetch[str, QuerySet[ChangeTask], str]:
    return Prefetch(
        "tasks", queryset=ChangeTask.objects.select_related("change", "owner", "done_by")
    )


def _change_detail(change: ChangeControl) -> dict[str, Any]:
    """The change as it stands after a write, read afresh."""
    fresh = (
        ChangeControl.objects.select_related(*_CHANGE_RELATED)
        .prefetch_related(_tasks_prefetch())
        .get(pk=change.pk)
    )
    context = {"today": timezone.localdate()}
    return dict(ChangeControlDetailSerializer(fresh, context=context).data)


def _task(task: ChangeTask) -> dict[str, Any]:
    fresh = ChangeTask.objects.select_related("change", "owner", "done_by").get(pk=task.pk)
    return dict(ChangeTaskSerializer(fresh, context={"today": timezone.localdate()}).data)


def _reason_example(reason: str) -> OpenApiExample:
    return OpenApiExample("With a reason", value={"reason": reason}, request_only=True)


def _signed_example(name: str, meaning: str, reason: str, **extra: Any) -> OpenApiExample:
    return OpenApiExample(
        name,
        value={
            **extra,
            "username": "quinn.adams",
            "password": "your-password",
            "meaning": meaning,
            "reason": reason,
        },
        request_only=True,
        description="Add `otp` (the 6-digit code) if your role needs a second factor.",
    )


class ChangeControlViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Change controls of the sites you can see, named by their number `CC-<year>-<NNNN>`
    (DV-07…DV-09): proposed by Control Site QA or a site lead, approved by QA's signature — and
    a QP's too when `regulatory` — implemented through tasks, closed after a signed
    post-implementation review. Newest first."""

    serializer_class = ChangeControlSerializer
    filterset_class = ChangeControlFilter
    lookup_field = "number"
    lookup_value_regex = _regex(CHANGE_NUMBER_PATTERN)
    ordering = "-id"

    def get_queryset(self) -> QuerySet[ChangeControl]:
        visible = selectors.changes_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            return visible.select_related(*_CHANGE_RELATED).prefetch_related(_tasks_prefetch())
        # Every write's service locks the row and reads it afresh.
        return visible.select_related("site")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return (
            ChangeControlDetailSerializer if self.action == "retrieve" else ChangeControlSerializer
        )

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        summary="List the change controls you can see",
        description="Control Site QA, QPs and inspectors see every change; site staff those of "
        "their sites (a site-limited token narrows them). Filter by `status`, `scope`, `site` "
        "(code), `product` (code) or `regulatory=true|false`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one change control",
        description="By number: what changes, its scopes and whether that makes it regulatory, "
        "its risk and regulatory impact, its status, the approvals given (`qa_signature`, "
        "`qp_signature`) and still due (`approvals_due`), the master-file draft and MHRA "
        "notification its approval set off, its tasks and the post-implementation review. "
        "The `ETag` header goes into `If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Propose a change (a draft)",
        description="What changes and why, its `scopes`, its risk (DV-07) and, when regulatory, "
        "its `regulatory_impact` (DV-09). `regulatory` is derived from the scopes; sending it "
        "is 400 `unknown_field`. A product or site you cannot see is 400 `unknown_product` / "
        "`unknown_site`. Control Site QA, or a site lead for a change at a site they lead (403 "
        "`permission_denied` otherwise, also for a site lead proposing a network-wide change)."
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=ChangeProposeSerializer,
        responses={201: ChangeControlDetailSerializer},
        examples=[
            OpenApiExample(
                "A master-file change",
                value={
                    "title": "Add a second wash to the process description",
                    "description": "Section 6 gains a second wash after thaw.",
                    "scopes": ["master_file"],
                    "product": "CART-01",
                    "risk_level": "medium",
                    "risk_assessment": "Lower residual DMSO; no effect on viability in PQ.",
                    "regulatory_impact": "Variation of the POC master file; notify the MHRA.",
                    "reason": "Change proposed after the annual review.",
                },
                request_only=True,
            ),
            OpenApiExample(
                "An equipment change at a site",
                value={
                    "title": "Dry thawer instead of the water bath",
                    "description": "Replace water bath 1 with a dry thawing device.",
                    "scopes": ["equipment"],
                    "site": "LDS1",
                    "risk_level": "low",
                    "risk_assessment": "Equivalent thaw profile; lower contamination risk.",
                    "reason": "Bath 1 is at end of life.",
                },
                request_only=True,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(ChangeProposeSerializer, request))
        change = services.change_propose(
            actor=_actor(request),
            reason=reason,
            title=fields["title"],
            description=fields["description"],
            scopes=fields["scopes"],
            product=fields.get("product"),
            site=fields.get("site"),
            risk_level=fields["risk_level"],
            risk_assessment=fields["risk_assessment"],
            regulatory_impact=fields.get("regulatory_impact", ""),
        )
        return Response(
            _change_detail(change),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:change-control-detail", args=[change.number])},
        )

    @extend_schema(
        summary="Edit the draft",
        description="Send the fields that change and a reason (400 `nothing_to_change` with "
        "none); the result is checked as a whole, as when proposed, and `regulatory` follows "
        "the scopes again. Only a draft (409 `change_not_draft`); whoever proposed it, or "
        "Control Site QA (403 `permission_denied` otherwise). `status` and `regulatory` are "
        "400 `unknown_field`." + _NOT_VISIBLE,
        request=ChangeUpdateSerializer,
        responses={200: ChangeControlDetailSerializer},
        examples=[
            OpenApiExample(
                "It also touches the release process",
                value={
                    "scopes": ["equipment", "release_process"],
                    "regulatory_impact": "The release process description changes.",
                    "reason": "Scope widened at review.",
                },
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, number: str | None = None) -> Response:
        changes, reason = split_reason(validated_input(ChangeUpdateSerializer, request))
        change = self.get_object()
        services.change_update(actor=_actor(request), change=change, reason=reason, changes=changes)
        return Response(_change_detail(change))

    @extend_schema(
        summary="Submit for review (draft → in review)",
        description="QA is told, and the QPs too when the change is regulatory. Whoever "
        "proposed it, or Control Site QA (403 `permission_denied` otherwise)."
        + _STEP_NOTE
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=ChangeReasonSerializer,
        responses={200: ChangeControlDetailSerializer},
        examples=[_reason_example("Ready for approval.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def submit(self, request: Request, number: str | None = None) -> Response:
        reason = validated_input(ChangeReasonSerializer, request).validated_data["reason"]
        change = self.get_object()
        services.change_submit(actor=_actor(request), change=change, reason=reason)
        return Response(_change_detail(change))

    @extend_schema(
        summary="Sign an approval (in review → approved once every signature is in)",
        description="Control Site QA signs, meaning `approved`; a regulatory change needs a QP's "
        "signature as well, in either order (`approvals_due` says whose is still due). The "
        "change is `approved` when the last required signature is in. The same person never "
        "gives both (409 `same_signer`); nobody signs twice, and an approval already given "
        "by another is not given again (409 `already_signed`). A QP on a non-regulatory "
        "change, and anyone else, is 403 `permission_denied`. When the change becomes "
        "approved: a change touching the master file opens exactly one new master-file "
        "draft (`master_file_draft`) — refused with 409 `version_open`, nothing signed, "
        "while another version of that master file is on its way; a change touching a site's "
        "status or the release process opens one MHRA notification "
        "(`regulatory_notification`). A retry never opens a second of either."
        + _SIGNED_NOTE
        + _STEP_NOTE
        + _NOT_VISIBLE,
        request=ChangeApproveSerializer,
        responses={200: ChangeControlDetailSerializer},
        examples=[_signed_example("Approved", "approved", "Risk acceptable; impact assessed.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def approve(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(ChangeApproveSerializer, request)
        change = self.get_object()
        services.change_approve(
            actor=_actor(request),
            change=change,
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_change_detail(change))

    @extend_schema(
        summary="Reject (in review → rejected)",
        description="The reason is kept as `rejection_reason`; the proposer is told. Control "
        "Site QA or a QP (403 `permission_denied` otherwise)."
        + _STEP_NOTE
        + _NOT_VISIBLE
        + _REASON_NOTE,
        request=ChangeReasonSerializer,
        responses={200: ChangeControlDetailSerializer},
        examples=[_reason_example("The risk assessment does not cover sterility.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def reject(self, request: Request, number: str | None = None) -> Response:
        reason = validated_input(ChangeReasonSerializer, request).validated_data["reason"]
        change = self.get_object()
        services.change_reject(actor=_actor(request), change=change, reason=reason)
        return Response(_change_detail(change))

    @extend_schema(
        summary="Add an implementation task",
        description="To an approved change (409 `change_not_approved`), with an active `owner` "
        "(username; 400 `unknown_user`) who may act on it — QA, a QP or staff who may see the "
        "change's site (400 `owner_not_eligible`) — and a `due_on` not in the past (400 "
        "`date_in_past`). The owner is told. The answer is the task."
        + _QA_ONLY
        + _NOT_VISIBLE
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=ChangeTaskAddSerializer,
        responses={201: ChangeTaskSerializer},
        examples=[
            OpenApiExample(
                "Install and qualify",
                value={
                    "description": "Install and qualify the dry thawer (IQ/OQ).",
                    "owner": "sam.lee",
                    "due_on": "2026-12-10",
                    "reason": "Implementation plan.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], url_path="tasks", url_name="tasks", filterset_class=None)
    def add_task(self, request: Request, number: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(ChangeTaskAddSerializer, request))
        change = self.get_object()
        task = services.change_task_add(
            actor=_actor(request),
            change=change,
            description=fields["description"],
            owner=fields["owner"],
            due_on=fields["due_on"],
            reason=reason,
        )
        return Response(
            _task(task),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:change-task-detail", args=[task.pk])},
        )

    @extend_schema(
        summary="Record as implemented (approved → implemented)",
        description="Once every task is done (409 `tasks_open`) and, for a master-file change, "
        "once the master-file version it opened is effective (409 "
        "`master_file_not_effective`)." + _STEP_NOTE + _QA_ONLY + _NOT_VISIBLE + _REASON_NOTE,
        request=ChangeReasonSerializer,
        responses={200: ChangeControlDetailSerializer},
        examples=[_reason_example("Dry thawer in routine use since 1 December.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def implement(self, request: Request, number: str | None = None) -> Response:
        reason = validated_input(ChangeReasonSerializer, request).validated_data["reason"]
        change = self.get_object()
        services.change_implement(actor=_actor(request), change=change, reason=reason)
        return Response(_change_detail(change))

    @extend_schema(
        summary="Close with the post-implementation review, signed (implemented → closed)",
        description="Send the `review` — did the change do what was intended, without "
        "unintended effects? (400 `review_required` when blank; DV-07) — signed by Control "
        "Site QA with the meaning `reviewed` (`review_signature` in the answer)."
        + _SIGNED_NOTE
        + _STEP_NOTE
        + _QA_ONLY
        + _NOT_VISIBLE,
        request=ChangeCloseSerializer,
        responses={200: ChangeControlDetailSerializer},
        examples=[
            _signed_example(
                "Reviewed",
                "reviewed",
                "Post-implementation review.",
                review="Thaw times equivalent over 20 batches; no deviations.",
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def close(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(ChangeCloseSerializer, request)
        change = self.get_object()
        services.change_close(
            actor=_actor(request),
            change=change,
            review=signed.validated_data["review"],
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_change_detail(change))


class ChangeTaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Implementation tasks of the changes you can see, each with its owner and due date
    (DV-07). Newest first."""

    serializer_class = ChangeTaskSerializer
    filterset_class = ChangeTaskFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[ChangeTask]:
        return selectors.change_tasks_visible_to(self.request.user).select_related(
            "change", "owner", "done_by"
        )

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        summary="List the change tasks you can see",
        description="Those of the changes you can see. Filter by `change` (number), `status`, "
        "`owner` (username) or `overdue=true|false`: `?owner=<you>&status=open` is your "
        "to-do list. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Read one change task")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Record it done (open → done)",
        description="Its owner or Control Site QA (403 `permission_denied` otherwise) records "
        "it done, saying what was done in `reason`. 409 `task_done` for a task already done, "
        "`change_not_approved` once the change has left `approved`. A task of a change you "
        "may not see is 404 and nothing is written.",
        request=ChangeTaskCompleteSerializer,
        responses={200: ChangeTaskSerializer},
        examples=[_reason_example("Installed; IQ/OQ passed.")],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def complete(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(ChangeTaskCompleteSerializer, request).validated_data["reason"]
        task = self.get_object()
        done = services.change_task_complete(actor=_actor(request), task=task, reason=reason)
        return Response(_task(done))
