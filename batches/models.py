"""Batch templates (master batch records), batches, step records, test results, the QP's
decision and supply records (design §3 and §5; BR-01…BR-15).

Statuses change only in `batches.services`; every regulated row keeps its history.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from batches.choices import (
    BATCH_BADGE,
    CHECK_BADGE,
    COI_MAX,
    INSTRUCTION_MAX,
    JUSTIFICATION_MAX,
    LOCATION_MAX,
    NAME_MAX,
    TEMPLATE_BADGE,
    UNIT_MAX,
    VALUE_DECIMAL_PLACES,
    VALUE_MAX_DIGITS,
    BatchStatus,
    CheckStatus,
    ComparabilitySignalKind,
    Decision,
    LimitBasis,
    LimitStatus,
    SignalKind,
    SpecificationTiming,
    StepRole,
    TemplateStatus,
)
from controlsite.audit.history import RegulatedHistory
from controlsite.base_models import TimeStampedModel
from masterfile.choices import EXPORT_BADGE, ExportStatus
from masterfile.models import MasterFileVersion, Product
from sites.models import Site

KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
key_validator = RegexValidator(
    KEY_PATTERN, _("lower-case letters, digits, '-' and '_', e.g. cell-count.")
)
# Pseudonymised: letters, digits and - . / _ only, so a name or date of birth is not typed in.
COI_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9./_-]{2,63}$"
coi_validator = RegexValidator(
    COI_PATTERN,
    _("3–64 letters, digits and . / _ - — a pseudonymised reference, never a name."),
)


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _value_field(verbose: Any, **options: Any) -> models.DecimalField[Any, Any]:
    return models.DecimalField(
        verbose, max_digits=VALUE_MAX_DIGITS, decimal_places=VALUE_DECIMAL_PLACES, **options
    )


class Limits(models.Model):
    """A lower and an upper limit, either open; a value is within when low ≤ value ≤ high."""

    unit: str  # each concrete model has its own unit field
    low = _value_field(_("lower limit"), null=True, blank=True)
    high = _value_field(_("upper limit"), null=True, blank=True)

    class Meta:
        abstract = True

    def within(self, value: Decimal) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def limits_label(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        low, high = _decimal(self.low), _decimal(self.high)
        if low is not None and high is not None:
            return f"{low}–{high}{unit}"
        if low is not None:
            return f"≥ {low}{unit}"
        if high is not None:
            return f"≤ {high}{unit}"
        return str(_("no limits"))

    def limits_content(self) -> list[str | None]:
        return [_decimal(self.low), _decimal(self.high)]


#
# Templates (master batch records)
#


class BatchTemplate(TimeStampedModel):
    """The master batch record of a product, one numbered version at a time (BR-01).

    Written as a draft, approved by Control Site QA with an e-signature, and tied to the master
    file version in force when it was written. Only the approved version starts batches; the
    database holds at most one approved and one draft version per product.
    """

    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="templates"
    )
    number = models.PositiveIntegerField(_("version"))
    title = models.CharField(_("title"), max_length=200)
    master_file_version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("master file version"),
        on_delete=models.PROTECT,
        related_name="batch_templates",
    )
    status = models.CharField(
        _("status"), max_length=12, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT
    )
    approved_at = models.DateTimeField(_("approved at"), null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("approved by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    approval_signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("approval signature"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    retired_at = models.DateTimeField(_("retired at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("batch template")
        verbose_name_plural = _("batch templates")
        ordering = ["product__code", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["product", "number"], name="template_unique_number"),
            models.UniqueConstraint(
                fields=["product"],
                condition=Q(status=TemplateStatus.APPROVED),
                name="template_one_approved_per_product",
            ),
            models.UniqueConstraint(
                fields=["product"],
                condition=Q(status=TemplateStatus.DRAFT),
                name="template_one_draft_per_product",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.code} batch template v{self.number}"

    @property
    def badge(self) -> str:
        return TEMPLATE_BADGE.get(self.status, "muted")

    def signature_content(self) -> dict[str, Any]:
        """What Control Site QA approves: the steps, their parameters and limits, and the
        specifications — not the status, which moves on."""
        return {
            "product": self.product_id,
            "number": self.number,
            "title": self.title,
            "master_file_version": self.master_file_version_id,
            "steps": [
                [
                    s.position,
                    s.title,
                    s.instruction,
                    s.role,
                    s.requires_verification,
                    [
                        [p.key, p.name, p.unit, *p.limits_content()]
                        for p in s.parameters.order_by("position")
                    ],
                ]
                for s in self.steps.order_by("position")
            ],
            "specifications": [
                [s.key, s.name, s.unit, *s.limits_content(), s.registered, s.timing]
                for s in self.specifications.order_by("key")
            ],
        }


class TemplateStep(TimeStampedModel):
    """One step of a template, done in order at the site by a person in `role`."""

    template = models.ForeignKey(
        BatchTemplate, verbose_name=_("template"), on_delete=models.PROTECT, related_name="steps"
    )
    position = models.PositiveSmallIntegerField(_("position"))
    title = models.CharField(_("title"), max_length=NAME_MAX)
    instruction = models.TextField(_("instruction"), max_length=INSTRUCTION_MAX)
    role = models.CharField(
        _("role required"), max_length=20, choices=StepRole.choices, default=StepRole.SITE_OPERATOR
    )
    requires_verification = models.BooleanField(
        _("second-person verification"),
        default=False,
        help_text=_("A different person verifies the step with their own signature."),
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("template step")
        verbose_name_plural = _("template steps")
        ordering = ["template", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "position"], name="template_step_unique_position"
            )
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.title}"


class StepParameter(Limits, TimeStampedModel):
    """A value recorded at a step (a temperature, a volume), with its unit and limits."""

    step = models.ForeignKey(
        TemplateStep, verbose_name=_("step"), on_delete=models.PROTECT, related_name="parameters"
    )
    position = models.PositiveSmallIntegerField(_("position"))
    key = models.CharField(_("key"), max_length=40, validators=[key_validator])
    name = models.CharField(_("name"), max_length=NAME_MAX)
    unit = models.CharField(_("unit"), max_length=UNIT_MAX, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("step parameter")
        verbose_name_plural = _("step parameters")
        ordering = ["step", "position"]
        constraints = [
            models.UniqueConstraint(fields=["step", "key"], name="step_parameter_unique_key"),
            models.CheckConstraint(
                condition=Q(low__isnull=True) | Q(high__isnull=True) | Q(low__lte=models.F("high")),
                name="step_parameter_low_not_above_high",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.limits_label})"


class Specification(Limits, TimeStampedModel):
    """A critical quality attribute and its limits (BR-08, BR-09)."""

    template = models.ForeignKey(
        BatchTemplate,
        verbose_name=_("template"),
        on_delete=models.PROTECT,
        related_name="specifications",
    )
    key = models.CharField(_("key"), max_length=40, validators=[key_validator])
    name = models.CharField(_("name"), max_length=NAME_MAX)
    unit = models.CharField(_("unit"), max_length=UNIT_MAX, blank=True)
    registered = models.BooleanField(
        _("registered"),
        default=True,
        help_text=_("A registered specification that fails blocks certification (BR-08)."),
    )
    timing = models.CharField(
        _("result due"),
        max_length=16,
        choices=SpecificationTiming.choices,
        default=SpecificationTiming.BEFORE_RELEASE,
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("specification")
        verbose_name_plural = _("specifications")
        ordering = ["template", "key"]
        constraints = [
            models.UniqueConstraint(fields=["template", "key"], name="specification_unique_key"),
            models.CheckConstraint(
                condition=Q(low__isnull=True) | Q(high__isnull=True) | Q(low__lte=models.F("high")),
                name="specification_low_not_above_high",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.limits_label})"


#
# Batches
#


class BatchSequence(models.Model):
    """The last batch number given at a site on a day: numbers are never reused (BR-12)."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    last = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "day"], name="batch_sequence_one_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.site_id} {self.day}: {self.last}"


