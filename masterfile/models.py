"""Products, their POC/MM master files, versions, sections, the frozen site annex, review,
approval and PDF exports (design §3 and §7; MF-01…MF-12)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from controlsite.audit.history import RegulatedHistory
from controlsite.base_models import TimeStampedModel
from masterfile.choices import (
    DEFAULT_REVIEW_INTERVAL_MONTHS,
    EXPORT_BADGE,
    OPEN_STATUSES,
    SECTION_TITLE_MAX,
    SHELF_LIFE_MAX_MINUTES,
    VERSION_BADGE,
    ApprovalCapacity,
    Designation,
    ExportStatus,
    ProductSiteRole,
    SupplyStatus,
    VersionStatus,
)
from sites.models import Site

PRODUCT_CODE_PATTERN = r"^[A-Z0-9][A-Z0-9-]{1,15}$"
SECTION_KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
product_code_validator = RegexValidator(
    PRODUCT_CODE_PATTERN, _("2–16 upper-case letters, digits and hyphens, e.g. CAR-T-01.")
)
section_key_validator = RegexValidator(
    SECTION_KEY_PATTERN, _("lower-case letters, digits and hyphens, e.g. control-strategy.")
)


def shelf_life_label(minutes: int) -> str:
    """45 min, 6 h, 2 h 30 min, 3 days — as a person says it."""
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day" if days == 1 else f"{days} days"
    hours, mins = divmod(minutes, 60)
    if hours and mins:
        return f"{hours} h {mins} min"
    return f"{hours} h" if hours else f"{mins} min"


class Product(TimeStampedModel):
    """A decentralised product: what the master file is about (MF-01, MF-08).

    The reference site is a non-null foreign key, so the database holds exactly one per product.
    """

    code = models.CharField(
        _("code"), max_length=16, unique=True, validators=[product_code_validator]
    )
    name = models.CharField(_("name"), max_length=200, unique=True)
    designation = models.CharField(_("designation"), max_length=8, choices=Designation.choices)
    designation_reference = models.CharField(_("MHRA designation reference"), max_length=64)
    designation_date = models.DateField(_("designation date"))
    dosage_form = models.CharField(_("dosage form"), max_length=120)
    shelf_life_minutes = models.PositiveIntegerField(
        _("shelf life (minutes)"),
        validators=[MinValueValidator(1), MaxValueValidator(SHELF_LIFE_MAX_MINUTES)],
        help_text=_("From completion of manufacture; minutes to days."),
    )
    supply_status = models.CharField(
        _("supply status"), max_length=20, choices=SupplyStatus.choices
    )
    reference_site = models.ForeignKey(
        Site,
        verbose_name=_("reference site"),
        on_delete=models.PROTECT,
        related_name="reference_for_products",
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(code__regex=PRODUCT_CODE_PATTERN), name="product_code_format"
            ),
            models.CheckConstraint(
                condition=Q(designation__in=Designation.values), name="product_designation_valid"
            ),
            models.CheckConstraint(
                condition=Q(supply_status__in=SupplyStatus.values),
                name="product_supply_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(shelf_life_minutes__gte=1)
                & Q(shelf_life_minutes__lte=SHELF_LIFE_MAX_MINUTES),
                name="product_shelf_life_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    @property
    def shelf_life(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.shelf_life_minutes)

    @property
    def shelf_life_display(self) -> str:
        return shelf_life_label(self.shelf_life_minutes)


class ProductSite(TimeStampedModel):
    """A site that makes or tests a product. The annex of each version is generated from these
    links and the site register when the version is submitted (MF-04 a-c)."""

    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="site_links"
    )
    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="product_links"
    )
    role = models.CharField(_("role"), max_length=16, choices=ProductSiteRole.choices)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("product site")
        verbose_name_plural = _("product sites")
        constraints = [
            models.UniqueConstraint(
                fields=["product", "site", "role"],
                condition=Q(ended_at__isnull=True),
                name="productsite_one_live_link",
            ),
            models.CheckConstraint(
                condition=Q(role__in=ProductSiteRole.values), name="productsite_role_valid"
            ),
        ]
        indexes = [models.Index(fields=["site", "product"], name="productsite_site_idx")]

    def __str__(self) -> str:
        return f"{self.product.code} @ {self.site.code} ({self.get_role_display()})"


class SectionTemplate(TimeStampedModel):
    """One heading of the default master-file contents. The list is data: a Control Site adds,
    renames and reorders its sections to follow the MHRA's DMMF form (MF-04)."""

    key = models.CharField(_("key"), max_length=64, unique=True, validators=[section_key_validator])
    title = models.CharField(_("title"), max_length=SECTION_TITLE_MAX)
    position = models.PositiveIntegerField(_("position"))
    guidance = models.TextField(_("what to write here"), blank=True)
    regulatory_reference = models.CharField(_("regulatory reference"), max_length=120, blank=True)
    active = models.BooleanField(_("used for new master files"), default=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("section template")
        verbose_name_plural = _("section templates")
        ordering = ["position", "key"]
        constraints = [
            models.CheckConstraint(
                condition=Q(key__regex=SECTION_KEY_PATTERN), name="sectiontemplate_key_format"
            ),
        ]

    def __str__(self) -> str:
        return self.title


class MasterFile(TimeStampedModel):
    """The one master file (DMMF) of a product (MF-03)."""

    product = models.OneToOneField(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="master_file"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.PROTECT,
        related_name="owned_master_files",
        help_text=_("Reminded before the next review date (MF-12)."),
    )
    review_interval_months = models.PositiveSmallIntegerField(
        _("review interval (months)"),
        default=DEFAULT_REVIEW_INTERVAL_MONTHS,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("master file")
        verbose_name_plural = _("master files")
        ordering = ["product__code"]

    def __str__(self) -> str:
        return f"Master file {self.product.code}"


class MasterFileVersion(TimeStampedModel):
    """One edition of a master file. Content (sections, change summary, annex) is editable only
    in draft and frozen afterwards, so the QA and QP signatures stay valid as it moves on."""

    master_file = models.ForeignKey(
        MasterFile,
        verbose_name=_("master file"),
        on_delete=models.PROTECT,
        related_name="versions",
    )
    number = models.PositiveIntegerField(_("version"))
    status = models.CharField(
        _("status"), max_length=16, choices=VersionStatus.choices, default=VersionStatus.DRAFT
    )
    change_summary = models.TextField(_("change summary"), blank=True)
    based_on = models.ForeignKey(
        "self",
        verbose_name=_("based on"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    approved_at = models.DateTimeField(_("approved at"), null=True, blank=True)
    effective_date = models.DateField(_("effective date"), null=True, blank=True)
    superseded_at = models.DateTimeField(_("superseded at"), null=True, blank=True)
    next_review_date = models.DateField(_("next review date"), null=True, blank=True)
    review_reminder_sent_for = models.DateField(
        _("review reminder sent for"), null=True, blank=True, editable=False
    )
    status_changed_at = models.DateTimeField(_("status changed at"), null=True, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("master file version")
        verbose_name_plural = _("master file versions")
        ordering = ["master_file", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["master_file", "number"], name="masterfileversion_number_unique"
            ),
            models.UniqueConstraint(
                fields=["master_file"],
                condition=Q(status=VersionStatus.EFFECTIVE),
                name="masterfileversion_one_effective",
            ),
            models.UniqueConstraint(
                fields=["master_file"],
                condition=Q(status__in=sorted(OPEN_STATUSES)),
                name="masterfileversion_one_open",
            ),
            models.CheckConstraint(
                condition=Q(status__in=VersionStatus.values),
                name="masterfileversion_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(number__gte=1), name="masterfileversion_number_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_review_date"], name="mfversion_review_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.master_file.product.code} master file v{self.number}"

    @property
    def label(self) -> str:
        return f"v{self.number}"

    @property
    def status_badge(self) -> str:
        return VERSION_BADGE[VersionStatus(self.status)]

    @property
    def is_editable(self) -> bool:
        return self.status == VersionStatus.DRAFT

    def signature_content(self) -> dict[str, Any]:
        """What the approvers sign: the content, not the status or dates, which move on after
        approval (ES-02). Any change to a section, the summary or the annex invalidates them."""
        return {
            "master_file": self.master_file_id,
            "number": self.number,
            "change_summary": self.change_summary,
            "sections": [
                [s.key, s.title, s.position, s.body]
                for s in self.sections.order_by("position", "key")
            ],
            "annex": [
                list(row)
                for row in self.annex_entries.order_by("role", "site_code").values_list(
                    "site_code",
                    "role",
                    "site_name",
                    "kind",
                    "location",
                    "site_status",
                    "host",
                    "lead",
                )
            ],
        }


class Section(TimeStampedModel):
    """An ordered, keyed chapter of a version, with a Markdown body."""

    version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("version"),
        on_delete=models.PROTECT,
        related_name="sections",
    )
    key = models.CharField(_("key"), max_length=64, validators=[section_key_validator])
    title = models.CharField(_("title"), max_length=SECTION_TITLE_MAX)
    position = models.PositiveIntegerField(_("position"))
    body = models.TextField(_("body (Markdown)"), blank=True)
    guidance = models.TextField(_("what to write here"), blank=True)
    regulatory_reference = models.CharField(_("regulatory reference"), max_length=120, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("section")
        verbose_name_plural = _("sections")
        ordering = ["version", "position", "key"]
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="section_key_unique"),
        ]

    def __str__(self) -> str:
        return self.title


class AnnexEntry(TimeStampedModel):
    """One site in a version's site annex, copied from the register when the version was
    submitted and never changed afterwards (MF-04 a-c, MF-05)."""

    version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("version"),
        on_delete=models.PROTECT,
        related_name="annex_entries",
    )
    site = models.ForeignKey(
        Site, verbose_name=_("site"), on_delete=models.PROTECT, related_name="annex_entries"
    )
    role = models.CharField(_("role"), max_length=16, choices=ProductSiteRole.choices)
    is_reference = models.BooleanField(_("reference site"), default=False)
    site_code = models.CharField(_("code"), max_length=8)
    site_name = models.CharField(_("name"), max_length=200)
    kind = models.CharField(_("kind"), max_length=60)
    location = models.TextField(_("address or location"), blank=True)
    site_status = models.CharField(_("status"), max_length=16)
    host = models.CharField(_("host organisation"), max_length=200, blank=True)
    lead = models.CharField(_("site lead"), max_length=300, blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("annex entry")
        verbose_name_plural = _("annex entries")
        ordering = ["version", "role", "site_code"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "site", "role"], name="annexentry_site_once"
            ),
        ]
        indexes = [models.Index(fields=["site", "version"], name="annexentry_site_idx")]

    def __str__(self) -> str:
        return f"{self.site_code} ({self.get_role_display()})"


class ReviewComment(TimeStampedModel):
    """A reviewer's comment on a version, optionally on one section."""

    version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("version"),
        on_delete=models.PROTECT,
        related_name="comments",
    )
    section = models.ForeignKey(
        Section,
        verbose_name=_("section"),
        on_delete=models.PROTECT,
        related_name="comments",
        null=True,
        blank=True,
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("author"),
        on_delete=models.PROTECT,
        related_name="master_file_comments",
    )
    body = models.TextField(_("comment"))
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    resolution = models.TextField(_("resolution"), blank=True)

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("review comment")
        verbose_name_plural = _("review comments")
        ordering = ["version", "created_at", "id"]

    def __str__(self) -> str:
        return f"Comment {self.pk} on {self.version}"


