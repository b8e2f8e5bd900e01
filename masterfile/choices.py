"""Master-file vocabularies and the version lifecycle as data (design §3; MF-03, MF-08, MF-12)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Designation(models.TextChoices):
    """The MHRA decentralised-manufacture designation (MF-08)."""

    POC = "poc", _("Point of care (POC)")
    MM = "mm", _("Modular manufacture (MM)")


class SupplyStatus(models.TextChoices):
    LICENSED = "licensed", _("Licensed")
    INVESTIGATIONAL = "investigational", _("Investigational")
    UNLICENSED = "unlicensed", _("Unlicensed")


class VersionStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    IN_REVIEW = "in_review", _("In review")
    APPROVED = "approved", _("Approved")
    EFFECTIVE = "effective", _("Effective")
    SUPERSEDED = "superseded", _("Superseded")


class VersionAction(models.TextChoices):
    """The verbs of the version lifecycle, one service each."""

    SUBMIT = "submit", _("Submit for review")
    RETURN = "return", _("Return to draft")
    APPROVE = "approve", _("Approve")
    MAKE_EFFECTIVE = "make-effective", _("Make effective")


# The lifecycle as data: which state each step may start from and where it leads. Approval moves
# a version to `approved` only when the last required signature is in (APPROVAL_ORDER).
ALLOWED_TRANSITIONS: dict[VersionStatus, frozenset[VersionStatus]] = {
    VersionStatus.DRAFT: frozenset({VersionStatus.IN_REVIEW}),
    VersionStatus.IN_REVIEW: frozenset({VersionStatus.DRAFT, VersionStatus.APPROVED}),
    VersionStatus.APPROVED: frozenset({VersionStatus.EFFECTIVE}),
    VersionStatus.EFFECTIVE: frozenset({VersionStatus.SUPERSEDED}),
    VersionStatus.SUPERSEDED: frozenset(),
}
ACTION_TRANSITIONS: dict[VersionAction, tuple[VersionStatus, VersionStatus]] = {
    VersionAction.SUBMIT: (VersionStatus.DRAFT, VersionStatus.IN_REVIEW),
    VersionAction.RETURN: (VersionStatus.IN_REVIEW, VersionStatus.DRAFT),
    VersionAction.APPROVE: (VersionStatus.IN_REVIEW, VersionStatus.APPROVED),
    VersionAction.MAKE_EFFECTIVE: (VersionStatus.APPROVED, VersionStatus.EFFECTIVE),
}
# A master file has at most one version on its way to effect (a database constraint).
OPEN_STATUSES = frozenset({VersionStatus.DRAFT, VersionStatus.IN_REVIEW, VersionStatus.APPROVED})
# Content is frozen once the version leaves draft: sections, change summary and annex.
EDITABLE_STATUSES = frozenset({VersionStatus.DRAFT})

VERSION_BADGE: dict[str, str] = {
    VersionStatus.DRAFT: "muted",
    VersionStatus.IN_REVIEW: "info",
    VersionStatus.APPROVED: "info",
    VersionStatus.EFFECTIVE: "ok",
    VersionStatus.SUPERSEDED: "muted",
}


class ApprovalCapacity(models.TextChoices):
    """Who approves a version, in this order, each a different person (MF-03)."""

    QA = "qa", _("Control Site QA")
    QP = "qp", _("Qualified Person")


APPROVAL_ORDER: tuple[ApprovalCapacity, ...] = (ApprovalCapacity.QA, ApprovalCapacity.QP)


class ProductSiteRole(models.TextChoices):
    MANUFACTURING = "manufacturing", _("Manufacturing")
    TESTING = "testing", _("Testing")


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


EXPORT_BADGE: dict[str, str] = {
    ExportStatus.QUEUED: "muted",
    ExportStatus.RUNNING: "info",
    ExportStatus.DONE: "ok",
    ExportStatus.FAILED: "block",
}

# Limits, stated in every refusal that enforces them.
SECTION_TITLE_MAX = 200
SECTION_BODY_MAX = 100_000  # characters of Markdown per section
SECTIONS_MAX = 80  # sections per version
CHANGE_SUMMARY_MAX = 20_000
COMMENT_MAX = 10_000
SHELF_LIFE_MAX_MINUTES = 60 * 24 * 90  # 90 days: POC/MM products are short-lived
DEFAULT_REVIEW_INTERVAL_MONTHS = 12
REVIEW_REMINDER_DAYS = 30