class Batch(TimeStampedModel):
    """One batch, made at one site for one patient (BR-01, BR-12, BR-14)."""

    number = models.CharField(_("batch number"), max_length=32, unique=True)
    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="batches"
    )
    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="batches"
    )
    template = models.ForeignKey(
        BatchTemplate, verbose_name=_("template"), on_delete=models.PROTECT, related_name="batches"
    )
    master_file_version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("master file version"),
        on_delete=models.PROTECT,
        related_name="batches",
        help_text=_("The version in force when the batch was started."),
    )
    coi_reference = models.CharField(
        _("chain-of-identity reference"),
        max_length=COI_MAX,
        validators=[coi_validator],
        help_text=_("The pseudonymised patient identifier, checked again at hand-over."),
    )
    status = models.CharField(
        _("status"), max_length=28, choices=BatchStatus.choices, default=BatchStatus.IN_PROGRESS
    )
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at", "id"], name="batch_status_expiry"),
            models.Index(fields=["site", "status", "-created_at"], name="batch_site_status"),
            models.Index(fields=["product", "status", "-created_at"], name="batch_product_status"),
            models.Index(fields=["-created_at", "-id"], name="batch_newest"),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def badge(self) -> str:
        return BATCH_BADGE.get(self.status, "muted")

    def signature_content(self) -> dict[str, Any]:
        """The batch record a QP certifies: what was made, where, how and with what results
        (late results excluded: they may follow). Its hash is stored with the decision, so a
        later change shows (BR-06)."""
        return {
            "number": self.number,
            "site": self.site_id,
            "product": self.product_id,
            "template": self.template_id,
            "master_file_version": self.master_file_version_id,
            "coi_reference": self.coi_reference,
            "completed_at": self.completed_at,
            "expires_at": self.expires_at,
            "steps": [
                [r.position, r.values, r.out_of_limit, r.performed_by_id, r.verified_by_id]
                for r in self.step_records.order_by("position")
            ],
            "results": [
                [r.specification_id, _decimal(r.value), r.passed]
                for r in self.results.filter(late=False).order_by("specification_id")
            ],
        }