class VersionApproval(TimeStampedModel):
    """One of the two approvals of a version, with its e-signature. The database holds one per
    capacity and one per person, so QA and the QP are always two different people."""

    version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("version"),
        on_delete=models.PROTECT,
        related_name="approvals",
    )
    capacity = models.CharField(_("capacity"), max_length=8, choices=ApprovalCapacity.choices)
    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("signer"),
        on_delete=models.PROTECT,
        related_name="master_file_approvals",
    )
    signature = models.OneToOneField(
        "controlsite.ElectronicSignature",
        verbose_name=_("signature"),
        on_delete=models.PROTECT,
        related_name="master_file_approval",
    )
    withdrawn_at = models.DateTimeField(
        _("withdrawn at"),
        null=True,
        blank=True,
        help_text=_("Set when the version went back to draft after this approval."),
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("version approval")
        verbose_name_plural = _("version approvals")
        ordering = ["version", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "capacity"],
                condition=Q(withdrawn_at__isnull=True),
                name="versionapproval_one_per_capacity",
            ),
            models.UniqueConstraint(
                fields=["version", "signer"],
                condition=Q(withdrawn_at__isnull=True),
                name="versionapproval_two_people",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_capacity_display()} approval of {self.version}"


def export_upload_to(instance: MasterFileExport, filename: str) -> str:
    return f"exports/masterfile/{instance.created_at:%Y/%m}/{filename}"


