"""Spoke sites, the Control Site, memberships, onboarding, equipment, audits and the MHRA log."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlsite.audit.history import RegulatedHistory
from controlsite.base_models import TimeStampedModel
from sites.choices import (
    STATUS_BADGE,
    ChecklistItemStatus,
    EquipmentStatus,
    FindingGrade,
    NotificationKind,
    SiteAuditStatus,
    SiteKind,
    SiteRole,
    SiteStatus,
)

SITE_CODE_PATTERN = r"^[A-Z0-9]{2,8}$"
site_code_validator = RegexValidator(
    SITE_CODE_PATTERN, _("2–8 upper-case letters and digits, e.g. LON1.")
)

#
# The Control Site
#


class ControlSite(TimeStampedModel):
    """The licence holder: the one location named on the manufacturer's licence (SO-06, MF-05).

    There is exactly one row.
    """

    singleton = models.BooleanField(default=True, unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200)
    address = models.TextField(_("address"))
    licence_number = models.CharField(_("manufacturer's licence number"), max_length=64)
    scope_poc = models.BooleanField(_("licensed for point-of-care manufacture"), default=True)
    scope_mm = models.BooleanField(_("licensed for modular manufacture"), default=False)
    regulator_contacts = models.TextField(
        _("regulator contacts"), blank=True, help_text=_("MHRA inspectorate and case contacts.")
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("Control Site")
        verbose_name_plural = _("Control Site")
        constraints = [
            models.CheckConstraint(condition=Q(singleton=True), name="controlsite_is_singleton"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope_label(self) -> str:
        parts = [label for on, label in ((self.scope_poc, "POC"), (self.scope_mm, "MM")) if on]
        return " + ".join(parts) or "—"


class NamedQP(TimeStampedModel):
    """A Qualified Person named on the licence, from when to when (RP-08)."""

    control_site = models.ForeignKey(
        ControlSite,
        verbose_name=_("Control Site"),
        on_delete=models.PROTECT,
        related_name="named_qps",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("QP"),
        on_delete=models.PROTECT,
        related_name="qp_namings",
    )
    named_from = models.DateField(_("named from"))
    named_until = models.DateField(_("named until"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("named QP")
        verbose_name_plural = _("named QPs")
        constraints = [
            models.UniqueConstraint(
                fields=["control_site", "user"],
                condition=Q(named_until__isnull=True),
                name="namedqp_one_live_naming",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} (QP)"


#
# Spoke sites
#


class Site(TimeStampedModel):
    """A place where product is made or tested under the Control Site's licence (SO-01).

    The code goes into batch numbers: it is unique, never changed and never reused, so a site is
    ceased, never deleted.
    """

    code = models.CharField(
        _("code"),
        max_length=8,
        unique=True,
        validators=[site_code_validator],
        help_text=_("2–8 upper-case letters and digits; used in batch numbers; never changes."),
    )
    name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=20, choices=SiteKind.choices)
    host_organisation = models.CharField(
        _("host organisation"), max_length=200, blank=True, help_text=_("e.g. an NHS trust.")
    )
    address = models.TextField(_("address"), blank=True)
    current_location = models.TextField(
        _("current location"), blank=True, help_text=_("For a modular unit: where it is now.")
    )
    nominated_person = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("nominated person (site lead)"),
        on_delete=models.PROTECT,
        related_name="nominated_for_sites",
        null=True,
        blank=True,
    )
    technical_agreement_ref = models.CharField(
        _("technical agreement reference"), max_length=100, blank=True
    )
    status = models.CharField(
        _("status"), max_length=16, choices=SiteStatus.choices, default=SiteStatus.PROPOSED
    )
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("site")
        verbose_name_plural = _("sites")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(code__regex=SITE_CODE_PATTERN), name="site_code_format"
            ),
            models.CheckConstraint(
                condition=Q(status__in=SiteStatus.values), name="site_status_valid"
            ),
            models.CheckConstraint(condition=Q(kind__in=SiteKind.values), name="site_kind_valid"),
        ]
        indexes = [
            models.Index(fields=["status", "code"], name="site_status_idx"),
            models.Index(fields=["kind", "code"], name="site_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    @property
    def status_badge(self) -> str:
        """The badge colour of the status (sites.choices.STATUS_BADGE)."""
        return STATUS_BADGE[SiteStatus(self.status)]

    @property
    def location(self) -> str:
        if self.kind == SiteKind.MODULAR_UNIT and self.current_location:
            return self.current_location
        return self.address


class SiteStatusChange(models.Model):
    """One step of a site's lifecycle, written once and never changed (healthchecks' Flip).

    A QA e-signature on activation, suspension, reinstatement or cessation binds to this row, so
    it stays valid as the site moves on to later steps.
    """

    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="status_changes"
    )
    action = models.CharField(_("action"), max_length=20)
    from_status = models.CharField(_("from"), max_length=16, choices=SiteStatus.choices)
    to_status = models.CharField(_("to"), max_length=16, choices=SiteStatus.choices)
    reason = models.TextField(_("reason"))
    changed_at = models.DateTimeField(_("changed at"))
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        on_delete=models.PROTECT,
        related_name="+",
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("site status change")
        verbose_name_plural = _("site status changes")
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["site", "changed_at"], name="sitestatuschange_site_idx")]

    def __str__(self) -> str:
        return f"{self.site.code}: {self.from_status} → {self.to_status}"

    def signature_content(self) -> dict[str, object]:
        return {
            "site": self.site.code,
            "action": self.action,
            "from": self.from_status,
            "to": self.to_status,
            "reason": self.reason,
            "changed_at": self.changed_at,
            "changed_by": self.changed_by_id,
        }


class SiteMove(TimeStampedModel):
    """A modular unit moved: where to, when and why (SO-01 "dated history")."""

    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="moves"
    )
    location = models.TextField(_("new location"))
    moved_at = models.DateTimeField(_("moved at"))
    reason = models.TextField(_("reason"))

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("move")
        verbose_name_plural = _("moves")
        ordering = ["-moved_at", "-id"]

    def __str__(self) -> str:
        return f"{self.site.code} → {self.location[:40]}"


class SiteMembership(TimeStampedModel):
    """A person's role at a site; it decides what they see and may do there (design §1)."""

    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("person"),
        on_delete=models.PROTECT,
        related_name="site_memberships",
    )
    role = models.CharField(_("role at the site"), max_length=20, choices=SiteRole.choices)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("site membership")
        verbose_name_plural = _("site memberships")
        ordering = ["site__code", "role", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "user", "role"],
                condition=Q(ended_at__isnull=True),
                name="membership_one_live_per_role",
            ),
            models.CheckConstraint(
                condition=Q(role__in=SiteRole.values), name="membership_role_valid"
            ),
        ]
        indexes = [
            models.Index(
                fields=["user", "site"],
                condition=Q(ended_at__isnull=True),
                name="membership_live_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} at {self.site.code}"


#
# Onboarding
#


class ChecklistItemTemplate(TimeStampedModel):
    """An item every new site's onboarding checklist starts with (configurable, SO-03)."""

    key = models.SlugField(_("key"), max_length=50, unique=True)
    title = models.CharField(_("title"), max_length=200)
    guidance = models.TextField(_("what counts as evidence"), blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    active = models.BooleanField(_("used for new sites"), default=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("checklist item template")
        verbose_name_plural = _("checklist item templates")
        ordering = ["position", "key"]

    def __str__(self) -> str:
        return self.title


def evidence_path(instance: OnboardingItem, filename: str) -> str:
    return f"sites/{instance.site.code}/onboarding/{instance.key}/{filename}"


class OnboardingItem(TimeStampedModel):
    """One item of a site's onboarding checklist: evidence, then a signed sign-off."""

    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="checklist"
    )
    key = models.SlugField(_("key"), max_length=50)
    title = models.CharField(_("title"), max_length=200)
    guidance = models.TextField(_("what counts as evidence"), blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    status = models.CharField(
        _("status"),
        max_length=8,
        choices=ChecklistItemStatus.choices,
        default=ChecklistItemStatus.OPEN,
    )
    evidence_file = models.FileField(
        _("evidence file"), upload_to=evidence_path, blank=True, max_length=300
    )
    evidence_sha256 = models.CharField(_("evidence SHA-256"), max_length=64, blank=True)
    evidence_reference = models.CharField(
        _("evidence reference"),
        max_length=300,
        blank=True,
        help_text=_("A document number or location, when no file is uploaded."),
    )
    signed_off_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("signed off by"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    signed_off_at = models.DateTimeField(_("signed off at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("onboarding item")
        verbose_name_plural = _("onboarding items")
        ordering = ["site", "position", "key"]
        constraints = [
            models.UniqueConstraint(fields=["site", "key"], name="onboardingitem_key_per_site"),
            models.CheckConstraint(
                condition=Q(status__in=ChecklistItemStatus.values),
                name="onboardingitem_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(status=ChecklistItemStatus.OPEN)
                | (Q(signed_off_at__isnull=False) & Q(signed_off_by__isnull=False)),
                name="onboardingitem_done_is_signed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site.code}: {self.title}"

    @property
    def has_evidence(self) -> bool:
        return bool(self.evidence_file) or bool(self.evidence_reference)


#
# Equipment and site audits
#


class Equipment(TimeStampedModel):
    """A piece of equipment at a site and where it stands in qualification."""

    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="equipment"
    )
    kind = models.CharField(_("kind"), max_length=100, help_text=_("e.g. closed-system processor"))
    name = models.CharField(_("name"), max_length=200, blank=True)
    serial_number = models.CharField(_("serial number"), max_length=100)
    qualification_status = models.CharField(
        _("qualification status"),
        max_length=20,
        choices=EquipmentStatus.choices,
        default=EquipmentStatus.NOT_QUALIFIED,
    )
    next_due = models.DateField(_("next qualification due"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("equipment")
        verbose_name_plural = _("equipment")
        ordering = ["site", "kind", "serial_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "kind", "serial_number"], name="equipment_unique_serial"
            ),
            models.CheckConstraint(
                condition=Q(qualification_status__in=EquipmentStatus.values),
                name="equipment_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.serial_number} ({self.site.code})"


class SiteAudit(TimeStampedModel):
    """A planned or completed audit (or self-inspection) of a site (SO-10)."""

    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="audits"
    )
    title = models.CharField(_("title"), max_length=200)
    planned_for = models.DateField(_("planned for"))
    done_on = models.DateField(_("done on"), null=True, blank=True)
    lead_auditor = models.CharField(_("lead auditor"), max_length=200, blank=True)
    summary = models.TextField(_("summary"), blank=True)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=SiteAuditStatus.choices,
        default=SiteAuditStatus.PLANNED,
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("site audit")
        verbose_name_plural = _("site audits")
        ordering = ["-planned_for", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=SiteAuditStatus.values), name="siteaudit_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=SiteAuditStatus.DONE) | Q(done_on__isnull=False),
                name="siteaudit_done_has_date",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.site.code}: {self.title}"


class AuditFinding(TimeStampedModel):
    """A graded finding of a site audit; a CAPA links to it by id (deviations app)."""

    audit = models.ForeignKey(
        SiteAudit, verbose_name=_("audit"), on_delete=models.PROTECT, related_name="findings"
    )
    grade = models.CharField(_("grade"), max_length=10, choices=FindingGrade.choices)
    description = models.TextField(_("description"))
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("audit finding")
        verbose_name_plural = _("audit findings")
        ordering = ["audit", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(grade__in=FindingGrade.values), name="auditfinding_grade_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_grade_display()} finding at {self.audit.site.code}"


#
# What the MHRA must be told
#


class RegulatoryNotification(TimeStampedModel):
    """Something the Control Site must notify the MHRA of, and whether it was (RP-03, RP-08)."""

    kind = models.CharField(_("kind"), max_length=20, choices=NotificationKind.choices)
    site = models.ForeignKey(
        Site,
        verbose_name=_("site"),
        on_delete=models.PROTECT,
        related_name="regulatory_notifications",
        null=True,
        blank=True,
    )
    subject = models.CharField(_("subject"), max_length=300)
    event_at = models.DateTimeField(_("event at"))
    due_on = models.DateField(_("due on"))
    sent_on = models.DateField(_("sent on"), null=True, blank=True)
    reference = models.CharField(_("MHRA reference"), max_length=100, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("sent by"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("regulatory notification")
        verbose_name_plural = _("regulatory notifications")
        ordering = ["sent_on", "due_on", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=NotificationKind.values), name="regnotification_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(sent_on__isnull=True) | ~Q(reference=""),
                name="regnotification_sent_has_reference",
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_on"],
                condition=Q(sent_on__isnull=True),
                name="regnotification_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.subject
