"""Batches API: one read serializer per record, and a strict input serializer per write.

Reads nest small "brief" serializers (a site, a product, a person, a signature); writes accept
plain values (site and product codes, specification keys, decimals as JSON numbers or strings)
and leave every rule — who may, in which status, within which limits — to `batches.services`.
`status` is read-only everywhere: a template moves only by its approval, a batch only by its
steps and the QP's POST actions (design §6; BR-01…BR-15, ES-01…ES-09).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import models
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from batches.choices import (
    COI_MAX,
    INSTRUCTION_MAX,
    JUSTIFICATION_MAX,
    LOCATION_MAX,
    NAME_MAX,
    PARAMETERS_MAX,
    REASON_MAX,
    SPECIFICATIONS_MAX,
    STEPS_MAX,
    UNIT_MAX,
    BatchStatus,
    Decision,
    SpecificationTiming,
    StepRole,
    TemplateStatus,
)
from batches.models import (
    COI_PATTERN,
    KEY_PATTERN,
    Batch,
    BatchTemplate,
    Certification,
    Specification,
    StepParameter,
    StepRecord,
    SupplyRecord,
    TemplateStep,
    TestResult,
)
from batches.selectors import Progress, StepRow
from controlsite.api.base import SignatureInputSerializer, StrictSerializer
from controlsite.api.fields import NamedChoiceField
from controlsite.gates import GateReport
from controlsite.signatures.models import ElectronicSignature, SignatureMeaning
from controlsite.signatures.services import signature_is_valid
from masterfile.api.serializers import (
    ProductBriefSerializer,
    StrictIntegerField,
    VersionBriefSerializer,
)
from masterfile.models import PRODUCT_CODE_PATTERN
from masterfile.selectors import products_visible_to
from sites.api.serializers import SiteBriefSerializer, SiteCodeField, SitePersonSerializer

REASON_HELP = "Why: kept with the change in the audit trail."
VALUE_TEXT_MAX = 40
_DECIMAL_HELP = (
    'A decimal as a JSON number or a string (e.g. 37.2 or "37.2"): at most 12 digits before '
    "the point and 6 after (400 `invalid_value` otherwise)."
)


def _reason_field(*, required: bool = True) -> serializers.CharField:
    if required:
        return serializers.CharField(max_length=REASON_MAX, help_text=REASON_HELP)
    return serializers.CharField(
        max_length=REASON_MAX,
        required=False,
        allow_blank=True,
        help_text=f"Optional. {REASON_HELP}",
    )


def _decimal_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


#
# Strict fields: JSON types only, as the OpenAPI document says
#


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false: DRF would also take "yes", 1 or "on"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


@extend_schema_field(
    {
        "oneOf": [
            {"type": "number"},
            {"type": "string", "minLength": 1, "maxLength": VALUE_TEXT_MAX},
        ],
        "description": _DECIMAL_HELP,
    }
)
class DecimalInputField(serializers.Field):  # type: ignore[type-arg]
    """A decimal given as a JSON number or string; the service checks range and precision."""

    default_error_messages = {
        "invalid": "A number, or a string holding one.",
        "too_long": f"At most {VALUE_TEXT_MAX} characters.",
    }

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | float | str):
            self.fail("invalid")
        if isinstance(data, str) and not 1 <= len(data) <= VALUE_TEXT_MAX:
            self.fail("too_long")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    {"type": "string", "nullable": True, "description": "A decimal, as a string (exact)."}
)
class DecimalTextField(serializers.Field):  # type: ignore[type-arg]
    """A stored decimal shown exactly, without trailing zeros."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str | None:
        return _decimal_text(value)


