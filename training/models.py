"""Training records (design §3; TR-01…TR-07).

A *procedure* is a controlled SOP; each *version* is issued with a file and an effective date,
and the one in force is superseded when the next comes into effect. A *training item* is what a
person must hold: the GxP induction, the yearly refresher, the data-integrity and e-signature
accountability item, an SOP's read-and-understood (tied to the procedure), or a practical
assessment. A *curriculum* says which items a role needs at a site (or at every site); its
requirements are never deleted, only removed at a time, so the question "what did this role need
on that day?" keeps its answer. An *assignment* asks one person to complete one item by a date;
a *record* is the signed proof that they did.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlsite.audit.history import RegulatedHistory
from controlsite.base_models import TimeStampedModel
from controlsite.signatures.models import ElectronicSignature
from sites.models import Site
from training.choices import (
    AssessmentResult,
    AssignmentCause,
    AssignmentStatus,
    CurriculumRole,
    ItemKind,
    RecordMethod,
    VersionStatus,
)

TEXT_MAX = 5000
NUMBER_MAX = 40
TITLE_MAX = 200


def _user(verbose: Any, related: str = "+", *, null: bool = False) -> Any:
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=verbose,
        on_delete=models.PROTECT,
        related_name=related,
        null=null,
        blank=null,
    )


class Procedure(TimeStampedModel):
    """A controlled procedure (SOP) in the register: its number and title; its text lives in
    its versions' files."""

    number = models.CharField(_("number"), max_length=NUMBER_MAX, unique=True)
    title = models.CharField(_("title"), max_length=TITLE_MAX)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("procedure")
        verbose_name_plural = _("procedures")
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"


def procedure_file_path(instance: ProcedureVersion, filename: str) -> str:
    return f"procedures/{instance.procedure.number}/v{instance.number}/{filename}"


