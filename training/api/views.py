"""Training API: procedures and their versions (with the file), training items, curricula,
assignments, records with the three ways of completing one, the qualification question and the
training matrix (issue 7; design §6; TR-01…TR-07).

Every queryset comes from a `training.selectors` visibility rule, so a record you may not see is
a 404, never a 403: a site operator sees their own training, a site lead that of the people at
the sites they lead, QA, trainers, QPs and inspectors everyone's. Every write is one
`training.services` call, which checks the role (403), the state (409), the dates and text (400)
and the signature (422); views only parse input and shape output. A write parses its body
before it fetches the record, so a malformed body is a 400 whatever the record or `If-Match`
says. `Idempotency-Key` on any POST makes an integrator's retry replay the first answer.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import posixpath
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db.models import Prefetch, Q, QuerySet
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, parsers, renderers, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from controlsite.accounts.models import User
from controlsite.accounts.scope import token_site_limit
from controlsite.api.base import BaseViewSet, split_reason, validated_input
from controlsite.api.parsers import PayloadTooLargeError
from controlsite.api.schema import ProblemSerializer
from controlsite.errors import ApplicationError, ConflictError, PermissionRefusedError
from sites.models import Site
from sites.selectors import live_memberships, sites_visible_to
from training import selectors, services
from training.api.filters import (
    AssignmentFilter,
    CurriculumFilter,
    ProcedureFilter,
    ProcedureVersionFilter,
    TrainingItemFilter,
    TrainingRecordFilter,
)
from training.api.serializers import (
    AcknowledgeSerializer,
    AssessSerializer,
    AssignmentCreateSerializer,
    AssignmentSerializer,
    AwareDateTimeInputField,
    CurriculumCreateSerializer,
    CurriculumDetailSerializer,
    CurriculumSerializer,
    ProcedureCreateSerializer,
    ProcedureDetailSerializer,
    ProcedureSerializer,
    ProcedureVersionIssueSerializer,
    ProcedureVersionSerializer,
    QualificationQuerySerializer,
    QualificationSerializer,
    RecordEnterSerializer,
    RequirementChangeSerializer,
    SiteComplianceSerializer,
    TrainingItemCreateSerializer,
    TrainingItemSerializer,
    TrainingItemUpdateSerializer,
    TrainingMatrixSerializer,
    TrainingRecordSerializer,
    matrix_data,
    nameable_sites,
    qualification_data,
)
from training.choices import SITE_HELD_ROLES, VersionStatus
from training.models import (
    Assignment,
    Curriculum,
    Procedure,
    ProcedureVersion,
    Requirement,
    TrainingItem,
    TrainingRecord,
)

ID_REGEX = r"[0-9]{1,18}"
SITE_CODE_REGEX = r"[A-Z0-9]{2,8}"

_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."
_TRAINERS_ONLY = " Control Site QA or a trainer (403 `not_permitted` otherwise)."
_QA_ONLY = " Only Control Site QA (403 `not_permitted` otherwise)."
_IDEMPOTENT = (
    " Send an `Idempotency-Key` so a retry replays the first answer instead of writing twice; "
    "the same key with another body is 409."
)
_SIGNED = (
    " Signed: send your `username`, `password`, `otp` (where your role needs the second "
    "factor), `meaning` = `{meaning}` and a `reason`. A refused signature is 422 "
    "(`wrong_password`, `otp_required`, `username_mismatch`, `training_required` before the "
    "accountability item, ...) and writes nothing."
)


def _signed(meaning: str) -> str:
    return _SIGNED.format(meaning=meaning)


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


def _signed_example(meaning: str, reason: str, **fields: Any) -> OpenApiExample:
    return OpenApiExample(
        f"Signed ({meaning})",
        value={
            **fields,
            "username": "tess.turner",
            "password": "your-password",
            "meaning": meaning,
            "reason": reason,
        },
        request_only=True,
        description="Add `otp` (the 6-digit code) if your role needs a second factor.",
    )


#
# Uploads and downloads
#


class BoundedMultiPartParser(parsers.MultiPartParser):
    """A procedure's file, refused before it is read when the body is larger than the file
    limit allows (the service checks the file itself: type, size, not empty)."""

    # Room for the signature and text fields beside the file.
    FIELDS_ALLOWANCE = 64 * 1024

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = settings.SITE_EVIDENCE_MAX_BYTES + self.FIELDS_ALLOWANCE
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")
        return super().parse(stream, media_type, parser_context)


class AnyFileRenderer(renderers.BaseRenderer):
    """Lets a client ask for the file's own type (`application/pdf`, ...): the file is
    streamed as it is, and a problem (404, 409) is still JSON."""

    media_type = "*/*"
    format = "file"
    charset = None
    render_style = "binary"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return renderers.JSONRenderer().render(data)


#
# Procedures (TR-03)
#


def _live_versions() -> Prefetch[str, QuerySet[ProcedureVersion], str]:
    return Prefetch(
        "versions",
        queryset=ProcedureVersion.objects.filter(
            status__in=[VersionStatus.ISSUED, VersionStatus.EFFECTIVE]
        ).order_by("number"),
        to_attr="live_versions",
    )


def _all_versions() -> Prefetch[str, QuerySet[ProcedureVersion], str]:
    return Prefetch("versions", queryset=ProcedureVersion.objects.order_by("-number"))


def _procedure_detail(procedure: Procedure) -> dict[str, Any]:
    fresh = (
        Procedure.objects.select_related("training_item")
        .prefetch_related(_live_versions(), _all_versions())
        .get(pk=procedure.pk)
    )
    return dict(ProcedureDetailSerializer(fresh).data)


def _version_detail(request: Request, version: ProcedureVersion) -> dict[str, Any]:
    fresh = ProcedureVersion.objects.select_related(
        "procedure", "approval_signature", "created_by"
    ).get(pk=version.pk)
    return dict(ProcedureVersionSerializer(fresh, context={"request": request}).data)


class ProcedureViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """The register of controlled procedures (SOPs), each with its read-and-understood
    training item, the version in force and the one coming (TR-03). Ordered by number."""

    serializer_class = ProcedureSerializer
    filterset_class = ProcedureFilter
    lookup_value_regex = ID_REGEX
    ordering = "number"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            super().initial(request, *args, **kwargs)
        except RequestDataTooBig as exc:
            # The Idempotency-Key hashes the raw body, which Django reads into memory only up
            # to DATA_UPLOAD_MAX_MEMORY_SIZE: say so with the stable code.
            raise PayloadTooLargeError(
                "With an Idempotency-Key the whole body must fit the in-memory request limit; "
                "send a larger file without the key."
            ) from exc

    def get_queryset(self) -> QuerySet[Procedure]:
        qs = selectors.procedures_visible_to(self.request.user).select_related("training_item")
        if self.action == "list":
            return qs.prefetch_related(_live_versions())
        if self.action == "retrieve":
            return qs.prefetch_related(_live_versions(), _all_versions())
        return qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return ProcedureDetailSerializer if self.action == "retrieve" else ProcedureSerializer

    @extend_schema(
        summary="List the procedures",
        description="Everyone with API access reads the register: staff must find their SOPs. "
        "Filter by `number` or `q` (part of the number or title). Ordered by number.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one procedure",
        description="With every version it has had, newest first. The `ETag` header goes into "
        "`If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Register a procedure",
        description="With its read-and-understood training item, whose code is the procedure's "
        "number (upper-cased). A number already used by a procedure or an item is 409 "
        "`duplicate_number`. Issue its first version with `versions/`."
        + _QA_ONLY
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=ProcedureCreateSerializer,
        responses={201: ProcedureDetailSerializer},
        examples=[
            OpenApiExample(
                "Aseptic filling",
                value={
                    "number": "SOP-MFG-001",
                    "title": "Aseptic filling",
                    "due_days": 14,
                    "reason": "New SOP for the cell therapy line.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(ProcedureCreateSerializer, request))
        procedure = services.procedure_create(actor=_actor(request), reason=reason, **fields)
        return Response(
            _procedure_detail(procedure),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:procedure-detail", args=[procedure.pk])},
        )

    @extend_schema(
        summary="Issue the next version (multipart)",
        description="Upload the file with its `effective_on` date and `change_summary` as "
        "`multipart/form-data`. On its effective date (at once for today) it comes into force "
        "and the version before is superseded; everyone whose curriculum needs the procedure "
        "is assigned to read it, due by then (TR-03). 409 `version_pending` while an issued "
        "version is not yet in force; 400 `effective_in_past`, `evidence_type`, "
        "`evidence_too_large`, `evidence_empty`; 413 for a body over the file limit."
        + _QA_ONLY
        + _signed("approved")
        + " Retrying with an `Idempotency-Key` replays the first answer when the body is sent "
        "byte for byte again (the same multipart boundary); with the key the whole body must "
        "fit the server's in-memory request limit (1 MB by default, 413 otherwise) — send a "
        "larger file without it.",
        request={"multipart/form-data": ProcedureVersionIssueSerializer},
        responses={201: ProcedureVersionSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        parser_classes=[BoundedMultiPartParser],
        filterset_class=None,
    )
    def versions(self, request: Request, pk: str | None = None) -> Response:
        signed = validated_input(ProcedureVersionIssueSerializer, request)
        fields = signed.validated_data
        procedure = self.get_object()
        version = services.procedure_version_issue(
            actor=_actor(request),
            procedure=procedure,
            effective_on=fields["effective_on"],
            change_summary=fields["change_summary"],
            upload=fields["file"],
            credentials=signed.credentials(),
            reason=fields["reason"],
        )
        return Response(
            _version_detail(request, version),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:procedure-version-detail", args=[version.pk])},
        )


class ProcedureVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Every issued version of every procedure, with its file and QA's approval signature
    (TR-03). Newest first."""

    serializer_class = ProcedureVersionSerializer
    filterset_class = ProcedureVersionFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[ProcedureVersion]:
        return ProcedureVersion.objects.filter(
            procedure__in=selectors.procedures_visible_to(self.request.user)
        ).select_related("procedure", "approval_signature", "created_by")

    @extend_schema(
        summary="List the procedure versions",
        description="Filter by `procedure` (its number) or `status` (`issued`: coming into "
        "force; `effective`: in force now; `superseded`). Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one procedure version",
        description="When it is (or was) in force, what changed, the file's SHA-256 and "
        "download URL, and QA's approval signature with whether it is still valid.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Download the version's file",
        description="The file as issued, streamed. Its SHA-256 is in the `X-Content-SHA256` "
        "header as well as in the version's `file_sha256`; 409 `file_mismatch` if the stored "
        "file no longer matches it (DI-07), 409 `file_missing` if it cannot be read.",
        responses={
            (200, "*/*"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The file (PDF, Word, ...)."
            ),
            (409, "application/problem+json"): OpenApiResponse(
                response=ProblemSerializer, description="application/problem+json"
            ),
        },
        parameters=[
            OpenApiParameter(
                name="X-Content-SHA256",
                location=OpenApiParameter.HEADER,
                type=str,
                response=[200],
                description="SHA-256 of the file, hex.",
            )
        ],
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, AnyFileRenderer],
        filterset_class=None,
    )
    def file(self, request: Request, pk: str | None = None) -> FileResponse:
        version = self.get_object()
        stored = selectors.version_file_checked(version)
        name = posixpath.basename(stored)
        response = FileResponse(
            version.file.storage.open(stored, "rb"),
            as_attachment=True,
            filename=name,
            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
        )
        response["X-Content-SHA256"] = version.file_sha256
        response["Cache-Control"] = "private, no-store"
        return response


