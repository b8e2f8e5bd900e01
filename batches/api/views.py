"""Batches API: batch templates with their approval, batches with steps, results, the release
gates' findings, the QP's decision and supply, for integrators and QPs (issue 5 §9; design §6).

Every queryset comes from a `batches.selectors` visibility rule, so a batch or template you may
not see is a 404, never a 403 — a token limited to some sites sees only their batches. Every
write is one `batches.services` call, which checks the role (403), the lifecycle (409), the
limits (400) and the signature (422); views only parse input and shape output. A write parses
its body before it fetches the record, so a malformed body is a 400 whatever `If-Match` says.
`Idempotency-Key` on any POST makes an integrator's retry replay the first answer.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
)
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from batches import selectors, services
from batches.api.filters import BatchFilter, BatchTemplateFilter, SupplyFilter
from batches.api.serializers import (
    AdministrationConfirmSerializer,
    BatchDetailSerializer,
    BatchSerializer,
    BatchStartSerializer,
    BatchTemplateDetailSerializer,
    BatchTemplateSerializer,
    CertifySerializer,
    GateReportSerializer,
    RejectSerializer,
    ResultRecordSerializer,
    ResultRowSerializer,
    ResultsRecordSerializer,
    SpecificationAddSerializer,
    StepRecordInputSerializer,
    StepRecordSerializer,
    StepVerifySerializer,
    SupplyCreateSerializer,
    SupplySerializer,
    TemplateApproveSerializer,
    TemplateCreateSerializer,
    TemplateStepAddSerializer,
    TestResultSerializer,
)
from batches.models import Batch, BatchTemplate, StepRecord, SupplyRecord
from controlsite.accounts.models import User
from controlsite.api.base import BaseViewSet, split_reason, validated_input

ID_REGEX = r"[0-9]{1,18}"
# <SITE>-<YYMMDD>-<NNN> (BR-12).
BATCH_NUMBER_REGEX = r"[A-Z0-9]{2,8}-[0-9]{6}-[0-9]{3}"
POSITION_REGEX = r"[0-9]{1,3}"

_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."
_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."
_DRAFT_NOTE = (
    " Only while the template is a draft: afterwards its content is frozen (409 "
    "`template_not_editable`); draft a new version with `POST /batch-templates/`."
)
_RECORDER = (
    " Site staff or an integrator recording at the batch's site (403 `not_a_site_member` or "
    "`permission_denied` otherwise); a batch you may not see — another site's, under a "
    "site-limited token — is 404 and nothing is written."
)
_SIGNED_NOTE = (
    " Signed: send your `username`, `password`, `otp` (where your role needs the second "
    "factor), the `meaning` named here and a `reason`. A refused signature is 422 "
    "(`wrong_password`, `otp_required`, `same_signer`, ...) and changes nothing."
)
_IDEMPOTENT = (
    " Send an `Idempotency-Key` so a retry replays the first answer instead of writing twice; "
    "the same key with another body is 409."
)
# Actions whose service locks the batch and reads it afresh (see BatchViewSet.get_queryset).
_LOCKING_WRITES = frozenset({"result_record", "results_bulk"})
_POSITION = OpenApiParameter(
    name="position",
    location=OpenApiParameter.PATH,
    type={"type": "integer", "minimum": 0, "maximum": 999},
    description="The step's position in the template.",
)


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


#
# Templates (master batch records)
#


def _template_detail(template: BatchTemplate) -> dict[str, Any]:
    """The template as it stands after a write, read afresh."""
    fresh = BatchTemplate.objects.select_related(
        "product", "master_file_version", "approved_by", "approval_signature"
    ).get(pk=template.pk)
    return dict(BatchTemplateDetailSerializer(fresh).data)


class BatchTemplateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Master batch records (BR-01): a product's ordered steps with parameters and limits and
    its CQA specifications, written as a draft and approved by Control Site QA with an
    e-signature. Only the approved version starts batches. Newest first."""

    serializer_class = BatchTemplateSerializer
    filterset_class = BatchTemplateFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[BatchTemplate]:
        return selectors.templates_visible_to(self.request.user).select_related(
            "approved_by", "approval_signature"
        )

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "retrieve":
            return BatchTemplateDetailSerializer
        return BatchTemplateSerializer

    @extend_schema(
        summary="List the batch templates you can see",
        description="Those of the products you can see. Filter by `product` (code) or "
        "`status`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one batch template",
        description="With its steps (in order, with parameters and limits), its "
        "specifications and Control Site QA's approval signature. The `ETag` header goes into "
        "`If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Draft a new template version",
        description="The next version of the product's template, tied to its effective master "
        "file (409 `master_file_not_effective` otherwise) and copied from the approved version "
        "if there is one. 409 `template_draft_exists` while a draft is open. A product you "
        "cannot see is 400 `unknown_product`." + _QA_ONLY + _REASON_NOTE,
        request=TemplateCreateSerializer,
        responses={201: BatchTemplateDetailSerializer},
        examples=[
            OpenApiExample(
                "A first master batch record",
                value={
                    "product": "CART-01",
                    "title": "CAR-T manufacture at the bedside",
                    "reason": "First master batch record for the product.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(TemplateCreateSerializer, request))
        template = services.template_create(actor=_actor(request), reason=reason, **fields)
        return Response(
            _template_detail(template),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:batch-template-detail", args=[template.pk])},
        )

    @extend_schema(
        summary="Add a step at the end",
        description="With its parameters (unit and optional limits), the role that performs "
        "it at the site and whether a second person verifies it. 400 `invalid_key`, "
        "`duplicate_key`, `invalid_limits` or `invalid_value` with the rule stated; 409 "
        "`too_many_steps`. The answer is the template." + _DRAFT_NOTE + _QA_ONLY + _REASON_NOTE,
        request=TemplateStepAddSerializer,
        responses={201: BatchTemplateDetailSerializer},
        examples=[
            OpenApiExample(
                "Thaw and wash",
                value={
                    "title": "Thaw and wash",
                    "instruction": "Thaw the apheresis bag in the 37 °C bath; wash twice.",
                    "role": "site_operator",
                    "requires_verification": False,
                    "parameters": [
                        {
                            "key": "bath-temp",
                            "name": "Bath temperature",
                            "unit": "°C",
                            "low": 36,
                            "high": 38,
                        },
                    ],
                    "reason": "Step 1 of the process description.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def steps(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(TemplateStepAddSerializer, request))
        template = self.get_object()
        services.template_step_add(
            actor=_actor(request), template=template, reason=reason, **fields
        )
        return Response(_template_detail(template), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Add a CQA specification",
        description="A critical quality attribute with a lower limit, an upper limit or both "
        "(400 `invalid_limits` otherwise), registered or not, due before release or after it "
        "as a late result (BR-08, BR-09). 409 `duplicate_key` for a key used. The answer is "
        "the template." + _DRAFT_NOTE + _QA_ONLY + _REASON_NOTE,
        request=SpecificationAddSerializer,
        responses={201: BatchTemplateDetailSerializer},
        examples=[
            OpenApiExample(
                "Viability",
                value={
                    "key": "viability",
                    "name": "Viability",
                    "unit": "%",
                    "low": 70,
                    "registered": True,
                    "timing": "before_release",
                    "reason": "Registered CQA.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def specifications(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SpecificationAddSerializer, request))
        template = self.get_object()
        services.template_specification_add(
            actor=_actor(request), template=template, reason=reason, **fields
        )
        return Response(_template_detail(template), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Approve with an e-signature (draft → approved)",
        description="Control Site QA signs with the meaning `approved`; the previously approved "
        "version retires. 409 `template_empty` without steps, 409 `master_file_not_effective` "
        "without a master file in force." + _DRAFT_NOTE + _QA_ONLY + _SIGNED_NOTE,
        request=TemplateApproveSerializer,
        responses={200: BatchTemplateDetailSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def approve(self, request: Request, pk: str | None = None) -> Response:
        signed = validated_input(TemplateApproveSerializer, request)
        template = self.get_object()
        services.template_approve(
            actor=_actor(request),
            template=template,
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_template_detail(template))


#
# Batches
#


def _batch_detail(batch: Batch, request: Request) -> dict[str, Any]:
    """The batch as it stands now, read afresh: progress, results, gates, decision, supply."""
    fresh = (
        Batch.objects.select_related(
            "site", "product", "template", "master_file_version", "created_by"
        )
        .prefetch_related("results__created_by")
        .get(pk=batch.pk)
    )
    decided = fresh.decided_at is not None
    context = {
        "request": request,
        "now": timezone.now(),
        "progress": selectors.batch_progress(fresh),
        "results": selectors.batch_results(fresh),
        # A decided batch's findings are those stored with the decision.
        "report": None if decided else selectors.batch_gate_report(fresh),
    }
    return dict(BatchDetailSerializer(fresh, context=context).data)


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Batches made at the sites you can see, named by their number `<SITE>-<YYMMDD>-<NNN>`
    (BR-12). Started by an integrator or site staff, recorded step by step, certified or
    rejected by a QP. Newest first."""

    serializer_class = BatchSerializer
    filterset_class = BatchFilter
    lookup_field = "number"
    lookup_value_regex = BATCH_NUMBER_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[Batch]:
        visible = selectors.batches_visible_to(self.request.user)
        if self.action in _LOCKING_WRITES:
            # The service locks and reads the batch afresh: only the row's identity is needed,
            # and instruments post results at a rate (issue 5 "Speed").
            return visible.only("pk", "number", "site_id")
        return visible.select_related(
            "site", "product", "template", "master_file_version", "created_by"
        )

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return BatchDetailSerializer if self.action == "retrieve" else BatchSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(
        summary="List the batches you can see",
        description="Control Site QA, QPs and inspectors see every site's batches; site staff "
        "and integrators those of their sites (a site-limited token narrows them). Filter by "
        "`site`, `product`, `status` or `awaiting_certification=true` (the QP queue). Newest "
        "first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one batch",
        description="By number: progress, every step with its record and signatures, every "
        "specification with its result, the release gates' findings now (null once decided: "
        "the findings stored with the decision are in `certification`), the QP's decision and "
        "the supplies. The `ETag` header goes into `If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        batch = self.get_object()
        return Response(_batch_detail(batch, request))

    @extend_schema(
        summary="Start a batch",
        description="At a site that can manufacture, is listed in the product's effective "
        "master file, with its approved template; the refusal says which (409 "
        "`site_not_active`, `master_file_not_effective`, `site_not_listed`, "
        "`template_not_approved`). The number is given by the system. A site or product you "
        "cannot see is 400 `unknown_site` / `unknown_product`." + _RECORDER + _IDEMPOTENT,
        request=BatchStartSerializer,
        responses={201: BatchDetailSerializer},
        examples=[
            OpenApiExample(
                "A CAR-T batch at the bedside",
                value={"site": "LDS1", "product": "CART-01", "coi_reference": "PT-2026-0042"},
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields = dict(validated_input(BatchStartSerializer, request).validated_data)
        batch = services.batch_start(actor=_actor(request), **fields)
        return Response(
            _batch_detail(batch, request),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:batch-detail", args=[batch.number])},
        )

    @extend_schema(
        summary="Record and sign the next step",
        description="Steps go in order (409 `step_out_of_order`, naming the one due; 400 "
        "`unknown_step`), by a person holding the step's role at the site (403 "
        "`role_not_held_at_site`, `not_qualified`), with a value for every parameter (400 "
        "`value_missing`, `unknown_parameter`, `invalid_value`). A value outside its limits is "
        "kept and flagged (`out_of_limit`) and prompts a deviation. The last step done "
        "completes the batch and starts its expiry. 409 `batch_not_in_progress`, "
        "`site_not_active`. Meaning `performed`." + _RECORDER + _SIGNED_NOTE + _IDEMPOTENT,
        request=StepRecordInputSerializer,
        responses={201: StepRecordSerializer},
        examples=[
            OpenApiExample(
                "Step 1",
                value={
                    "position": 1,
                    "values": {"bath-temp": 37.1, "volume": "50"},
                    "comment": "",
                    "username": "omar.okafor",
                    "password": "your-password",
                    "meaning": "performed",
                    "reason": "Step 1 done.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def steps(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(StepRecordInputSerializer, request)
        data = signed.validated_data
        batch = self.get_object()
        record = services.step_record(
            actor=_actor(request),
            batch=batch,
            position=data["position"],
            values=data.get("values", {}),
            credentials=signed.credentials(),
            reason=data["reason"],
            comment=data.get("comment", ""),
        )
        return Response(_step_record(record), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Verify a step (second person)",
        description="A different person from the performer (422 `same_signer`), holding the "
        "step's role at the site, signs with the meaning `verified`. 409 "
        "`verification_not_required`, `already_verified`; 404 for a step not yet recorded. "
        "Verifying the last step completes the batch." + _RECORDER + _SIGNED_NOTE,
        parameters=[_POSITION],
        request=StepVerifySerializer,
        responses={200: StepRecordSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=rf"steps/(?P<position>{POSITION_REGEX})/verify",
        url_name="step-verify",
        filterset_class=None,
    )
    def step_verify(
        self, request: Request, number: str | None = None, position: str = ""
    ) -> Response:
        signed = validated_input(StepVerifySerializer, request)
        batch = self.get_object()
        record = StepRecord.objects.filter(batch=batch, position=int(position)).first()
        if record is None:
            raise exceptions.NotFound(f"Step {int(position)} of {batch.number} is not recorded.")
        verified = services.step_verify(
            actor=_actor(request),
            record=record,
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_step_record(verified))

    @extend_schema(
        summary="The batch's specifications and results",
        description="Every specification of the batch's template, by key, with its result if "
        "one is recorded (pass or fail computed, late if after certification).",
        responses={200: ResultRowSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def results(self, request: Request, number: str | None = None) -> Response:
        batch = self.get_object()
        rows = selectors.batch_results(
            Batch.objects.select_related("template")
            .prefetch_related("results__created_by")
            .get(pk=batch.pk)
        )
        return Response(ResultRowSerializer(rows, many=True).data)

    @extend_schema(
        summary="Record a result",
        description="A value against one of the template's specifications (400 "
        "`unknown_specification` for a key it has not, and nothing is written); pass or fail "
        "is computed. A result is never overwritten (409 `result_exists`). After certification "
        "only a late specification takes a result; a failing late result escalates to the QPs "
        "and the site lead at once (BR-09). 409 `batch_decided` for a rejected batch."
        + _RECORDER
        + _IDEMPOTENT,
        request=ResultRecordSerializer,
        responses={201: TestResultSerializer},
        examples=[
            OpenApiExample(
                "Viability",
                value={"specification": "viability", "value": 92.5, "comment": "Flow assay."},
                request_only=True,
            )
        ],
    )
    @results.mapping.post
    def result_record(self, request: Request, number: str | None = None) -> Response:
        data = validated_input(ResultRecordSerializer, request).validated_data
        batch = self.get_object()
        result = services.result_record(
            actor=_actor(request),
            batch=batch,
            specification_key=data["specification"],
            value=data["value"],
            reason=data.get("reason", ""),
            comment=data.get("comment", ""),
        )
        # The service's rows are complete (the batch as locked, the specification, the
        # recorder): the answer needs no second read.
        return Response(TestResultSerializer(result).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Record several results at once",
        description="Results for several of the template's specifications in one call, as an "
        "instrument or a LIMS sends them, each with its own history row and audit event: "
        "all are recorded or none is. 400 `unknown_specification` (with `extra.result`, the "
        "entry's index) or `duplicate_specification`; 409 `result_exists` when one already "
        "has a result, `batch_decided` as for a single result. Pass or fail is computed; "
        "failing late results escalate (BR-09)." + _RECORDER + _IDEMPOTENT,
        request=ResultsRecordSerializer,
        responses={201: TestResultSerializer(many=True)},
        examples=[
            OpenApiExample(
                "Release panel",
                value={
                    "results": [
                        {"specification": "viability", "value": 92.5},
                        {"specification": "endotoxin", "value": "0.8", "comment": "LAL."},
                    ],
                    "reason": "LIMS upload",
                },
                request_only=True,
            )
        ],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="results/bulk",
        filterset_class=None,
        pagination_class=None,
    )
    def results_bulk(self, request: Request, number: str | None = None) -> Response:
        data = validated_input(ResultsRecordSerializer, request).validated_data
        batch = self.get_object()
        results = services.results_record(
            actor=_actor(request),
            batch=batch,
            entries=[
                services.ResultEntry(
                    specification_key=entry["specification"],
                    value=entry["value"],
                    comment=entry.get("comment", ""),
                )
                for entry in data["results"]
            ],
            reason=data.get("reason", ""),
        )
        return Response(
            TestResultSerializer(results, many=True).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="The release gates' findings now",
        description="Every registered gate on the batch (design §5), blocks first: "
        "`can_certify` is false while any finding blocks; a warning needs a written "
        "justification at certification. Each finding has a stable `code` and a `link` to the "
        "place on the batch page.",
        responses={200: GateReportSerializer},
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def findings(self, request: Request, number: str | None = None) -> Response:
        batch = self.get_object()
        return Response(GateReportSerializer(selectors.batch_gate_report(batch)).data)

    @extend_schema(
        summary="Certify (QP; awaiting certification → certified)",
        description="The QP signs with the meaning `qp_certified` (password and TOTP). Every "
        "gate is evaluated now: a block refuses (409 `gates_blocking`, the findings in "
        "`extra.findings`) — an expired batch is one; a warning needs a `justification` (400 "
        "`justification_required`). `remote` needs a `location` (400 `location_required`). "
        "With `concession`, a failed registered specification may be certified over, only "
        "with the `clinician_request` and your `justification` (400 `concession_incomplete`, "
        "409 `concession_not_applicable`); the batch is then `certified_under_concession`. "
        "409 `batch_not_completed`, `batch_already_decided`: nothing is written. Only a QP "
        "(403 otherwise)." + _SIGNED_NOTE,
        request=CertifySerializer,
        responses={200: BatchDetailSerializer},
        examples=[
            OpenApiExample(
                "Remotely",
                value={
                    "username": "priya.patel",
                    "password": "your-password",
                    "otp": "123456",
                    "meaning": "qp_certified",
                    "reason": "Batch record reviewed; all gates clear.",
                    "remote": True,
                    "location": "Home office, York",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def certify(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(CertifySerializer, request)
        fields, reason = split_reason(signed)
        batch = self.get_object()
        services.batch_certify(
            actor=_actor(request),
            batch=batch,
            credentials=signed.credentials(),
            reason=reason,
            justification=fields.get("justification", ""),
            remote=fields.get("remote", False),
            location=fields.get("location", ""),
            concession=fields.get("concession", False),
            clinician_request=fields.get("clinician_request", ""),
        )
        return Response(_batch_detail(batch, request))

    @extend_schema(
        summary="Reject (QP; in progress or awaiting certification → rejected)",
        description="The QP signs with the meaning `rejected`; the reason is kept with the "
        "decision. Final: 409 `batch_already_decided`. Only a QP (403 otherwise)." + _SIGNED_NOTE,
        request=RejectSerializer,
        responses={200: BatchDetailSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def reject(self, request: Request, number: str | None = None) -> Response:
        signed = validated_input(RejectSerializer, request)
        batch = self.get_object()
        services.batch_reject(
            actor=_actor(request),
            batch=batch,
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_batch_detail(batch, request))

    @extend_schema(
        summary="Record a supply (hand-over)",
        description="To whom, when and how much of a certified batch (409 "
        "`batch_not_certified`, `batch_expired`). The chain-of-identity reference is checked "
        "again: a mismatch is refused and recorded (409 `coi_mismatch`) (BR-13, BR-14)."
        + _RECORDER
        + _IDEMPOTENT,
        request=SupplyCreateSerializer,
        responses={201: SupplySerializer},
        examples=[
            OpenApiExample(
                "To the ward",
                value={
                    "coi_reference": "PT-2026-0042",
                    "supplied_to": "Ward 7, Dr Jones",
                    "quantity": "1",
                    "unit": "bag",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def supplies(self, request: Request, number: str | None = None) -> Response:
        fields, reason = _split_optional_reason(
            validated_input(SupplyCreateSerializer, request).validated_data
        )
        batch = self.get_object()
        supply = services.supply_record(actor=_actor(request), batch=batch, reason=reason, **fields)
        return Response(
            _supply(supply),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:supply-detail", args=[supply.pk])},
        )


def _split_optional_reason(data: Any) -> tuple[dict[str, Any], str]:
    """Like `split_reason`, for writes whose reason is optional (the service supplies one)."""
    fields = dict(data)
    return fields, fields.pop("reason", "")


def _step_record(record: StepRecord) -> dict[str, Any]:
    fresh = StepRecord.objects.select_related(
        "batch",
        "step",
        "performed_by",
        "verified_by",
        "performed_signature",
        "verified_signature",
    ).get(pk=record.pk)
    return dict(StepRecordSerializer(fresh).data)


def _supply(supply: SupplyRecord) -> dict[str, Any]:
    fresh = SupplyRecord.objects.select_related(
        "batch", "created_by", "administered_confirmed_by"
    ).get(pk=supply.pk)
    return dict(SupplySerializer(fresh).data)


#
# Supplies
#


class SupplyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Supplies of the batches you can see: to whom and when, and the confirmed administration
    (BR-13, BR-14). Newest first."""

    serializer_class = SupplySerializer
    filterset_class = SupplyFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[SupplyRecord]:
        return SupplyRecord.objects.filter(
            batch__in=selectors.batches_visible_to(self.request.user)
        ).select_related("batch", "created_by", "administered_confirmed_by")

    @extend_schema(
        summary="Confirm administration",
        description="The product was given to the patient the chain-of-identity reference "
        "names: a mismatch is refused and recorded (409 `coi_mismatch`). 409 "
        "`already_confirmed`; 400 `invalid_time` before the supply." + _RECORDER,
        request=AdministrationConfirmSerializer,
        responses={200: SupplySerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="confirm-administration",
        url_name="confirm-administration",
        filterset_class=None,
    )
    def confirm_administration(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = _split_optional_reason(
            validated_input(AdministrationConfirmSerializer, request).validated_data
        )
        supply = self.get_object()
        confirmed = services.administration_confirm(
            actor=_actor(request), supply=supply, reason=reason, **fields
        )
        return Response(_supply(confirmed))
