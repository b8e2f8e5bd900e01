"""Deviations, OOS investigations, CAPA, change control and complaints (design §3; DV-01…DV-12,
RP-04…RP-06).

Statuses change only in `deviations.services`; every regulated row keeps its history.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from batches.models import Batch, BatchSignal, ComparabilitySignal, StepRecord, TestResult
from controlsite.audit.history import RegulatedHistory
from controlsite.base_models import TimeStampedModel
from controlsite.signatures.models import ElectronicSignature
from deviations.choices import (
    REASON_MAX,
    TEXT_MAX,
    TITLE_MAX,
    ActionStatus,
    CapaKind,
    CapaSource,
    CapaStatus,
    ChangeStatus,
    ComplaintKind,
    ComplaintStatus,
    DeviationClass,
    DeviationSource,
    DeviationStatus,
    Effectiveness,
    ExtensionStatus,
    OosOutcome,
    OosPhase,
    RiskLevel,
    RootCauseCategory,
)
from masterfile.models import MasterFileVersion, Product
from sites.models import RegulatoryNotification, Site


def _user(verbose: Any, related: str = "+", *, null: bool = True) -> Any:
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=verbose,
        on_delete=models.PROTECT,
        related_name=related,
        null=null,
        blank=null,
    )


def _signature(verbose: Any) -> Any:
    return models.ForeignKey(
        ElectronicSignature,
        verbose_name=verbose,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )


def _text(verbose: Any) -> Any:
    return models.TextField(verbose, max_length=TEXT_MAX, blank=True)


class RecordSequence(models.Model):
    """Per-kind, per-year counters behind record numbers (DEV-2026-0001): each number is given
    once, under a row lock, and appears in its record's history and creation event."""

    prefix = models.CharField(_("prefix"), max_length=8)
    year = models.PositiveSmallIntegerField(_("year"))
    last = models.PositiveIntegerField(_("last number given"), default=0)

    class Meta:
        verbose_name = _("record sequence")
        constraints = [
            models.UniqueConstraint(fields=["prefix", "year"], name="recordsequence_one_per_year")
        ]

    def __str__(self) -> str:
        return f"{self.prefix}-{self.year}: {self.last}"