#
# Training items (TR-01, TR-04, TR-07)
#


class TrainingItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """What people must hold to be qualified: the GxP induction, the yearly refresher, the
    data-integrity and e-signature accountability item, each SOP's read-and-understood and
    practical assessments. Ordered by code."""

    serializer_class = TrainingItemSerializer
    filterset_class = TrainingItemFilter
    lookup_value_regex = ID_REGEX
    ordering = "code"

    def get_queryset(self) -> QuerySet[TrainingItem]:
        return selectors.items_visible_to(self.request.user)

    @extend_schema(
        summary="List the training items",
        description="Everyone with API access reads them. Filter by `code`, `kind` or "
        "`active`. Ordered by code.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one training item",
        description="The `ETag` header goes into `If-Match` on your next change.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Define a training item",
        description="An induction, refresher, accountability item or practical assessment; an "
        "SOP's item comes with its procedure (400 `sop_item_from_procedure`). A code already "
        "used is 409 `duplicate_code`; a second accountability item is 409 "
        "`accountability_exists`." + _TRAINERS_ONLY + _REASON_NOTE + _IDEMPOTENT,
        request=TrainingItemCreateSerializer,
        responses={201: TrainingItemSerializer},
        examples=[
            OpenApiExample(
                "A practical assessment",
                value={
                    "code": "PA-ASEPTIC",
                    "title": "Aseptic technique, observed",
                    "kind": "assessment",
                    "validity_months": 24,
                    "reason": "Media fill observation required by SOP-MFG-001.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(TrainingItemCreateSerializer, request))
        item = services.item_create(actor=_actor(request), reason=reason, **fields)
        fresh = selectors.items_visible_to(request.user).get(pk=item.pk)
        return Response(
            TrainingItemSerializer(fresh).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:training-item-detail", args=[item.pk])},
        )

    @extend_schema(
        summary="Change a training item",
        description="Only the fields you send change (400 `nothing_to_change` with none); the "
        "code and kind never change (400 `unknown_field`). A new validity applies to "
        "completions from now on. `active: false` retires the item: it leaves every curriculum "
        "and its open assignments are withdrawn; the accountability item cannot be retired "
        "(409 `accountability_required`). Send the `ETag` you read as `If-Match` to be "
        "refused (412) if someone changed it since." + _TRAINERS_ONLY + _REASON_NOTE,
        request=TrainingItemUpdateSerializer,
        responses={200: TrainingItemSerializer},
        examples=[
            OpenApiExample(
                "Two-year validity",
                value={"validity_months": 24, "reason": "Assessment validity set by CC-2026-012."},
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        changes, reason = split_reason(validated_input(TrainingItemUpdateSerializer, request))
        item = self.get_object()
        services.item_update(actor=_actor(request), item=item, reason=reason, changes=changes)
        fresh = selectors.items_visible_to(request.user).get(pk=item.pk)
        return Response(TrainingItemSerializer(fresh).data)


#
# Curricula (TR-05)
#


def _requirements_prefetch() -> Prefetch[str, QuerySet[Requirement], str]:
    return Prefetch(
        "requirements",
        queryset=Requirement.objects.select_related("item").order_by("item__code", "id"),
        to_attr="all_requirements",
    )


def _curriculum_detail(curriculum: Curriculum) -> dict[str, Any]:
    fresh = (
        Curriculum.objects.select_related("site")
        .prefetch_related(_requirements_prefetch())
        .get(pk=curriculum.pk)
    )
    return dict(CurriculumDetailSerializer(fresh).data)


class CurriculumViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """What each role needs at one site, or at every site (TR-05). Requirements are never
    deleted, only removed at a time, so "what did this role need on that day?" keeps its
    answer."""

    serializer_class = CurriculumSerializer
    filterset_class = CurriculumFilter
    lookup_value_regex = ID_REGEX
    ordering = "id"

    def get_queryset(self) -> QuerySet[Curriculum]:
        qs = selectors.curricula_visible_to(self.request.user)
        if self.action in {"list", "retrieve"}:
            return qs.prefetch_related(_requirements_prefetch())
        return qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return CurriculumDetailSerializer if self.action == "retrieve" else CurriculumSerializer

    @extend_schema(
        summary="List the curricula you can see",
        description="QA and trainers see every curriculum; others those for every site and "
        "for the sites they can see. Filter by `role`, `site`, `everywhere` or `item` (only "
        "curricula requiring it now).",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one curriculum",
        description="Its items now, and those it required once and no longer does.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Create a curriculum",
        description="For a role at one site (its code) or at every site (`site` omitted or "
        "null); one per role and site (409 `duplicate_curriculum`). Add its items with "
        "`add-requirement/`." + _TRAINERS_ONLY + _REASON_NOTE + _IDEMPOTENT,
        request=CurriculumCreateSerializer,
        responses={201: CurriculumDetailSerializer},
        examples=[
            OpenApiExample(
                "Operators at LDS1",
                value={
                    "role": "site_operator",
                    "site": "LDS1",
                    "title": "LDS1 operator curriculum",
                    "reason": "Site onboarding.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(CurriculumCreateSerializer, request))
        curriculum = services.curriculum_create(
            actor=_actor(request),
            role=fields["role"],
            site=fields.get("site"),
            title=fields["title"],
            reason=reason,
        )
        return Response(
            _curriculum_detail(curriculum),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:curriculum-detail", args=[curriculum.pk])},
        )

    @extend_schema(
        summary="Add an item",
        description="Everyone holding the role there is assigned the item at once (TR-03). "
        "409 `already_required`, `item_retired`; 400 `unknown_item`. The answer is the "
        "curriculum as it now stands." + _TRAINERS_ONLY + _REASON_NOTE,
        request=RequirementChangeSerializer,
        responses={200: CurriculumDetailSerializer},
        examples=[
            OpenApiExample(
                "The aseptic SOP",
                value={"item": "SOP-MFG-001", "reason": "Operators fill aseptically."},
                request_only=True,
            )
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="add-requirement",
        url_name="add-requirement",
        filterset_class=None,
    )
    def add_requirement(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(RequirementChangeSerializer, request))
        curriculum = self.get_object()
        services.requirement_add(
            actor=_actor(request), curriculum=curriculum, item=fields["item"], reason=reason
        )
        return Response(_curriculum_detail(curriculum))

    @extend_schema(
        summary="Remove an item",
        description="From now on; the requirement is kept with the time it was removed, and "
        "open assignments no longer needed are withdrawn. 409 `not_required` for an item the "
        "curriculum does not require now." + _TRAINERS_ONLY + _REASON_NOTE,
        request=RequirementChangeSerializer,
        responses={200: CurriculumDetailSerializer},
        examples=[
            OpenApiExample(
                "No longer needed",
                value={"item": "SOP-MFG-001", "reason": "Filling moved to the Control Site."},
                request_only=True,
            )
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="remove-requirement",
        url_name="remove-requirement",
        filterset_class=None,
    )
    def remove_requirement(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(RequirementChangeSerializer, request))
        curriculum = self.get_object()
        actor = _actor(request)
        if not selectors.manages_training(actor):
            # Said before the lookup, so the answer does not depend on what the curriculum holds.
            raise PermissionRefusedError(
                "Only Control Site QA or a trainer may change curricula.", code="not_permitted"
            )
        requirement = Requirement.objects.filter(
            curriculum=curriculum, item=fields["item"], removed_at__isnull=True
        ).first()
        if requirement is None:
            raise ConflictError(
                f"{fields['item'].code} is not required by {curriculum}.", code="not_required"
            )
        services.requirement_remove(actor=actor, requirement=requirement, reason=reason)
        return Response(_curriculum_detail(curriculum))


#
# Assignments (TR-03)
#


class AssignmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Training people are asked to complete by a date: made when someone joins a site or is
    given a role, when a curriculum or a procedure changes, or by a trainer (TR-03). Newest
    first."""

    serializer_class = AssignmentSerializer
    filterset_class = AssignmentFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Assignment]:
        return selectors.assignments_visible_to(self.request.user)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "today": timezone.localdate()}

    @extend_schema(
        summary="List the assignments you can see",
        description="Your own; a site lead's also those of the people at the sites they lead; "
        "QA, trainers, QPs and inspectors everyone's. Filter by `user`, `item`, `site`, "
        "`status`, `cause` or `overdue=true`: `?user=<you>&status=open` is your to-do list.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(summary="Read one assignment")
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Assign training",
        description="By hand — retraining after a deviation, say — to an active user (400 "
        "`unknown_user`), due today or later (400 `due_in_past`). An SOP is assigned on its "
        "newest readable version (409 `no_version` before one is issued). 409 "
        "`already_assigned` when the person has the item open; 409 `item_retired`."
        + _TRAINERS_ONLY
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=AssignmentCreateSerializer,
        responses={201: AssignmentSerializer},
        examples=[
            OpenApiExample(
                "Retraining",
                value={
                    "user": "omar.okafor",
                    "item": "SOP-MFG-001",
                    "due_on": "2026-12-15",
                    "site": "LDS1",
                    "reason": "Retraining after DEV-2026-0007.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(AssignmentCreateSerializer, request))
        assignment = services.assignment_create(
            actor=_actor(request),
            user=fields["user"],
            item=fields["item"],
            due_on=fields["due_on"],
            site=fields.get("site"),
            reason=reason,
        )
        fresh = Assignment.objects.select_related(
            "user", "item", "procedure_version__procedure", "site", "record"
        ).get(pk=assignment.pk)
        return Response(
            AssignmentSerializer(fresh, context={"today": timezone.localdate()}).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:training-assignment-detail", args=[fresh.pk])},
        )


#
# Records (TR-01, TR-05, TR-07)
#


def _record_created(record: TrainingRecord) -> Response:
    fresh = TrainingRecord.objects.select_related(
        "user", "item", "procedure_version__procedure", "trainer", "signature"
    ).get(pk=record.pk)
    return Response(
        TrainingRecordSerializer(fresh).data,
        status=status.HTTP_201_CREATED,
        headers={"Location": reverse("api:training-record-detail", args=[record.pk])},
    )


class TrainingRecordViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Signed proof of training, never changed: acknowledged by the trainee, assessed by a
    trainer, or entered from paper by a trainer (TR-01, TR-05, TR-07). Newest first."""

    serializer_class = TrainingRecordSerializer
    filterset_class = TrainingRecordFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[TrainingRecord]:
        return selectors.records_visible_to(self.request.user)

    @extend_schema(
        summary="List the training records you can see",
        description="Your own; a site lead's also those of the people at the sites they lead; "
        "QA, trainers, QPs and inspectors everyone's. Filter by `user`, `item`, `trainer`, "
        "`method`, `completed_after` or `completed_before`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one training record",
        description="With its signature and whether the record still has the content signed.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Sign an item as read and understood (yourself)",
        description="You sign that you have read and understood the item — the induction, the "
        "refresher, the accountability policy (21 CFR 11.10(j)) or an SOP, naming the "
        "`version` you read. A superseded version is 409 `version_superseded` and nothing is "
        "written; an item completed by assessment is 400 `assessment_required`; a retired one "
        "409 `item_retired`. Your open assignment for it is completed."
        + _signed("acknowledged")
        + _IDEMPOTENT,
        request=AcknowledgeSerializer,
        responses={201: TrainingRecordSerializer},
        examples=[
            _signed_example("acknowledged", "Read and understood.", item="SOP-MFG-001", version=2)
        ],
    )
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def acknowledge(self, request: Request) -> Response:
        signed = validated_input(AcknowledgeSerializer, request)
        fields = signed.validated_data
        record = services.acknowledge(
            actor=_actor(request),
            item=fields["item"],
            version=fields["version"],
            credentials=signed.credentials(),
            reason=fields["reason"],
        )
        return _record_created(record)

    @extend_schema(
        summary="Sign a trainee's practical assessment",
        description="A trainer records the `result` (400 `result_required` without one; "
        "`not_yet_competent` is recorded and keeps the trainee's assignment open). Never of "
        "yourself: 422 `self_assessment` and nothing is written. An item the trainee "
        "acknowledges themselves is 400 `acknowledgement_required`."
        + _TRAINERS_ONLY
        + _signed("reviewed")
        + _IDEMPOTENT,
        request=AssessSerializer,
        responses={201: TrainingRecordSerializer},
        examples=[
            _signed_example(
                "reviewed",
                "Observed a full media fill.",
                trainee="omar.okafor",
                item="PA-ASEPTIC",
                result="competent",
                notes="No interventions needed.",
            )
        ],
    )
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def assess(self, request: Request) -> Response:
        signed = validated_input(AssessSerializer, request)
        fields = signed.validated_data
        record = services.assessment_record(
            actor=_actor(request),
            trainee=fields["trainee"],
            item=fields["item"],
            result=fields.get("result", ""),
            notes=fields.get("notes", ""),
            credentials=signed.credentials(),
            reason=fields["reason"],
        )
        return _record_created(record)

    @extend_schema(
        summary="Enter a completed paper record",
        description="A trainer enters training done on paper — a classroom session, a record "
        "from before the system — with the day it was done (400 `completed_in_future`); "
        "expiry counts from that day. For an SOP name the `version` read, which may since "
        "have been superseded. Never of yourself: 422 `self_assessment`."
        + _TRAINERS_ONLY
        + _signed("verified")
        + _IDEMPOTENT,
        request=RecordEnterSerializer,
        responses={201: TrainingRecordSerializer},
        examples=[
            _signed_example(
                "verified",
                "Classroom attendance sheet.",
                trainee="omar.okafor",
                item="GXP-IND",
                completed_on="2026-01-12",
                notes="Induction day, attendance sheet TR-2026-003.",
            )
        ],
    )
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def enter(self, request: Request) -> Response:
        signed = validated_input(RecordEnterSerializer, request)
        fields = signed.validated_data
        record = services.record_enter(
            actor=_actor(request),
            trainee=fields["trainee"],
            item=fields["item"],
            completed_on=fields["completed_on"],
            version=fields["version"],
            notes=fields["notes"],
            credentials=signed.credentials(),
            reason=fields["reason"],
        )
        return _record_created(record)


#
# Qualification (TR-02)
#


def people_visible_to(viewer: User) -> QuerySet[User]:
    """People whose training this person may read: everyone for QA, trainers, QPs and
    inspectors; themselves and the people at the sites they lead for anyone else (a token
    limited to some sites narrows the sites led)."""
    if selectors.sees_all_training(viewer):
        return User.objects.all()
    led = live_memberships().filter(
        site_id__in=selectors.led_site_ids(viewer), site__in=sites_visible_to(viewer)
    )
    return User.objects.filter(Q(pk=viewer.pk) | Q(pk__in=led.values("user_id")))


class QualificationViewSet(BaseViewSet):
    """Is this person qualified for this role (at this site) at this moment? (TR-02)"""

    serializer_class = QualificationSerializer
    pagination_class = None
    filter_backends: list[Any] = []
    single_object = True
    queryset = User.objects.none()  # nothing is listed; the schema generator wants a model

    @extend_schema(
        summary="Ask whether a person is qualified",
        description="The answer the batch app gets before a step sign-off and the release gate "
        "for every signature: every item the role needs at the site — each current and on "
        "the version of its procedure in force then — and the data-integrity and "
        "e-signature accountability item (TR-02, TR-04, TR-07). `gaps` names each item "
        "missing or expired. Ask about yourself; a site lead about the people at the sites "
        "they lead; QA, trainers, QPs and inspectors about anyone. A person you may not ask "
        "about is 400 `unknown_user`, a site you cannot see 400 `unknown_site`; a site role "
        "without `site` is 400 `site_required`.",
        parameters=[QualificationQuerySerializer],
        responses={200: QualificationSerializer},
    )
    def list(self, request: Request) -> Response:
        query = QualificationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        asked = query.validated_data
        viewer = _actor(request)
        person = people_visible_to(viewer).filter(username=asked["user"]).first()
        if person is None:
            raise ApplicationError(
                "No such person, or not one whose training you can see.", code="unknown_user"
            )
        site: Site | None = None
        if asked.get("site"):
            site = nameable_sites(viewer).filter(code=asked["site"]).first()
            if site is None:
                raise ApplicationError(
                    "No such site (or not one you can see).", code="unknown_site"
                )
        elif asked["role"] in SITE_HELD_ROLES:
            raise ApplicationError(
                "A site role is held at a site: give `site`.", code="site_required"
            )
        verdict = selectors.user_is_qualified(person, site, asked["role"], at=asked.get("at"))
        return Response(qualification_data(verdict))


#
# The training matrix (TR-05, TR-06)
#


def _moment(raw: str) -> dt.datetime:
    """The `at` query parameter, refused (400) unless ISO 8601 with its offset."""
    try:
        moment: dt.datetime = AwareDateTimeInputField().run_validation(raw)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({"at": exc.detail}) from exc
    return moment


class TrainingMatrixViewSet(mixins.ListModelMixin, BaseViewSet):
    """Each site's people against every item any of them needs there, coloured current / due
    soon / overdue / missing, and each site's compliance (TR-05, TR-06)."""

    serializer_class = SiteComplianceSerializer
    lookup_field = "code"
    lookup_value_regex = SITE_CODE_REGEX
    ordering = "code"
    filterset_class = None

    def get_queryset(self) -> QuerySet[Site]:
        user = self.request.user
        qs = selectors.matrix_sites_visible_to(user)
        limit = token_site_limit(user)
        return qs if limit is None else qs.filter(code__in=limit)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return TrainingMatrixSerializer if self.action == "retrieve" else SiteComplianceSerializer

    @extend_schema(
        summary="List each site's training compliance",
        description="The sites whose matrix you may read — every site for QA, trainers, QPs "
        "and inspectors, the sites you lead for a site lead — with the whole percent of "
        "required items held now (rounded down) and the number overdue. Ordered by code.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        sites: list[Site] = list(page if page is not None else self.get_queryset())
        figures = selectors.site_compliance([site.pk for site in sites])
        rows = [
            {
                "site": site,
                "compliance": figures[site.pk].pct,
                "held": figures[site.pk].held,
                "required": figures[site.pk].required,
                "overdue": figures[site.pk].overdue,
                "matrix": reverse("api:training-matrix-detail", args=[site.code]),
            }
            for site in sites
        ]
        data = SiteComplianceSerializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(
        summary="Read a site's training matrix",
        description="Rows are the people working at the site, columns every item any of them "
        "needs there; each cell says `current`, `due_soon`, `overdue`, `missing` or "
        "`not_required`, why, and the record or open assignment behind it. `at` (ISO 8601 "
        "with its offset) reads the matrix as it stood then. A site whose matrix you may not "
        "read is 404.",
        parameters=[
            OpenApiParameter(
                name="at",
                type=OpenApiTypes.DATETIME,
                location=OpenApiParameter.QUERY,
                required=False,
                description="The moment; default now.",
            )
        ],
        responses={200: TrainingMatrixSerializer},
    )
    def retrieve(self, request: Request, code: str | None = None) -> Response:
        raw = request.query_params.get("at")
        at = _moment(raw) if raw is not None else None
        # Not `get_object()`: the site's ETag would not describe its matrix.
        site = get_object_or_404(self.get_queryset(), code=code)
        return Response(matrix_data(selectors.site_matrix(site, at=at)))