class ProductCodeField(serializers.RegexField):
    """A product named by its code in a request body; one you may not see does not exist."""

    default_error_messages = {
        "invalid": "2–16 upper-case letters, digits and hyphens, e.g. CART-01.",
        "unknown_product": "No such product (or not one you can see).",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "The product's code, e.g. CART-01.")
        super().__init__(PRODUCT_CODE_PATTERN, max_length=16, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        code = super().run_validation(data)
        request = self.context.get("request")
        product = products_visible_to(getattr(request, "user", None)).filter(code=code).first()
        if product is None:
            self.fail("unknown_product")
        return product


#
# Signature meanings: one named enum per action, so the OpenAPI document has no collisions
#


class TemplateApprovalMeaning(models.TextChoices):
    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


class StepPerformedMeaning(models.TextChoices):
    PERFORMED = SignatureMeaning.PERFORMED.value, SignatureMeaning.PERFORMED.label


class StepVerifiedMeaning(models.TextChoices):
    VERIFIED = SignatureMeaning.VERIFIED.value, SignatureMeaning.VERIFIED.label


class QpCertifiedMeaning(models.TextChoices):
    QP_CERTIFIED = SignatureMeaning.QP_CERTIFIED.value, SignatureMeaning.QP_CERTIFIED.label


class BatchRejectedMeaning(models.TextChoices):
    REJECTED = SignatureMeaning.REJECTED.value, SignatureMeaning.REJECTED.label


#
# Brief shapes
#


class SignatureBriefSerializer(serializers.Serializer[ElectronicSignature]):
    """A signature as shown beside a record: name, time, meaning (ES-01), and whether the
    record still has the content that was signed (ES-03)."""

    printed_name = serializers.CharField(read_only=True)
    username = serializers.CharField(source="signer_username", read_only=True)
    meaning = serializers.CharField(read_only=True)
    meaning_display = serializers.CharField(source="get_meaning_display", read_only=True)
    signed_at = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    reason = serializers.CharField(read_only=True)
    valid = serializers.SerializerMethodField(
        help_text="True while the record still has the content that was signed."
    )

    def get_valid(self, signature: ElectronicSignature) -> bool:
        record = self.context.get("record")
        return record is not None and signature_is_valid(signature, record)


def signature_data(
    signature: ElectronicSignature | None, record: models.Model
) -> dict[str, Any] | None:
    if signature is None:
        return None
    return dict(SignatureBriefSerializer(signature, context={"record": record}).data)


def _person(user: Any) -> dict[str, Any] | None:
    return None if user is None else dict(SitePersonSerializer(user).data)


class TemplateBriefSerializer(serializers.Serializer[BatchTemplate]):
    id = serializers.IntegerField(read_only=True)
    number = serializers.IntegerField(read_only=True)
    title = serializers.CharField(read_only=True)
    status = NamedChoiceField(TemplateStatus, read_only=True)
    url = serializers.SerializerMethodField(help_text="The template in the API.")

    def get_url(self, template: BatchTemplate) -> str:
        return reverse("api:batch-template-detail", args=[template.pk])


#
# Templates (master batch records)
#


class ParameterSerializer(serializers.ModelSerializer[StepParameter]):
    low = DecimalTextField(help_text="Lower limit, or null.")
    high = DecimalTextField(help_text="Upper limit, or null.")
    limits_label = serializers.CharField(read_only=True)

    class Meta:
        model = StepParameter
        fields = ["key", "name", "unit", "low", "high", "limits_label"]
        read_only_fields = fields


class TemplateStepSerializer(serializers.ModelSerializer[TemplateStep]):
    role = NamedChoiceField(StepRole, read_only=True)
    role_display = serializers.CharField(source="get_role_display", read_only=True)
    parameters = serializers.SerializerMethodField()

    class Meta:
        model = TemplateStep
        fields = [
            "position",
            "title",
            "instruction",
            "role",
            "role_display",
            "requires_verification",
            "parameters",
        ]
        read_only_fields = fields

    @extend_schema_field(ParameterSerializer(many=True))
    def get_parameters(self, step: TemplateStep) -> list[Any]:
        # Prefetched in position order by the views; ordered here otherwise.
        cache = getattr(step, "_prefetched_objects_cache", {})
        rows = cache["parameters"] if "parameters" in cache else step.parameters.all()
        return list(ParameterSerializer(sorted(rows, key=lambda p: p.position), many=True).data)


class SpecificationSerializer(serializers.ModelSerializer[Specification]):
    low = DecimalTextField(help_text="Lower limit, or null.")
    high = DecimalTextField(help_text="Upper limit, or null.")
    limits_label = serializers.CharField(read_only=True)
    timing = NamedChoiceField(SpecificationTiming, read_only=True)
    timing_display = serializers.CharField(source="get_timing_display", read_only=True)

    class Meta:
        model = Specification
        fields = [
            "key",
            "name",
            "unit",
            "low",
            "high",
            "limits_label",
            "registered",
            "timing",
            "timing_display",
        ]
        read_only_fields = fields


class TemplateLinksSerializer(serializers.Serializer[BatchTemplate]):
    self = serializers.SerializerMethodField(help_text="This template in the API.")
    steps = serializers.SerializerMethodField(help_text="POST here to add a step (draft).")
    specifications = serializers.SerializerMethodField(
        help_text="POST here to add a specification (draft)."
    )
    approve = serializers.SerializerMethodField(help_text="POST here to approve (draft).")

    def get_self(self, template: BatchTemplate) -> str:
        return reverse("api:batch-template-detail", args=[template.pk])

    def get_steps(self, template: BatchTemplate) -> str:
        return reverse("api:batch-template-steps", args=[template.pk])

    def get_specifications(self, template: BatchTemplate) -> str:
        return reverse("api:batch-template-specifications", args=[template.pk])

    def get_approve(self, template: BatchTemplate) -> str:
        return reverse("api:batch-template-approve", args=[template.pk])


class BatchTemplateSerializer(serializers.ModelSerializer[BatchTemplate]):
    product = ProductBriefSerializer(read_only=True)
    master_file_version = VersionBriefSerializer(read_only=True)
    status = NamedChoiceField(TemplateStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    approved_by = SitePersonSerializer(read_only=True, allow_null=True)
    links = TemplateLinksSerializer(source="*", read_only=True)

    class Meta:
        model = BatchTemplate
        fields = [
            "id",
            "product",
            "number",
            "title",
            "master_file_version",
            "status",
            "status_display",
            "approved_at",
            "approved_by",
            "retired_at",
            "created_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields


class BatchTemplateDetailSerializer(BatchTemplateSerializer):
    """A template with its ordered steps and parameters, its specifications and its approval
    signature."""

    steps = serializers.SerializerMethodField(help_text="In the order they are done.")
    specifications = serializers.SerializerMethodField(help_text="By key.")
    approval_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's approval, or null while a draft."
    )

    class Meta(BatchTemplateSerializer.Meta):
        fields = [*BatchTemplateSerializer.Meta.fields, "steps", "specifications"]
        fields += ["approval_signature"]
        read_only_fields = fields

    @extend_schema_field(TemplateStepSerializer(many=True))
    def get_steps(self, template: BatchTemplate) -> list[Any]:
        steps = template.steps.order_by("position").prefetch_related("parameters")
        return list(TemplateStepSerializer(steps, many=True).data)

    @extend_schema_field(SpecificationSerializer(many=True))
    def get_specifications(self, template: BatchTemplate) -> list[Any]:
        return list(
            SpecificationSerializer(template.specifications.order_by("key"), many=True).data
        )

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_approval_signature(self, template: BatchTemplate) -> dict[str, Any] | None:
        return signature_data(template.approval_signature, template)


class BatchInputSerializer(StrictSerializer):
    """The base of every batches API input."""


class TemplateCreateSerializer(BatchInputSerializer):
    product = ProductCodeField()
    title = serializers.CharField(max_length=200)
    reason = _reason_field()


class ParameterInputSerializer(BatchInputSerializer):
    key = serializers.RegexField(
        KEY_PATTERN,
        max_length=40,
        help_text="Lower-case letters, digits, '-' and '_', unique in the step, e.g. bath-temp.",
    )
    name = serializers.CharField(
        max_length=NAME_MAX, required=False, help_text="Shown to the operator; the key if absent."
    )
    unit = serializers.CharField(max_length=UNIT_MAX, required=False, allow_blank=True)
    low = DecimalInputField(required=False, allow_null=True, help_text="Lower limit, optional.")
    high = DecimalInputField(required=False, allow_null=True, help_text="Upper limit, optional.")


class TemplateStepAddSerializer(BatchInputSerializer):
    """A step added at the end of a draft template."""

    title = serializers.CharField(max_length=NAME_MAX)
    instruction = serializers.CharField(max_length=INSTRUCTION_MAX)
    role = NamedChoiceField(
        StepRole, required=False, help_text="Who performs it at the site; an operator if absent."
    )
    requires_verification = StrictBooleanField(
        required=False, help_text="A second, different person verifies it with a signature."
    )
    parameters = serializers.ListField(
        child=ParameterInputSerializer(),
        required=False,
        max_length=PARAMETERS_MAX,
        help_text=f"The values recorded at the step, at most {PARAMETERS_MAX}.",
    )
    reason = _reason_field()


class SpecificationAddSerializer(BatchInputSerializer):
    """A critical quality attribute added to a draft template (BR-08, BR-09)."""

    key = serializers.RegexField(
        KEY_PATTERN,
        max_length=40,
        help_text="Lower-case letters, digits, '-' and '_', unique in the template.",
    )
    name = serializers.CharField(max_length=NAME_MAX)
    unit = serializers.CharField(max_length=UNIT_MAX, required=False, allow_blank=True)
    low = DecimalInputField(required=False, allow_null=True, help_text="Lower limit.")
    high = DecimalInputField(required=False, allow_null=True, help_text="Upper limit.")
    registered = StrictBooleanField(
        required=False,
        help_text="A failed registered specification blocks certification (default true).",
    )
    timing = NamedChoiceField(
        SpecificationTiming,
        required=False,
        help_text="`before_release` (default) or `late` (may follow certification).",
    )
    reason = _reason_field()


class TemplateApproveSerializer(SignatureInputSerializer):
    """Control Site QA approves with the meaning `approved`."""

    meaning = NamedChoiceField(TemplateApprovalMeaning)


#
# Batches
#


class BatchLinksSerializer(serializers.Serializer[Batch]):
    self = serializers.SerializerMethodField(help_text="This batch in the API.")
    html = serializers.SerializerMethodField(help_text="This batch's page.")
    steps = serializers.SerializerMethodField(help_text="POST the next step here.")
    results = serializers.SerializerMethodField(help_text="Its results; POST one here.")
    findings = serializers.SerializerMethodField(help_text="The release gates' findings now.")
    certify = serializers.SerializerMethodField(help_text="POST here to certify (QP).")
    reject = serializers.SerializerMethodField(help_text="POST here to reject (QP).")
    supplies = serializers.SerializerMethodField(help_text="POST a supply here; list them.")

    def _url(self, name: str, batch: Batch) -> str:
        return reverse(f"api:batch-{name}", args=[batch.number])

    def get_self(self, batch: Batch) -> str:
        return self._url("detail", batch)

    def get_html(self, batch: Batch) -> str:
        return reverse("batches:detail", args=[batch.number])

    def get_steps(self, batch: Batch) -> str:
        return self._url("steps", batch)

    def get_results(self, batch: Batch) -> str:
        return self._url("results", batch)

    def get_findings(self, batch: Batch) -> str:
        return self._url("findings", batch)

    def get_certify(self, batch: Batch) -> str:
        return self._url("certify", batch)

    def get_reject(self, batch: Batch) -> str:
        return self._url("reject", batch)

    def get_supplies(self, batch: Batch) -> str:
        return reverse("api:supply-list") + f"?batch={batch.number}"


class BatchSerializer(serializers.ModelSerializer[Batch]):
    site = SiteBriefSerializer(read_only=True)
    product = ProductBriefSerializer(read_only=True)
    template = TemplateBriefSerializer(read_only=True)
    master_file_version = VersionBriefSerializer(read_only=True)
    status = NamedChoiceField(BatchStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    badge = serializers.CharField(
        read_only=True,
        help_text="Colour of the status: `concession` marks certified under concession.",
    )
    started_at = serializers.DateTimeField(source="created_at", read_only=True)
    started_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    seconds_left = serializers.SerializerMethodField(
        help_text="Seconds until expiry (negative once expired), or null before completion."
    )
    links = BatchLinksSerializer(source="*", read_only=True)

    class Meta:
        model = Batch
        fields = [
            "number",
            "site",
            "product",
            "template",
            "master_file_version",
            "coi_reference",
            "status",
            "status_display",
            "badge",
            "started_at",
            "started_by",
            "completed_at",
            "expires_at",
            "seconds_left",
            "decided_at",
            "links",
        ]
        read_only_fields = fields

    def get_seconds_left(self, batch: Batch) -> int | None:
        now = self.context.get("now") or dt.datetime.now(tz=dt.UTC)
        if batch.expires_at is None:
            return None
        return int((batch.expires_at - now).total_seconds())


class StepRecordBriefSerializer(serializers.ModelSerializer[StepRecord]):
    """A step as done: values, flags, who performed and verified it, their signatures."""

    values = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="Parameter key → decimal."
    )
    out_of_limit = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Keys outside their limits."
    )
    performed_by = SitePersonSerializer(read_only=True)
    performed_at = serializers.DateTimeField(source="created_at", read_only=True)
    performed_signature = serializers.SerializerMethodField()
    verified_by = SitePersonSerializer(read_only=True, allow_null=True)
    verified_signature = serializers.SerializerMethodField()

    class Meta:
        model = StepRecord
        fields = [
            "values",
            "out_of_limit",
            "comment",
            "performed_by",
            "performed_at",
            "performed_signature",
            "verified_by",
            "verified_at",
            "verified_signature",
        ]
        read_only_fields = fields

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_performed_signature(self, record: StepRecord) -> dict[str, Any] | None:
        return signature_data(record.performed_signature, record)

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_verified_signature(self, record: StepRecord) -> dict[str, Any] | None:
        return signature_data(record.verified_signature, record)


STEP_STATES = [
    ("pending", "pending"),
    ("awaiting_verification", "awaiting_verification"),
    ("done", "done"),
]


def _step_state(record: StepRecord | None) -> str:
    if record is None:
        return "pending"
    return "awaiting_verification" if record.awaiting_verification else "done"


class StepRowSerializer(serializers.Serializer[StepRow]):
    """A template step beside its record in this batch."""

    step = TemplateStepSerializer(read_only=True)
    state = serializers.SerializerMethodField(
        help_text="`pending`, `awaiting_verification` or `done`."
    )
    record = serializers.SerializerMethodField(help_text="The record, or null while pending.")

    def get_state(self, row: StepRow) -> str:
        return _step_state(row.record)

    @extend_schema_field(StepRecordBriefSerializer(allow_null=True))
    def get_record(self, row: StepRow) -> dict[str, Any] | None:
        return None if row.record is None else dict(StepRecordBriefSerializer(row.record).data)


class StepRecordSerializer(StepRecordBriefSerializer):
    """The answer to a step recorded or verified: the record, and where the batch now is."""

    batch = serializers.CharField(source="batch.number", read_only=True)
    batch_status = NamedChoiceField(BatchStatus, source="batch.status", read_only=True)
    position = serializers.IntegerField(read_only=True)
    title = serializers.CharField(source="step.title", read_only=True)
    state = serializers.SerializerMethodField(help_text="`awaiting_verification` or `done`.")

    class Meta(StepRecordBriefSerializer.Meta):
        fields = ["batch", "batch_status", "position", "title", "state"]
        fields += StepRecordBriefSerializer.Meta.fields
        read_only_fields = fields

    def get_state(self, record: StepRecord) -> str:
        return _step_state(record)


class ResultBriefSerializer(serializers.ModelSerializer[TestResult]):
    value = DecimalTextField()
    value_label = serializers.CharField(read_only=True)
    recorded_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    recorded_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = TestResult
        fields = ["value", "value_label", "passed", "late", "comment", "recorded_by"]
        fields += ["recorded_at"]
        read_only_fields = fields


class ResultRowSerializer(serializers.Serializer[Any]):
    """A specification beside its result in this batch, if any."""

    specification = SpecificationSerializer(read_only=True)
    result = ResultBriefSerializer(read_only=True, allow_null=True)


class TestResultSerializer(ResultBriefSerializer):
    """The answer to a result recorded: pass or fail computed, and where the batch now is."""

    __test__ = False  # not a pytest class, despite the name

    batch = serializers.CharField(source="batch.number", read_only=True)
    batch_status = NamedChoiceField(BatchStatus, source="batch.status", read_only=True)
    specification = SpecificationSerializer(read_only=True)

    class Meta(ResultBriefSerializer.Meta):
        fields = ["batch", "batch_status", "specification", *ResultBriefSerializer.Meta.fields]
        read_only_fields = fields


class FindingSerializer(serializers.Serializer[Any]):
    gate = serializers.CharField(read_only=True, help_text="The gate that found it.")
    code = serializers.CharField(read_only=True, help_text="Stable: integrators branch on it.")
    severity = serializers.CharField(
        read_only=True, help_text="`block` refuses certification; `warn` needs a justification."
    )
    message = serializers.CharField(read_only=True)
    link = serializers.CharField(read_only=True, help_text="Where on the batch page to look.")


class GateReportSerializer(serializers.Serializer[GateReport]):
    """Every release gate's findings on the batch now (design §5): blocks first."""

    can_certify = serializers.BooleanField(read_only=True)
    blocks = serializers.SerializerMethodField(help_text="How many findings block.")
    warnings = serializers.SerializerMethodField(help_text="How many findings warn.")
    findings = serializers.SerializerMethodField()

    def get_blocks(self, report: GateReport) -> int:
        return len(report.blocks)

    def get_warnings(self, report: GateReport) -> int:
        return len(report.warnings)

    @extend_schema_field(FindingSerializer(many=True))
    def get_findings(self, report: GateReport) -> list[dict[str, str]]:
        return report.snapshot()


class CertificationSerializer(serializers.ModelSerializer[Certification]):
    """The QP's decision with its signature and the findings stored with it (BR-03, BR-07)."""

    decision = NamedChoiceField(Decision, read_only=True)
    decision_display = serializers.CharField(source="get_decision_display", read_only=True)
    qp = SitePersonSerializer(read_only=True)
    decided_at = serializers.DateTimeField(source="created_at", read_only=True)
    signature = serializers.SerializerMethodField()
    gate_findings = FindingSerializer(many=True, read_only=True)

    class Meta:
        model = Certification
        fields = [
            "decision",
            "decision_display",
            "qp",
            "decided_at",
            "signature",
            "remote",
            "location",
            "justification",
            "clinician_request",
            "gate_findings",
            "dossier_sha256",
        ]
        read_only_fields = fields

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_signature(self, certification: Certification) -> dict[str, Any] | None:
        return signature_data(certification.signature, certification)


class ProgressSerializer(serializers.Serializer[Progress]):
    done = serializers.IntegerField(source="done_count", read_only=True)
    total = serializers.IntegerField(read_only=True)
    percent = serializers.IntegerField(read_only=True)
    complete = serializers.BooleanField(read_only=True)
    current_step = serializers.SerializerMethodField(
        help_text="The position of the step to act on next (perform or verify), or null."
    )

    def get_current_step(self, progress: Progress) -> int | None:
        current = progress.current
        return None if current is None else current.step.position


class SupplyLinksSerializer(serializers.Serializer[SupplyRecord]):
    self = serializers.SerializerMethodField(help_text="This supply in the API.")
    confirm_administration = serializers.SerializerMethodField(
        help_text="POST here to confirm administration."
    )

    def get_self(self, supply: SupplyRecord) -> str:
        return reverse("api:supply-detail", args=[supply.pk])

    def get_confirm_administration(self, supply: SupplyRecord) -> str:
        return reverse("api:supply-confirm-administration", args=[supply.pk])


class SupplySerializer(serializers.ModelSerializer[SupplyRecord]):
    """To whom and when a batch was supplied, and its administration (BR-13, BR-14)."""

    batch = serializers.CharField(source="batch.number", read_only=True)
    quantity = DecimalTextField()
    recorded_by = SitePersonSerializer(source="created_by", read_only=True, allow_null=True)
    administered_confirmed_by = SitePersonSerializer(read_only=True, allow_null=True)
    links = SupplyLinksSerializer(source="*", read_only=True)

    class Meta:
        model = SupplyRecord
        fields = [
            "id",
            "batch",
            "supplied_to",
            "supplied_at",
            "quantity",
            "unit",
            "coi_checked",
            "recorded_by",
            "administered_at",
            "administered_confirmed_by",
            "adverse_reaction",
            "created_at",
            "links",
        ]
        read_only_fields = fields


class BatchDetailSerializer(BatchSerializer):
    """One batch with its steps, results, the release gates' findings now, the QP's decision
    and its supplies. The views put the progress, results and gate report in the context."""

    progress = serializers.SerializerMethodField()
    steps = serializers.SerializerMethodField(help_text="Every template step, in order.")
    results = serializers.SerializerMethodField(help_text="Every specification, by key.")
    findings = serializers.SerializerMethodField(
        help_text="The release gates now; null once the batch is decided."
    )
    certification = serializers.SerializerMethodField(
        help_text="The QP's decision, or null while none is made."
    )
    supplies = serializers.SerializerMethodField()

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "progress", "steps", "results", "findings"]
        fields += ["certification", "supplies"]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, batch: Batch) -> dict[str, Any]:
        return dict(ProgressSerializer(self.context["progress"]).data)

    @extend_schema_field(StepRowSerializer(many=True))
    def get_steps(self, batch: Batch) -> list[Any]:
        return list(StepRowSerializer(self.context["progress"].rows, many=True).data)

    @extend_schema_field(ResultRowSerializer(many=True))
    def get_results(self, batch: Batch) -> list[Any]:
        return list(ResultRowSerializer(self.context["results"], many=True).data)

    @extend_schema_field(GateReportSerializer(allow_null=True))
    def get_findings(self, batch: Batch) -> dict[str, Any] | None:
        report = self.context.get("report")
        return None if report is None else dict(GateReportSerializer(report).data)

    @extend_schema_field(CertificationSerializer(allow_null=True))
    def get_certification(self, batch: Batch) -> dict[str, Any] | None:
        certification = Certification.objects.filter(batch=batch).select_related("qp", "signature")
        first = certification.first()
        return None if first is None else dict(CertificationSerializer(first).data)

    @extend_schema_field(SupplySerializer(many=True))
    def get_supplies(self, batch: Batch) -> list[Any]:
        supplies = batch.supplies.select_related(
            "batch", "created_by", "administered_confirmed_by"
        ).order_by("supplied_at", "id")
        return list(SupplySerializer(supplies, many=True).data)


