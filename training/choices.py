"""Training vocabularies and lifecycles as data (design §3; TR-01…TR-07, 21 CFR 11.10(i)-(j))."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from controlsite.accounts.roles import Role


class ItemKind(models.TextChoices):
    INDUCTION = "induction", _("GxP induction")
    REFRESHER = "refresher", _("GxP refresher")
    ACCOUNTABILITY = "accountability", _("Data integrity and e-signature accountability")
    SOP = "sop", _("SOP read and understood")
    ASSESSMENT = "assessment", _("Practical assessment")


# Kinds a trainee completes by signing "read and understood" themselves; the others are
# completed by a trainer's signed assessment. Accountability is personal (21 CFR 11.10(j)).
SELF_ACKNOWLEDGED_KINDS = frozenset(
    {ItemKind.INDUCTION, ItemKind.REFRESHER, ItemKind.ACCOUNTABILITY, ItemKind.SOP}
)
TRAINER_ASSESSED_KINDS = frozenset({ItemKind.ASSESSMENT, ItemKind.INDUCTION, ItemKind.REFRESHER})

ITEM_KIND_BADGE: dict[str, str] = {
    ItemKind.INDUCTION: "info",
    ItemKind.REFRESHER: "info",
    ItemKind.ACCOUNTABILITY: "role",
    ItemKind.SOP: "muted",
    ItemKind.ASSESSMENT: "warn",
}

# The roles a curriculum can be written for: everyone who signs GMP records.
CURRICULUM_ROLES: tuple[Role, ...] = (
    Role.SITE_OPERATOR,
    Role.SITE_LEAD,
    Role.CONTROL_SITE_QA,
    Role.QP,
    Role.TRAINER,
)


class CurriculumRole(models.TextChoices):
    SITE_OPERATOR = Role.SITE_OPERATOR.value, Role.SITE_OPERATOR.label
    SITE_LEAD = Role.SITE_LEAD.value, Role.SITE_LEAD.label
    CONTROL_SITE_QA = Role.CONTROL_SITE_QA.value, Role.CONTROL_SITE_QA.label
    QP = Role.QP.value, Role.QP.label
    TRAINER = Role.TRAINER.value, Role.TRAINER.label


# Roles held at a site (a SiteMembership); the others are held for the whole Control Site.
SITE_HELD_ROLES = frozenset({Role.SITE_OPERATOR.value, Role.SITE_LEAD.value})


class VersionStatus(models.TextChoices):
    ISSUED = "issued", _("Issued, not yet effective")
    EFFECTIVE = "effective", _("Effective")
    SUPERSEDED = "superseded", _("Superseded")


VERSION_BADGE: dict[str, str] = {
    VersionStatus.ISSUED: "info",
    VersionStatus.EFFECTIVE: "ok",
    VersionStatus.SUPERSEDED: "muted",
}
# Versions a trainee may still read and acknowledge: the one in force and the one coming.
ACKNOWLEDGEABLE_VERSIONS = frozenset({VersionStatus.ISSUED, VersionStatus.EFFECTIVE})


class AssignmentStatus(models.TextChoices):
    OPEN = "open", _("Open")
    COMPLETED = "completed", _("Completed")
    WITHDRAWN = "withdrawn", _("Withdrawn")


ASSIGNMENT_BADGE: dict[str, str] = {
    AssignmentStatus.OPEN: "warn",
    AssignmentStatus.COMPLETED: "ok",
    AssignmentStatus.WITHDRAWN: "muted",
}


class AssignmentCause(models.TextChoices):
    JOINED_SITE = "joined_site", _("Joined a site")
    ROLE_GRANTED = "role_granted", _("Given a role")
    CURRICULUM = "curriculum", _("Curriculum changed")
    NEW_VERSION = "new_version", _("New procedure version")
    RENEWAL = "renewal", _("Due for renewal")
    FAILED = "failed", _("Assessment not passed")
    MANUAL = "manual", _("Assigned by a trainer")


class RecordMethod(models.TextChoices):
    ACKNOWLEDGED = "acknowledged", _("Read and understood (signed by the trainee)")
    ASSESSED = "assessed", _("Assessed by a trainer")
    ENTERED = "entered", _("Entered from a paper record")


class AssessmentResult(models.TextChoices):
    COMPETENT = "competent", _("Competent")
    NOT_YET_COMPETENT = "not_yet_competent", _("Not yet competent")


class CellState(models.TextChoices):
    """One cell of the training matrix: whether the person has this item now."""

    CURRENT = "current", _("Current")
    DUE_SOON = "due_soon", _("Due soon")
    OVERDUE = "overdue", _("Overdue")
    MISSING = "missing", _("Missing")
    NOT_REQUIRED = "not_required", _("Not required")


CELL_BADGE: dict[str, str] = {
    CellState.CURRENT: "ok",
    CellState.DUE_SOON: "warn",
    CellState.OVERDUE: "block",
    CellState.MISSING: "muted",
    CellState.NOT_REQUIRED: "",
}
# States in which the person holds the item and may sign (TR-02).
QUALIFYING_STATES = frozenset({CellState.CURRENT, CellState.DUE_SOON})