class StepRecord(TimeStampedModel):
    """A step as done: its values, who performed it and, where required, who verified it."""

    batch = models.ForeignKey(
        Batch, verbose_name=_("batch"), on_delete=models.PROTECT, related_name="step_records"
    )
    step = models.ForeignKey(
        TemplateStep, verbose_name=_("step"), on_delete=models.PROTECT, related_name="records"
    )
    position = models.PositiveSmallIntegerField(_("position"))
    values = models.JSONField(_("values"), default=dict, blank=True)
    out_of_limit = models.JSONField(
        _("out-of-limit parameters"), default=list, blank=True, help_text=_("Their keys.")
    )
    comment = models.TextField(_("comment"), blank=True, max_length=INSTRUCTION_MAX)
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("performed by"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    performed_signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("performed signature"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("verified by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    verified_at = models.DateTimeField(_("verified at"), null=True, blank=True)
    verified_signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("verified signature"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("step record")
        verbose_name_plural = _("step records")
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "position"], name="step_record_once_each"),
            models.CheckConstraint(
                condition=Q(verified_by__isnull=True) | ~Q(verified_by=models.F("performed_by")),
                name="step_record_verifier_is_another_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id} step {self.position}"

    @property
    def awaiting_verification(self) -> bool:
        return self.step.requires_verification and self.verified_by_id is None

    def signature_content(self) -> dict[str, Any]:
        """What the performer and the verifier sign: the values, not the signatures."""
        return {
            "batch": self.batch_id,
            "step": self.step_id,
            "position": self.position,
            "values": self.values,
            "out_of_limit": self.out_of_limit,
            "comment": self.comment,
            "performed_by": self.performed_by_id,
        }


class TestResult(TimeStampedModel):
    """A result against a specification; pass or fail is computed, never typed (BR-08, BR-09).

    A late result is one recorded after the batch was certified.
    """

    __test__ = False  # not a pytest class, despite the name

    batch = models.ForeignKey(
        Batch, verbose_name=_("batch"), on_delete=models.PROTECT, related_name="results"
    )
    specification = models.ForeignKey(
        Specification,
        verbose_name=_("specification"),
        on_delete=models.PROTECT,
        related_name="results",
    )
    value = _value_field(_("value"))
    passed = models.BooleanField(_("passed"))
    late = models.BooleanField(_("late result"), default=False)
    comment = models.TextField(_("comment"), blank=True, max_length=INSTRUCTION_MAX)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("test result")
        verbose_name_plural = _("test results")
        ordering = ["batch", "specification__key"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "specification"], name="result_one_per_specification"
            )
        ]

    def __str__(self) -> str:
        return f"{self.specification.key} = {_decimal(self.value)}"

    @property
    def value_label(self) -> str:
        unit = self.specification.unit
        return f"{_decimal(self.value)} {unit}".strip()


class Certification(TimeStampedModel):
    """The QP's decision on a batch, exactly one per batch (BR-03, BR-04, BR-07, BR-08).

    The gate findings at that moment and the hash of the batch record are stored with it.
    """

    batch = models.OneToOneField(
        Batch, verbose_name=_("batch"), on_delete=models.PROTECT, related_name="certification"
    )
    decision = models.CharField(_("decision"), max_length=28, choices=Decision.choices)
    qp = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("Qualified Person"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("signature"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    remote = models.BooleanField(_("certified remotely"), default=False)
    location = models.CharField(_("location"), max_length=LOCATION_MAX, blank=True)
    justification = models.TextField(_("justification"), blank=True, max_length=JUSTIFICATION_MAX)
    clinician_request = models.TextField(
        _("clinician's request"),
        blank=True,
        max_length=JUSTIFICATION_MAX,
        help_text=_("For a concession: the treating clinician's recorded request."),
    )
    gate_findings = models.JSONField(_("gate findings"), default=list, blank=True)
    dossier_sha256 = models.CharField(_("batch record SHA-256"), max_length=64)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("certification")
        verbose_name_plural = _("certifications")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(decision=Decision.CERTIFIED_UNDER_CONCESSION)
                | (~Q(clinician_request="") & ~Q(justification="")),
                name="concession_has_request_and_justification",
            )
        ]

    def __str__(self) -> str:
        return f"{self.batch} {self.get_decision_display().lower()}"

    def signature_content(self) -> dict[str, Any]:
        return {
            "batch": self.batch_id,
            "decision": self.decision,
            "qp": self.qp_id,
            "remote": self.remote,
            "location": self.location,
            "justification": self.justification,
            "clinician_request": self.clinician_request,
            "gate_findings": self.gate_findings,
            "dossier_sha256": self.dossier_sha256,
        }


class SupplyRecord(TimeStampedModel):
    """To whom and when a certified batch was supplied, and its administration (BR-13, BR-14)."""

    batch = models.ForeignKey(
        Batch, verbose_name=_("batch"), on_delete=models.PROTECT, related_name="supplies"
    )
    supplied_to = models.CharField(_("supplied to"), max_length=200)
    supplied_at = models.DateTimeField(_("supplied at"))
    quantity = _value_field(_("quantity"))
    unit = models.CharField(_("unit"), max_length=UNIT_MAX)
    coi_checked = models.BooleanField(_("chain of identity checked"), default=True)
    administered_at = models.DateTimeField(_("administered at"), null=True, blank=True)
    administered_confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("administration confirmed by"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    adverse_reaction = models.TextField(
        _("suspected adverse reaction"), blank=True, max_length=INSTRUCTION_MAX
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("supply record")
        verbose_name_plural = _("supply records")
        ordering = ["batch", "supplied_at"]

    def __str__(self) -> str:
        return f"{self.batch} to {self.supplied_to}"


class BatchSignal(models.Model):
    """The batches outbox: something the deviations app must turn into its own record, exactly
    once (design §2). Written in the transaction that found it."""

    kind = models.CharField(max_length=24, choices=SignalKind.choices)
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="signals")
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(processed_at__isnull=True),
                name="batch_signal_unprocessed",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.batch_id}"


def certificate_upload_to(instance: BatchCertificate, filename: str) -> str:
    return f"certificates/{instance.created_at:%Y/%m}/{filename}"


class BatchCertificate(TimeStampedModel):
    """The batch certificate PDF/A of a decided batch: a job row with status, then the file and
    its SHA-256 (issue 5 §7), made by Celery with the master-file export's conventions."""

    certification = models.OneToOneField(
        Certification,
        verbose_name=_("certification"),
        on_delete=models.PROTECT,
        related_name="certificate",
    )
    status = models.CharField(
        _("status"), max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    file = models.FileField(_("file"), upload_to=certificate_upload_to, blank=True, max_length=255)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(_("size (bytes)"), null=True, blank=True)
    page_count = models.PositiveIntegerField(_("pages"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("batch certificate")
        verbose_name_plural = _("batch certificates")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Certificate of {self.certification.batch_id}"

    @property
    def status_badge(self) -> str:
        return EXPORT_BADGE[ExportStatus(self.status)]


#
# Comparability across sites (issue 8; SO-08, SO-09)
#


class ReferenceLimit(TimeStampedModel):
    """The reference site's validated limits for one CQA of a product, approved by Control Site
    QA with an e-signature (SO-09). They are fixed at approval — from the reference site's
    verification batches (mean ± 3 SD) or from the specification — and stay in force until QA
    approves new ones; they are never recomputed from the data on a page.

    `sigma` is the spread the run rules measure against: the verification batches' SD, or a
    sixth of the specification's width. `margin` is the equivalence margin for the two
    one-sided tests: a site is comparable when the 90 % confidence interval of its mean
    difference from the reference site lies within ± margin.
    """

    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="+"
    )
    key = models.CharField(_("CQA key"), max_length=40, validators=[key_validator])
    name = models.CharField(_("CQA"), max_length=NAME_MAX)
    unit = models.CharField(_("unit"), max_length=UNIT_MAX, blank=True)
    reference_site = models.ForeignKey(
        Site, verbose_name=_("reference site"), on_delete=models.PROTECT, related_name="+"
    )
    basis = models.CharField(_("basis"), max_length=16, choices=LimitBasis.choices)
    centre = _value_field(_("centre line"))
    lower = _value_field(_("lower limit"))
    upper = _value_field(_("upper limit"))
    sigma = _value_field(_("sigma"))
    margin = _value_field(_("equivalence margin"))
    n = models.PositiveIntegerField(_("verification results"), default=0)
    source_batches = models.JSONField(
        _("verification batches"), default=list, blank=True, help_text=_("Batch numbers.")
    )
    status = models.CharField(
        _("status"), max_length=16, choices=LimitStatus.choices, default=LimitStatus.ACTIVE
    )
    approved_at = models.DateTimeField(_("approved at"))
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("approved by"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    approval_signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("approval signature"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    superseded_at = models.DateTimeField(_("superseded at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("reference limit")
        verbose_name_plural = _("reference limits")
        ordering = ["product", "key", "-approved_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "key"],
                condition=Q(status=LimitStatus.ACTIVE),
                name="reference_limit_one_active",
            ),
            models.CheckConstraint(
                condition=Q(lower__lt=models.F("upper")), name="reference_limit_lower_below_upper"
            ),
            models.CheckConstraint(
                condition=Q(margin__gt=0), name="reference_limit_margin_positive"
            ),
            models.CheckConstraint(condition=Q(sigma__gt=0), name="reference_limit_sigma_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.limits_label}"

    @property
    def limits_label(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{_decimal(self.lower)}–{_decimal(self.upper)}{unit}"

    def signature_content(self) -> dict[str, Any]:
        """What QA approves: the limits, their basis and the margin — not the status."""
        return {
            "product": self.product_id,
            "key": self.key,
            "reference_site": self.reference_site_id,
            "basis": self.basis,
            "centre": _decimal(self.centre),
            "lower": _decimal(self.lower),
            "upper": _decimal(self.upper),
            "sigma": _decimal(self.sigma),
            "margin": _decimal(self.margin),
            "n": self.n,
            "source_batches": self.source_batches,
        }


class ComparabilitySnapshot(models.Model):
    """The last evaluation of one site against the limits in force (not a GMP record: it is
    recomputed from the results by `comparability_evaluate`). The dashboard reads it, so it
    stays cheap over 200 sites."""

    limit = models.ForeignKey(ReferenceLimit, on_delete=models.CASCADE, related_name="snapshots")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    n = models.PositiveIntegerField(default=0)
    mean = models.FloatField(null=True, blank=True)
    sd = models.FloatField(null=True, blank=True)
    verdict = models.CharField(max_length=16)
    equivalence = models.JSONField(default=dict)
    rule_breaks = models.PositiveIntegerField(default=0)
    last_result_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["limit", "site"], name="comparability_snapshot_unique")
        ]
        indexes = [models.Index(fields=["site", "verdict"], name="comparability_snap_site")]

    def __str__(self) -> str:
        return f"{self.limit.key} at {self.site_id}: {self.verdict}"


class ComparabilityCheck(TimeStampedModel):
    """The annual comparability check of one site for one product (SO-09): starting material
    split between the reference site and this site, the paired results recorded, the
    statistics computed, and QA's review signed. One open check per product and site."""

    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="+"
    )
    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="+"
    )
    reference_site = models.ForeignKey(
        Site, verbose_name=_("reference site"), on_delete=models.PROTECT, related_name="+"
    )
    due_on = models.DateField(_("due on"))
    status = models.CharField(
        _("status"), max_length=16, choices=CheckStatus.choices, default=CheckStatus.SCHEDULED
    )
    material = models.CharField(_("split starting material"), max_length=NAME_MAX, blank=True)
    recorded_at = models.DateTimeField(_("results recorded at"), null=True, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("results recorded by"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    verdict = models.CharField(_("verdict"), max_length=16, blank=True)
    statistics = models.JSONField(_("statistics"), default=list, blank=True)
    conclusion = models.TextField(_("conclusion"), blank=True, max_length=JUSTIFICATION_MAX)
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewed by"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    review_signature = models.ForeignKey(
        "controlsite.ElectronicSignature",
        verbose_name=_("review signature"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    overdue_notified_on = models.DateField(
        _("overdue reminder sent on"),
        null=True,
        blank=True,
        help_text=_("QA and the site's leads are told once when the check passes its due date."),
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("comparability check")
        verbose_name_plural = _("comparability checks")
        ordering = ["due_on", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "site"],
                condition=Q(status__in=[CheckStatus.SCHEDULED, CheckStatus.RECORDED]),
                name="comparability_check_one_open",
            )
        ]
        indexes = [models.Index(fields=["status", "due_on"], name="comparability_check_due")]

    def __str__(self) -> str:
        return f"{self.product_id} at {self.site_id} due {self.due_on}"

    @property
    def badge(self) -> dict[str, str]:
        return {"label": self.get_status_display(), "colour": CHECK_BADGE.get(self.status, "")}

    def is_overdue(self, today: Any) -> bool:
        return self.status in (CheckStatus.SCHEDULED, CheckStatus.RECORDED) and self.due_on < today

    def signature_content(self) -> dict[str, Any]:
        """What QA reviews: the paired results, the statistics and the conclusion."""
        return {
            "product": self.product_id,
            "site": self.site_id,
            "reference_site": self.reference_site_id,
            "material": self.material,
            "pairs": [
                [p.key, p.lot, _decimal(p.reference_value), _decimal(p.site_value)]
                for p in self.pairs.order_by("key", "lot")
            ],
            "statistics": self.statistics,
            "verdict": self.verdict,
            "conclusion": self.conclusion,
        }


class CheckPair(TimeStampedModel):
    """One CQA measured on one portion of split starting material, at the reference site and
    at the site. Never changed once recorded."""

    comparability_check = models.ForeignKey(
        ComparabilityCheck, verbose_name=_("check"), on_delete=models.PROTECT, related_name="pairs"
    )
    key = models.CharField(_("CQA key"), max_length=40, validators=[key_validator])
    lot = models.CharField(_("lot"), max_length=64)
    reference_value = _value_field(_("reference site value"))
    site_value = _value_field(_("site value"))

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("paired result")
        verbose_name_plural = _("paired results")
        ordering = ["comparability_check", "key", "lot"]
        constraints = [
            models.UniqueConstraint(
                fields=["comparability_check", "key", "lot"], name="check_pair_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} {self.lot}: {self.reference_value} / {self.site_value}"


class ComparabilitySignal(models.Model):
    """The comparability outbox: a run-rule break, a failed equivalence or a failed annual check
    that the deviations app turns into one deviation (design §2). `episode` names the signal so
    that evaluating the same data again finds it instead of raising another: the first result
    of a run, the limits for an equivalence failure, the check for a check."""

    kind = models.CharField(max_length=16, choices=ComparabilitySignalKind.choices)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    key = models.CharField(max_length=40)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    limit = models.ForeignKey(
        ReferenceLimit, on_delete=models.PROTECT, related_name="signals", null=True, blank=True
    )
    comparability_check = models.ForeignKey(
        ComparabilityCheck, on_delete=models.PROTECT, related_name="signals", null=True, blank=True
    )
    batch = models.ForeignKey(
        Batch, on_delete=models.PROTECT, related_name="comparability_signals", null=True, blank=True
    )
    rule = models.PositiveSmallIntegerField(null=True, blank=True)
    episode = models.CharField(max_length=64)
    first_result = models.ForeignKey(
        TestResult, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    last_result = models.ForeignKey(
        TestResult, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    detail = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product", "key", "site", "kind", "episode"],
                name="comparability_signal_once",
            )
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(processed_at__isnull=True),
                name="comparability_signal_todo",
            ),
            models.Index(fields=["site", "created_at"], name="comparability_signal_site"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.key} at {self.site_id}"