class BatchStartSerializer(BatchInputSerializer):
    site = SiteCodeField(help_text="The code of the site making it, e.g. LDS1.")
    product = ProductCodeField()
    coi_reference = serializers.RegexField(
        COI_PATTERN,
        max_length=COI_MAX,
        help_text="The pseudonymised patient identifier (chain of identity): 3–64 letters, "
        "digits and . / _ - — never a name. Checked again at hand-over.",
        error_messages={"invalid": "3–64 letters, digits and . / _ - (pseudonymised)."},
    )
    reason = _reason_field(required=False)


class StepRecordInputSerializer(SignatureInputSerializer):
    """The next step, performed and signed with the meaning `performed` (BR-15, ES-01)."""

    position = StrictIntegerField(
        min_value=1, max_value=STEPS_MAX, help_text="The step's position; the next one due."
    )
    values = serializers.DictField(
        child=DecimalInputField(),
        required=False,
        help_text="Parameter key → value, one for every parameter of the step. " + _DECIMAL_HELP,
    )
    comment = serializers.CharField(max_length=INSTRUCTION_MAX, required=False, allow_blank=True)
    meaning = NamedChoiceField(StepPerformedMeaning)

    def validate_values(self, values: dict[str, Any]) -> dict[str, Any]:
        if len(values) > PARAMETERS_MAX:
            raise serializers.ValidationError(f"At most {PARAMETERS_MAX} values.")
        return values