class MasterFileExport(TimeStampedModel):
    """A PDF/A export of one version: a job row with status and progress, then the file and its
    SHA-256 (design §7; MF-06, DI-07). Requests, completions, failures and every download are
    audit events."""

    version = models.ForeignKey(
        MasterFileVersion,
        verbose_name=_("version"),
        on_delete=models.PROTECT,
        related_name="exports",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.PROTECT,
        related_name="master_file_exports",
    )
    status = models.CharField(
        _("status"), max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(
        _("progress (%)"), default=0, validators=[MaxValueValidator(100)]
    )
    stage = models.CharField(_("stage"), max_length=60, blank=True)
    watermarked = models.BooleanField(_("watermarked as draft"), default=False)
    file = models.FileField(_("file"), upload_to=export_upload_to, blank=True, max_length=255)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(_("size (bytes)"), null=True, blank=True)
    page_count = models.PositiveIntegerField(_("pages"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("master file export")
        verbose_name_plural = _("master file exports")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ExportStatus.values), name="masterfileexport_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(progress__lte=100), name="masterfileexport_progress_range"
            ),
        ]
        indexes = [models.Index(fields=["version", "-created_at"], name="mfexport_version_idx")]

    def __str__(self) -> str:
        return f"Export {self.pk} of {self.version}"

    @property
    def status_badge(self) -> str:
        return EXPORT_BADGE[ExportStatus(self.status)]

    @property
    def filename(self) -> str:
        version = self.version
        return f"{version.master_file.product.code}-master-file-v{version.number}-{self.pk}.pdf"