class ProcedureVersion(TimeStampedModel):
    """One issued version of a procedure. `effective_at`/`superseded_at` bound the time it was
    the version in force, which is what qualification at a past moment reads."""

    procedure = models.ForeignKey(
        Procedure, verbose_name=_("procedure"), on_delete=models.PROTECT, related_name="versions"
    )
    number = models.PositiveIntegerField(_("version"))
    status = models.CharField(
        _("status"), max_length=12, choices=VersionStatus.choices, default=VersionStatus.ISSUED
    )
    effective_on = models.DateField(_("effective on"))
    effective_at = models.DateTimeField(_("in force from"), null=True, blank=True)
    superseded_at = models.DateTimeField(_("superseded at"), null=True, blank=True)
    change_summary = models.TextField(_("what changed"), max_length=TEXT_MAX)
    file = models.FileField(_("file"), upload_to=procedure_file_path, max_length=300)
    file_sha256 = models.CharField(_("file SHA-256"), max_length=64)
    approval_signature = models.ForeignKey(
        ElectronicSignature,
        verbose_name=_("approval signature"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("procedure version")
        verbose_name_plural = _("procedure versions")
        ordering = ["procedure__number", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["procedure", "number"], name="procedure_version_unique"
            ),
            models.UniqueConstraint(
                fields=["procedure"],
                condition=Q(status=VersionStatus.EFFECTIVE),
                name="procedure_one_effective_version",
            ),
            models.CheckConstraint(
                condition=Q(status__in=VersionStatus.values), name="procedure_version_status_valid"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="procedure_version_positive"),
            models.CheckConstraint(
                condition=~Q(status=VersionStatus.ISSUED) | Q(effective_at__isnull=True),
                name="procedure_version_issued_not_in_force",
            ),
            models.CheckConstraint(
                condition=Q(status=VersionStatus.ISSUED) | Q(effective_at__isnull=False),
                name="procedure_version_in_force_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.procedure.number} v{self.number}"

    def signature_content(self) -> dict[str, Any]:
        """What QA approves: the version's identity, date, summary and file (not its later
        coming into force)."""
        return {
            "procedure": self.procedure.number,
            "title": self.procedure.title,
            "number": self.number,
            "effective_on": self.effective_on.isoformat(),
            "change_summary": self.change_summary,
            "file_sha256": self.file_sha256,
        }


class TrainingItem(TimeStampedModel):
    """Something a person must hold to be qualified (TR-01, TR-03, TR-04, TR-07)."""

    code = models.CharField(_("code"), max_length=NUMBER_MAX, unique=True)
    title = models.CharField(_("title"), max_length=TITLE_MAX)
    kind = models.CharField(_("kind"), max_length=16, choices=ItemKind.choices)
    description = models.TextField(_("description"), max_length=TEXT_MAX, blank=True)
    procedure = models.OneToOneField(
        Procedure,
        verbose_name=_("procedure"),
        on_delete=models.PROTECT,
        related_name="training_item",
        null=True,
        blank=True,
    )
    validity_months = models.PositiveSmallIntegerField(
        _("valid for (months)"),
        null=True,
        blank=True,
        help_text=_("Empty: never expires. The GxP refresher expires after 12 months."),
    )
    due_days = models.PositiveSmallIntegerField(
        _("days allowed"), default=30, help_text=_("Days from assignment to the due date.")
    )
    active = models.BooleanField(_("active"), default=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("training item")
        verbose_name_plural = _("training items")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=ItemKind.values), name="training_item_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind=ItemKind.SOP, procedure__isnull=False)
                | (~Q(kind=ItemKind.SOP) & Q(procedure__isnull=True)),
                name="training_item_sop_has_procedure",
            ),
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(kind=ItemKind.ACCOUNTABILITY),
                name="training_item_one_accountability",
            ),
            models.CheckConstraint(
                condition=Q(validity_months__isnull=True) | Q(validity_months__gte=1),
                name="training_item_validity_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.title}"


class Curriculum(TimeStampedModel):
    """What a role needs at one site, or at every site when `site` is empty (TR-05)."""

    role = models.CharField(_("role"), max_length=20, choices=CurriculumRole.choices)
    site = models.ForeignKey(
        Site,
        verbose_name=_("site"),
        on_delete=models.PROTECT,
        related_name="curricula",
        null=True,
        blank=True,
    )
    title = models.CharField(_("title"), max_length=TITLE_MAX)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("curriculum")
        verbose_name_plural = _("curricula")
        ordering = ["role", "site__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["role", "site"],
                condition=Q(site__isnull=False),
                name="curriculum_one_per_role_site",
            ),
            models.UniqueConstraint(
                fields=["role"],
                condition=Q(site__isnull=True),
                name="curriculum_one_per_role_everywhere",
            ),
            models.CheckConstraint(
                condition=Q(role__in=CurriculumRole.values), name="curriculum_role_valid"
            ),
        ]

    def __str__(self) -> str:
        where = self.site.code if self.site is not None else "every site"
        return f"{self.get_role_display()} — {where}"


class Requirement(TimeStampedModel):
    """One item of a curriculum, from `created_at` until `removed_at`."""

    curriculum = models.ForeignKey(
        Curriculum,
        verbose_name=_("curriculum"),
        on_delete=models.PROTECT,
        related_name="requirements",
    )
    item = models.ForeignKey(
        TrainingItem,
        verbose_name=_("item"),
        on_delete=models.PROTECT,
        related_name="requirements",
    )
    removed_at = models.DateTimeField(_("removed at"), null=True, blank=True)
    removed_by = _user(_("removed by"), null=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("curriculum item")
        verbose_name_plural = _("curriculum items")
        ordering = ["curriculum", "item__code"]
        constraints = [
            models.UniqueConstraint(
                fields=["curriculum", "item"],
                condition=Q(removed_at__isnull=True),
                name="requirement_once_per_curriculum",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.curriculum}: {self.item.code}"


class TrainingRecord(TimeStampedModel):
    """The signed proof that a person completed an item (TR-01, TR-05). Never changed."""

    user = _user(_("trainee"), "training_records")
    item = models.ForeignKey(
        TrainingItem, verbose_name=_("item"), on_delete=models.PROTECT, related_name="records"
    )
    procedure_version = models.ForeignKey(
        ProcedureVersion,
        verbose_name=_("procedure version"),
        on_delete=models.PROTECT,
        related_name="records",
        null=True,
        blank=True,
    )
    method = models.CharField(_("how"), max_length=14, choices=RecordMethod.choices)
    completed_at = models.DateTimeField(_("completed at"))
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    result = models.CharField(
        _("result"), max_length=20, choices=AssessmentResult.choices, blank=True
    )
    trainer = _user(_("trainer"), null=True)
    notes = models.TextField(_("notes"), max_length=TEXT_MAX, blank=True)
    signature = models.ForeignKey(
        ElectronicSignature,
        verbose_name=_("signature"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("training record")
        verbose_name_plural = _("training records")
        ordering = ["-completed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(method__in=RecordMethod.values), name="training_record_method_valid"
            ),
            models.CheckConstraint(
                condition=~Q(method=RecordMethod.ASSESSED)
                | (~Q(result="") & Q(trainer__isnull=False)),
                name="training_record_assessment_has_result",
            ),
            models.CheckConstraint(
                condition=Q(trainer__isnull=True) | ~Q(trainer=models.F("user")),
                name="training_record_trainer_not_trainee",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "item", "-completed_at"], name="training_record_user_idx"),
            models.Index(fields=["item", "expires_at"], name="training_record_expiry_idx"),
        ]

    def __str__(self) -> str:
        version = f" v{self.procedure_version.number}" if self.procedure_version is not None else ""
        return f"{self.user} — {self.item.code}{version}"

    @property
    def passed(self) -> bool:
        return self.result != AssessmentResult.NOT_YET_COMPETENT

    def signature_content(self) -> dict[str, Any]:
        return {
            "trainee": self.user.get_username(),
            "item": self.item.code,
            "item_title": self.item.title,
            "procedure_version": str(self.procedure_version)
            if self.procedure_version is not None
            else "",
            "file_sha256": self.procedure_version.file_sha256
            if self.procedure_version is not None
            else "",
            "method": self.method,
            "completed_at": self.completed_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else "",
            "result": self.result,
            "trainer": self.trainer.get_username() if self.trainer_id else "",
            "notes": self.notes,
        }


class Assignment(TimeStampedModel):
    """One person asked to complete one item by a date (TR-03)."""

    user = _user(_("trainee"), "training_assignments")
    item = models.ForeignKey(
        TrainingItem,
        verbose_name=_("item"),
        on_delete=models.PROTECT,
        related_name="assignments",
    )
    procedure_version = models.ForeignKey(
        ProcedureVersion,
        verbose_name=_("procedure version"),
        on_delete=models.PROTECT,
        related_name="assignments",
        null=True,
        blank=True,
    )
    site = models.ForeignKey(
        Site,
        verbose_name=_("site"),
        on_delete=models.PROTECT,
        related_name="training_assignments",
        null=True,
        blank=True,
    )
    cause = models.CharField(_("why"), max_length=14, choices=AssignmentCause.choices)
    due_on = models.DateField(_("due on"))
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=AssignmentStatus.choices,
        default=AssignmentStatus.OPEN,
    )
    record = models.ForeignKey(
        TrainingRecord,
        verbose_name=_("completed by"),
        on_delete=models.PROTECT,
        related_name="assignments",
        null=True,
        blank=True,
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    reminded_at = models.DateTimeField(_("reminded at"), null=True, blank=True)
    escalated_at = models.DateTimeField(_("escalated at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("training assignment")
        verbose_name_plural = _("training assignments")
        ordering = ["due_on", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "item"],
                condition=Q(status=AssignmentStatus.OPEN),
                name="assignment_one_open_per_item",
            ),
            models.CheckConstraint(
                condition=Q(status__in=AssignmentStatus.values), name="assignment_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=AssignmentStatus.COMPLETED) | Q(record__isnull=False),
                name="assignment_completed_has_record",
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "due_on"],
                condition=Q(status=AssignmentStatus.OPEN),
                name="assignment_open_due_idx",
            ),
            models.Index(fields=["user", "status"], name="assignment_user_idx"),
        ]

    def __str__(self) -> str:
        version = f" v{self.procedure_version.number}" if self.procedure_version is not None else ""
        return f"{self.user} — {self.item.code}{version} by {self.due_on:%d %b %Y}"


#
# Derived figures (not GMP records)
#


class SiteComplianceSnapshot(models.Model):
    """A site's training compliance as last computed from the records (TR-06, SO-07): how many
    of the items its people need they hold, and how many are overdue. Derived data, never
    edited: `training.oversight.compliance_snapshots_refresh` recomputes it (hourly, and when
    the oversight dashboard finds it missing or older than an hour), so the dashboard reads 200
    sites' figures in one query instead of evaluating every person's training each minute."""

    site = models.OneToOneField(
        Site, verbose_name=_("site"), on_delete=models.CASCADE, related_name="+"
    )
    held = models.PositiveIntegerField(_("items held"), default=0)
    required = models.PositiveIntegerField(_("items required"), default=0)
    overdue = models.PositiveIntegerField(_("items overdue"), default=0)
    computed_at = models.DateTimeField(_("computed at"))

    class Meta:
        verbose_name = _("site compliance snapshot")
        verbose_name_plural = _("site compliance snapshots")
        constraints = [
            models.CheckConstraint(
                condition=Q(held__lte=models.F("required")), name="compliance_held_within_required"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site_id}: {self.held}/{self.required}"