class StepVerifySerializer(SignatureInputSerializer):
    """A second, different person verifies the step with the meaning `verified`."""

    meaning = NamedChoiceField(StepVerifiedMeaning)


class ResultEntrySerializer(BatchInputSerializer):
    specification = serializers.CharField(
        max_length=40,
        help_text="The specification's key in the batch's template (400 "
        "`unknown_specification` otherwise).",
    )
    value = DecimalInputField(help_text=_DECIMAL_HELP)
    comment = serializers.CharField(max_length=INSTRUCTION_MAX, required=False, allow_blank=True)


class ResultRecordSerializer(ResultEntrySerializer):
    reason = _reason_field(required=False)


class ResultsRecordSerializer(BatchInputSerializer):
    """Several results of one batch at once, as an instrument sends them: all or none."""

    results = serializers.ListField(
        child=ResultEntrySerializer(),
        min_length=1,
        max_length=SPECIFICATIONS_MAX,
        help_text=f"One entry per specification, at most {SPECIFICATIONS_MAX} (a template's "
        "specifications).",
    )
    reason = _reason_field(required=False)


class CertifySerializer(SignatureInputSerializer):
    """The QP's "QP certified" signature (password and TOTP) and the decision's details."""

    meaning = NamedChoiceField(QpCertifiedMeaning)
    justification = serializers.CharField(
        max_length=JUSTIFICATION_MAX,
        required=False,
        allow_blank=True,
        help_text="Required when a finding warns, and for a concession.",
    )
    remote = StrictBooleanField(required=False, help_text="Certified away from the site.")
    location = serializers.CharField(
        max_length=LOCATION_MAX,
        required=False,
        allow_blank=True,
        help_text="Where you are; required when remote (BR-07).",
    )
    concession = StrictBooleanField(
        required=False,
        help_text="Certify over a failed registered specification (BR-08): needs the "
        "clinician's request and your justification.",
    )
    clinician_request = serializers.CharField(
        max_length=JUSTIFICATION_MAX,
        required=False,
        allow_blank=True,
        help_text="For a concession: the treating clinician's recorded request.",
    )