#
# Annual reports (issue 8 §7; MF-07, RP-01)
#

# The MHRA's deadline for the annual report was not found (regulatory.md MF-07, RP-01): the
# Control Site's own policy is the end of March after the year reported on.
ANNUAL_REPORT_DUE_MONTH = 3
ANNUAL_REPORT_DUE_DAY = 31
ANNUAL_REPORT_FIRST_YEAR = 2000
SUBMISSION_REFERENCE_MAX = 100


def annual_report_due_on(year: int) -> dt.date:
    """When the report on `year` is due with the MHRA (MF-07 due-date tracking)."""
    return dt.date(year + 1, ANNUAL_REPORT_DUE_MONTH, ANNUAL_REPORT_DUE_DAY)


def annual_report_upload_to(instance: AnnualReport, filename: str) -> str:
    return f"reports/annual/{instance.created_at:%Y/%m}/{filename}"


class AnnualReport(TimeStampedModel):
    """The annual report of one product for one calendar year (MF-07, RP-01): site-list changes,
    batches per site, deviations and CAPA, comparability results and charts, as a PDF/A made in
    the background — a job row with status and progress, then the file and its SHA-256, as the
    master-file export is — and the record of its submission to the MHRA (date and reference).

    A year may be reported on more than once (late results, a correction): each request is a
    new report, and the one submitted says so. One report per product and year is queued or
    running at a time (a database constraint). Requests, completions, failures, downloads and
    the submission are audit events; the row's history keeps every status change (progress
    ticks are not history)."""

    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="annual_reports"
    )
    year = models.PositiveSmallIntegerField(
        _("year"), validators=[MinValueValidator(ANNUAL_REPORT_FIRST_YEAR)]
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.PROTECT,
        related_name="annual_reports_requested",
    )
    status = models.CharField(
        _("status"), max_length=8, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(
        _("progress (%)"), default=0, validators=[MaxValueValidator(100)]
    )
    stage = models.CharField(_("stage"), max_length=60, blank=True)
    data_as_at = models.DateTimeField(
        _("data as at"),
        null=True,
        blank=True,
        help_text=_("When the records were read; a year not yet over is reported up to then."),
    )
    year_complete = models.BooleanField(
        _("whole year"),
        default=False,
        help_text=_("False when the report was made before the year ended (year to date)."),
    )
    file = models.FileField(
        _("file"), upload_to=annual_report_upload_to, blank=True, max_length=255
    )
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    size_bytes = models.PositiveBigIntegerField(_("size (bytes)"), null=True, blank=True)
    page_count = models.PositiveIntegerField(_("pages"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    submitted_on = models.DateField(_("submitted to the MHRA on"), null=True, blank=True)
    submission_reference = models.CharField(
        _("MHRA submission reference"), max_length=SUBMISSION_REFERENCE_MAX, blank=True
    )
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("submission recorded by"),
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
    )
    submission_recorded_at = models.DateTimeField(
        _("submission recorded at"), null=True, blank=True
    )

    history = RegulatedHistory()

    class Meta:
        verbose_name = _("annual report")
        verbose_name_plural = _("annual reports")
        ordering = ["-year", "-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ExportStatus.values), name="annualreport_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(progress__lte=100), name="annualreport_progress_range"
            ),
            models.CheckConstraint(
                condition=Q(year__gte=ANNUAL_REPORT_FIRST_YEAR), name="annualreport_year_range"
            ),
            models.UniqueConstraint(
                fields=["product", "year"],
                condition=Q(status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]),
                name="annualreport_one_in_flight",
            ),
            # Only a finished report can have been submitted, and a submission names both.
            models.CheckConstraint(
                condition=Q(submitted_on__isnull=True)
                | (Q(status=ExportStatus.DONE) & ~Q(submission_reference="")),
                name="annualreport_submitted_when_done",
            ),
        ]
        indexes = [
            models.Index(fields=["product", "year", "-created_at"], name="annualreport_product_idx")
        ]

    def __str__(self) -> str:
        return f"Annual report {self.year} of {self.product.code} (#{self.pk})"

    @property
    def status_badge(self) -> str:
        return EXPORT_BADGE[ExportStatus(self.status)]

    @property
    def due_on(self) -> dt.date:
        return annual_report_due_on(self.year)

    @property
    def filename(self) -> str:
        return f"{self.product.code}-annual-report-{self.year}-{self.pk}.pdf"