class Deviation(TimeStampedModel):
    """Something that departed from procedure or specification at a site (DV-01, DV-03)."""

    number = models.CharField(_("number"), max_length=20, unique=True)
    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="deviations"
    )
    batch = models.ForeignKey(
        Batch,
        verbose_name=_("batch"),
        on_delete=models.PROTECT,
        related_name="deviations",
        null=True,
        blank=True,
    )
    step_record = models.ForeignKey(
        StepRecord,
        verbose_name=_("step"),
        on_delete=models.PROTECT,
        related_name="deviations",
        null=True,
        blank=True,
    )
    result = models.ForeignKey(
        TestResult,
        verbose_name=_("result"),
        on_delete=models.PROTECT,
        related_name="deviations",
        null=True,
        blank=True,
    )
    # The batches outbox row this deviation was opened from, if any: exactly once per row.
    signal = models.OneToOneField(
        BatchSignal,
        verbose_name=_("batch signal"),
        on_delete=models.PROTECT,
        related_name="deviation",
        null=True,
        blank=True,
    )
    # The comparability outbox row (a run-rule break, a failed equivalence or annual check).
    comparability_signal = models.OneToOneField(
        ComparabilitySignal,
        verbose_name=_("comparability signal"),
        on_delete=models.PROTECT,
        related_name="deviation",
        null=True,
        blank=True,
    )
    source = models.CharField(_("raised from"), max_length=16, choices=DeviationSource.choices)
    audit_reference = models.CharField(_("audit finding reference"), max_length=100, blank=True)
    title = models.CharField(_("title"), max_length=TITLE_MAX)
    description = models.TextField(_("description"), max_length=TEXT_MAX)
    proposed_class = models.CharField(
        _("proposed class"), max_length=10, choices=DeviationClass.choices
    )
    confirmed_class = models.CharField(
        _("class confirmed by QA"), max_length=10, choices=DeviationClass.choices, blank=True
    )
    class_confirmed_by = _user(_("class confirmed by"))
    class_confirmed_at = models.DateTimeField(_("class confirmed at"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=DeviationStatus.choices, default=DeviationStatus.OPEN
    )
    immediate_action = _text(_("immediate action"))
    impact_assessment = _text(_("impact assessment"))
    root_cause_category = models.CharField(
        _("root-cause category"), max_length=16, choices=RootCauseCategory.choices, blank=True
    )
    root_cause = _text(_("root cause"))
    human_error_justification = _text(_("why human error is the root cause"))
    occurred_at = models.DateTimeField(_("occurred at"))
    triage_due_on = models.DateField(_("triage due on"))
    due_on = models.DateField(_("closure due on"))
    escalated_at = models.DateTimeField(_("overdue escalation sent at"), null=True, blank=True)
    triaged_at = models.DateTimeField(_("triaged at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closed_by = _user(_("closed by"))
    closure_signature = _signature(_("closure signature"))
    cancel_reason = models.TextField(_("why cancelled"), max_length=REASON_MAX, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("deviation")
        verbose_name_plural = _("deviations")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["site", "status"], name="deviation_site_status_idx"),
            models.Index(fields=["batch", "status"], name="deviation_batch_status_idx"),
            models.Index(fields=["status", "due_on"], name="deviation_status_due_idx"),
            models.Index(fields=["created_at"], name="deviation_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeviationStatus.values), name="deviation_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(proposed_class__in=DeviationClass.values),
                name="deviation_proposed_class_valid",
            ),
            models.CheckConstraint(
                condition=Q(confirmed_class="") | Q(confirmed_class__in=DeviationClass.values),
                name="deviation_confirmed_class_valid",
            ),
            # DV-01: "human error" is never a root cause without a reason why.
            models.CheckConstraint(
                condition=~Q(root_cause_category=RootCauseCategory.HUMAN_ERROR)
                | ~Q(human_error_justification=""),
                name="deviation_human_error_justified",
            ),
            # DV-03: QA confirms the class before anything past triage.
            models.CheckConstraint(
                condition=Q(status__in=[DeviationStatus.OPEN, DeviationStatus.CANCELLED])
                | ~Q(confirmed_class=""),
                name="deviation_class_confirmed_after_triage",
            ),
            models.CheckConstraint(
                condition=~Q(status=DeviationStatus.CLOSED) | Q(closure_signature__isnull=False),
                name="deviation_closed_is_signed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    @property
    def deviation_class(self) -> str:
        """The class in force: QA's once confirmed, the raiser's proposal until then."""
        return self.confirmed_class or self.proposed_class

    @property
    def is_open(self) -> bool:
        return self.status not in (DeviationStatus.CLOSED, DeviationStatus.CANCELLED)

    def is_overdue(self, today: dt.date) -> bool:
        if not self.is_open:
            return False
        if self.status == DeviationStatus.OPEN and self.triage_due_on < today:
            return True
        return self.due_on < today

    def signature_content(self) -> dict[str, object]:
        """What QA signs at closure: the record's findings, not its status."""
        return {
            "number": self.number,
            "site": self.site_id,
            "batch": self.batch_id,
            "class": self.deviation_class,
            "description": self.description,
            "immediate_action": self.immediate_action,
            "impact_assessment": self.impact_assessment,
            "root_cause_category": self.root_cause_category,
            "root_cause": self.root_cause,
            "human_error_justification": self.human_error_justification,
        }


class DeviationExtension(TimeStampedModel):
    """A request to move a deviation's closure date, decided by QA (DV-04)."""

    deviation = models.ForeignKey(
        Deviation, verbose_name=_("deviation"), on_delete=models.PROTECT, related_name="extensions"
    )
    current_due_on = models.DateField(_("due on when requested"))
    requested_due_on = models.DateField(_("new due date asked for"))
    reason = models.TextField(_("why"), max_length=REASON_MAX)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=ExtensionStatus.choices,
        default=ExtensionStatus.REQUESTED,
    )
    decided_by = _user(_("decided by"))
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_reason = models.TextField(_("decision reason"), max_length=REASON_MAX, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("deviation extension")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(requested_due_on__gt=models.F("current_due_on")),
                name="extension_moves_later",
            ),
            # At most one request awaits a decision per deviation.
            models.UniqueConstraint(
                fields=["deviation"],
                condition=Q(status=ExtensionStatus.REQUESTED),
                name="extension_one_pending",
            ),
        ]


class OosInvestigation(TimeStampedModel):
    """The phased investigation of an out-of-specification result (DV-10). The result itself
    is never changed: an invalidation is recorded here, with its evidence and QA's signature."""

    number = models.CharField(_("number"), max_length=20, unique=True)
    result = models.OneToOneField(
        TestResult, verbose_name=_("result"), on_delete=models.PROTECT, related_name="oos"
    )
    deviation = models.ForeignKey(
        Deviation,
        verbose_name=_("deviation"),
        on_delete=models.PROTECT,
        related_name="oos_investigations",
        null=True,
        blank=True,
    )
    phase = models.CharField(
        _("phase"), max_length=4, choices=OosPhase.choices, default=OosPhase.PHASE_IA
    )
    outcome = models.CharField(
        _("outcome"), max_length=12, choices=OosOutcome.choices, default=OosOutcome.OPEN
    )
    phase_ia_findings = _text(_("Phase Ia findings"))
    phase_ib_findings = _text(_("Phase Ib findings"))
    phase_ii_findings = _text(_("Phase II findings"))
    phase_iii_findings = _text(_("Phase III findings"))
    conclusion = _text(_("conclusion"))
    invalidation_evidence = _text(_("evidence for invalidating the result"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closure_signature = _signature(_("QA signature"))

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("OOS investigation")
        verbose_name_plural = _("OOS investigations")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(outcome=OosOutcome.INVALIDATED) | ~Q(invalidation_evidence=""),
                name="oos_invalidation_has_evidence",
            ),
            models.CheckConstraint(
                condition=Q(outcome=OosOutcome.OPEN) | Q(closure_signature__isnull=False),
                name="oos_conclusion_is_signed",
            ),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def is_open(self) -> bool:
        return self.outcome == OosOutcome.OPEN

    def signature_content(self) -> dict[str, object]:
        return {
            "number": self.number,
            "result": self.result_id,
            "outcome": self.outcome,
            "findings": [
                self.phase_ia_findings,
                self.phase_ib_findings,
                self.phase_ii_findings,
                self.phase_iii_findings,
            ],
            "conclusion": self.conclusion,
            "invalidation_evidence": self.invalidation_evidence,
        }


class Complaint(TimeStampedModel):
    """A quality complaint or a suspected adverse reaction, tied to site and batch (DV-11,
    RP-05, RP-06)."""

    number = models.CharField(_("number"), max_length=20, unique=True)
    kind = models.CharField(_("kind"), max_length=20, choices=ComplaintKind.choices)
    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="complaints"
    )
    batch = models.ForeignKey(
        Batch,
        verbose_name=_("batch"),
        on_delete=models.PROTECT,
        related_name="complaints",
        null=True,
        blank=True,
    )
    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="complaints"
    )
    description = models.TextField(_("description"), max_length=TEXT_MAX)
    reporter = models.CharField(_("reported by (who told us)"), max_length=200)
    aware_on = models.DateField(_("first known on"))
    serious = models.BooleanField(_("serious"), default=False)
    report_due_on = models.DateField(_("report due on"), null=True, blank=True)
    reported_on = models.DateField(_("reported to the MHRA on"), null=True, blank=True)
    reported_by = _user(_("reported by"))
    report_reference = models.CharField(_("report reference"), max_length=100, blank=True)
    assessment = _text(_("risk assessment and investigation"))
    status = models.CharField(
        _("status"), max_length=8, choices=ComplaintStatus.choices, default=ComplaintStatus.OPEN
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("complaint")
        verbose_name_plural = _("complaints")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(reported_on__isnull=True) | ~Q(report_reference=""),
                name="complaint_report_has_reference",
            ),
            models.CheckConstraint(
                condition=~Q(kind=ComplaintKind.ADVERSE_REACTION, serious=True)
                | Q(report_due_on__isnull=False),
                name="complaint_serious_adr_has_clock",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class Capa(TimeStampedModel):
    """A corrective or preventive action plan, tied to its source, with an owner, a due date
    and an effectiveness check before closure (DV-02)."""

    number = models.CharField(_("number"), max_length=20, unique=True)
    source = models.CharField(_("source"), max_length=12, choices=CapaSource.choices)
    deviation = models.ForeignKey(
        Deviation,
        verbose_name=_("deviation"),
        on_delete=models.PROTECT,
        related_name="capas",
        null=True,
        blank=True,
    )
    oos = models.ForeignKey(
        OosInvestigation,
        verbose_name=_("OOS investigation"),
        on_delete=models.PROTECT,
        related_name="capas",
        null=True,
        blank=True,
    )
    complaint = models.ForeignKey(
        Complaint,
        verbose_name=_("complaint"),
        on_delete=models.PROTECT,
        related_name="capas",
        null=True,
        blank=True,
    )
    audit_reference = models.CharField(_("audit finding reference"), max_length=100, blank=True)
    site = models.ForeignKey(
        Site,
        verbose_name=_("site"),
        on_delete=models.PROTECT,
        related_name="capas",
        null=True,
        blank=True,
    )
    kind = models.CharField(_("kind"), max_length=12, choices=CapaKind.choices)
    title = models.CharField(_("title"), max_length=TITLE_MAX)
    description = models.TextField(_("description"), max_length=TEXT_MAX)
    owner = _user(_("owner"), "owned_capas", null=False)
    due_on = models.DateField(_("due on"))
    status = models.CharField(
        _("status"), max_length=20, choices=CapaStatus.choices, default=CapaStatus.OPEN
    )
    effectiveness_due_on = models.DateField(_("effectiveness check due on"))
    effectiveness = models.CharField(
        _("effectiveness"), max_length=16, choices=Effectiveness.choices, blank=True
    )
    effectiveness_notes = _text(_("effectiveness check"))
    effectiveness_checked_by = _user(_("effectiveness checked by"))
    effectiveness_checked_at = models.DateTimeField(
        _("effectiveness checked at"), null=True, blank=True
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closure_signature = _signature(_("closure signature"))
    cancel_reason = models.TextField(_("why cancelled"), max_length=REASON_MAX, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("CAPA")
        verbose_name_plural = _("CAPAs")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "due_on"], name="capa_status_due_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CapaStatus.values), name="capa_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(effectiveness_due_on__gte=models.F("due_on")),
                name="capa_effectiveness_after_due",
            ),
            # DV-02: closed only after an effectiveness check found it effective, and signed.
            models.CheckConstraint(
                condition=~Q(status=CapaStatus.CLOSED)
                | Q(effectiveness=Effectiveness.EFFECTIVE, closure_signature__isnull=False),
                name="capa_closed_is_effective_and_signed",
            ),
            # A CAPA is tied to the source it names.
            models.CheckConstraint(
                condition=(
                    Q(source=CapaSource.DEVIATION, deviation__isnull=False)
                    | Q(source=CapaSource.OOS, oos__isnull=False)
                    | Q(source=CapaSource.COMPLAINT, complaint__isnull=False)
                    | (Q(source=CapaSource.AUDIT) & ~Q(audit_reference=""))
                ),
                name="capa_has_its_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status in (CapaStatus.OPEN, CapaStatus.EFFECTIVENESS_CHECK)

    def signature_content(self) -> dict[str, object]:
        return {
            "number": self.number,
            "source": self.source,
            "title": self.title,
            "description": self.description,
            "effectiveness": self.effectiveness,
            "effectiveness_notes": self.effectiveness_notes,
        }


class CapaAction(TimeStampedModel):
    """One action of a CAPA, with its own owner and due date."""

    capa = models.ForeignKey(
        Capa, verbose_name=_("CAPA"), on_delete=models.PROTECT, related_name="actions"
    )
    description = models.TextField(_("action"), max_length=TEXT_MAX)
    owner = _user(_("owner"), "capa_actions", null=False)
    due_on = models.DateField(_("due on"))
    status = models.CharField(
        _("status"), max_length=8, choices=ActionStatus.choices, default=ActionStatus.OPEN
    )
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)
    done_by = _user(_("done by"))
    outcome = _text(_("what was done"))

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("CAPA action")
        ordering = ["due_on", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=ActionStatus.OPEN) | Q(done_at__isnull=False),
                name="capaaction_done_has_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.capa.number}: {self.description[:60]}"


class ChangeControl(TimeStampedModel):
    """A planned change: what, its risk, its regulatory impact; approved by QA (and a QP when
    regulatory), implemented, reviewed after (DV-07…DV-09)."""

    number = models.CharField(_("number"), max_length=20, unique=True)
    title = models.CharField(_("title"), max_length=TITLE_MAX)
    description = models.TextField(_("what changes and why"), max_length=TEXT_MAX)
    scopes = models.JSONField(_("what it touches"), default=list)
    product = models.ForeignKey(
        Product,
        verbose_name=_("product"),
        on_delete=models.PROTECT,
        related_name="change_controls",
        null=True,
        blank=True,
    )
    site = models.ForeignKey(
        Site,
        verbose_name=_("site"),
        on_delete=models.PROTECT,
        related_name="change_controls",
        null=True,
        blank=True,
    )
    risk_level = models.CharField(_("risk"), max_length=8, choices=RiskLevel.choices)
    risk_assessment = models.TextField(_("risk assessment"), max_length=TEXT_MAX)
    regulatory_impact = _text(_("regulatory impact"))
    regulatory = models.BooleanField(_("regulatory"), default=False)
    status = models.CharField(
        _("status"), max_length=12, choices=ChangeStatus.choices, default=ChangeStatus.DRAFT
    )
    qa_signature = _signature(_("QA approval"))
    qp_signature = _signature(_("QP approval"))
    master_file_draft = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("master file draft it opened"),
        on_delete=models.PROTECT,
        related_name="change_controls",
        null=True,
        blank=True,
    )
    regulatory_notification = models.ForeignKey(
        RegulatoryNotification,
        verbose_name=_("MHRA notification it created"),
        on_delete=models.PROTECT,
        related_name="change_controls",
        null=True,
        blank=True,
    )
    implemented_at = models.DateTimeField(_("implemented at"), null=True, blank=True)
    review = _text(_("post-implementation review"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    rejection_reason = models.TextField(_("why rejected"), max_length=REASON_MAX, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("change control")
        verbose_name_plural = _("change controls")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ChangeStatus.values), name="change_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=[ChangeStatus.DRAFT, ChangeStatus.IN_REVIEW, ChangeStatus.REJECTED]
                )
                | (
                    Q(qa_signature__isnull=False)
                    & (Q(regulatory=False) | Q(qp_signature__isnull=False))
                ),
                name="change_approved_is_signed",
            ),
            models.CheckConstraint(
                condition=~Q(status=ChangeStatus.CLOSED) | ~Q(review=""),
                name="change_closed_is_reviewed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    def signature_content(self) -> dict[str, object]:
        return {
            "number": self.number,
            "title": self.title,
            "description": self.description,
            "scopes": sorted(self.scopes),
            "product": self.product_id,
            "site": self.site_id,
            "risk_level": self.risk_level,
            "risk_assessment": self.risk_assessment,
            "regulatory_impact": self.regulatory_impact,
        }


class ChangeTask(TimeStampedModel):
    """An implementation task of a change."""

    change = models.ForeignKey(
        ChangeControl, verbose_name=_("change"), on_delete=models.PROTECT, related_name="tasks"
    )
    description = models.TextField(_("task"), max_length=TEXT_MAX)
    owner = _user(_("owner"), "change_tasks", null=False)
    due_on = models.DateField(_("due on"))
    status = models.CharField(
        _("status"), max_length=8, choices=ActionStatus.choices, default=ActionStatus.OPEN
    )
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)
    done_by = _user(_("done by"))

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("change task")
        ordering = ["due_on", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=ActionStatus.OPEN) | Q(done_at__isnull=False),
                name="changetask_done_has_time",
            )
        ]