class RejectSerializer(SignatureInputSerializer):
    """The QP rejects with the meaning `rejected`; the reason is kept with the decision."""

    meaning = NamedChoiceField(BatchRejectedMeaning)


class SupplyCreateSerializer(BatchInputSerializer):
    coi_reference = serializers.CharField(
        max_length=COI_MAX,
        help_text="The chain-of-identity reference on the patient's wristband; a mismatch is "
        "refused and recorded (409 `coi_mismatch`).",
    )
    supplied_to = serializers.CharField(max_length=200, help_text="Ward, clinician or patient.")
    quantity = DecimalInputField(help_text="Above zero. " + _DECIMAL_HELP)
    unit = serializers.CharField(max_length=UNIT_MAX)
    supplied_at = serializers.DateTimeField(required=False, help_text="Now, if not given.")
    reason = _reason_field(required=False)


class AdministrationConfirmSerializer(BatchInputSerializer):
    coi_reference = serializers.CharField(
        max_length=COI_MAX,
        help_text="Checked against the batch again; a mismatch is refused and recorded.",
    )
    administered_at = serializers.DateTimeField(required=False, help_text="Now, if not given.")
    adverse_reaction = serializers.CharField(
        max_length=INSTRUCTION_MAX,
        required=False,
        allow_blank=True,
        help_text="A suspected adverse reaction, if any.",
    )
    reason = _reason_field(required=False)
