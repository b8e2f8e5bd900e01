"""Deviation, OOS, CAPA, change-control and complaint vocabularies and lifecycles as data
(design §3; DV-01…DV-12, RP-04…RP-06)."""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils.translation import gettext_lazy as _

#
# Deviations (DV-01, DV-03, DV-04)
#


class DeviationClass(models.TextChoices):
    MINOR = "minor", _("Minor")
    MAJOR = "major", _("Major")
    CRITICAL = "critical", _("Critical")


# Shown beside the choice when a deviation is raised and when QA confirms its class (DV-03).
CLASS_CRITERIA: dict[str, str] = {
    DeviationClass.MINOR: "No effect on product quality, patient safety or data integrity; "
    "a departure from procedure that the record shows was without consequence.",
    DeviationClass.MAJOR: "May affect product quality or data integrity, or breaks a GMP "
    "requirement, without a likely risk to the patient; the batch needs assessment.",
    DeviationClass.CRITICAL: "Likely to harm the patient or has produced a product that may be "
    "unsafe: wrong patient, sterility or identity in doubt, a failed registered "
    "specification released, falsified data.",
}
CLASS_BADGE: dict[str, str] = {
    DeviationClass.MINOR: "info",
    DeviationClass.MAJOR: "warn",
    DeviationClass.CRITICAL: "block",
}
# Classes whose open deviation blocks the batch's certification (design §5; DV-05).
BLOCKING_CLASSES = frozenset({DeviationClass.MAJOR, DeviationClass.CRITICAL})


class DeviationStatus(models.TextChoices):
    OPEN = "open", _("Open")
    TRIAGED = "triaged", _("Triaged")
    INVESTIGATING = "investigating", _("Investigating")
    PENDING_CAPA = "pending_capa", _("Pending CAPA")
    CLOSED = "closed", _("Closed")
    CANCELLED = "cancelled", _("Cancelled")


DEVIATION_TERMINAL = frozenset({DeviationStatus.CLOSED, DeviationStatus.CANCELLED})
DEVIATION_OPEN = frozenset(set(DeviationStatus) - DEVIATION_TERMINAL)
DEVIATION_BADGE: dict[str, str] = {
    DeviationStatus.OPEN: "warn",
    DeviationStatus.TRIAGED: "info",
    DeviationStatus.INVESTIGATING: "info",
    DeviationStatus.PENDING_CAPA: "info",
    DeviationStatus.CLOSED: "ok",
    DeviationStatus.CANCELLED: "muted",
}


class DeviationAction(models.TextChoices):
    """The verbs of the deviation lifecycle, one service each."""

    TRIAGE = "triage", _("Triage")
    INVESTIGATE = "investigate", _("Start the investigation")
    AWAIT_CAPA = "await-capa", _("Hand over to CAPA")
    CLOSE = "close", _("Close")
    CANCEL = "cancel", _("Cancel")


# action → (states it may start from, the state it leads to)
DEVIATION_TRANSITIONS: dict[DeviationAction, tuple[frozenset[str], DeviationStatus]] = {
    DeviationAction.TRIAGE: (frozenset({DeviationStatus.OPEN}), DeviationStatus.TRIAGED),
    DeviationAction.INVESTIGATE: (
        frozenset({DeviationStatus.TRIAGED}),
        DeviationStatus.INVESTIGATING,
    ),
    DeviationAction.AWAIT_CAPA: (
        frozenset({DeviationStatus.INVESTIGATING}),
        DeviationStatus.PENDING_CAPA,
    ),
    DeviationAction.CLOSE: (
        frozenset({DeviationStatus.INVESTIGATING, DeviationStatus.PENDING_CAPA}),
        DeviationStatus.CLOSED,
    ),
    DeviationAction.CANCEL: (frozenset(DEVIATION_OPEN), DeviationStatus.CANCELLED),
}


class RootCauseCategory(models.TextChoices):
    """Root-cause categories for trending (DV-01, DV-06)."""

    HUMAN_ERROR = "human_error", _("Human error")
    PROCEDURE = "procedure", _("Procedure or instruction")
    EQUIPMENT = "equipment", _("Equipment or facility")
    MATERIAL = "material", _("Starting material or consumable")
    PROCESS = "process", _("Process variability")
    ENVIRONMENT = "environment", _("Environment")
    SYSTEM = "system", _("Computerised system")
    EXTERNAL = "external", _("Supplier or external")
    UNKNOWN = "unknown", _("Not determined")


class DeviationSource(models.TextChoices):
    """Where a deviation was raised from."""

    SITE = "site", _("Site")
    BATCH = "batch", _("Batch")
    STEP = "step", _("Batch step")
    RESULT = "result", _("Test result")
    AUDIT = "audit", _("Audit finding")
    SIGNAL = "signal", _("Batch signal (automatic)")
    COMPARABILITY = "comparability", _("Comparability signal (automatic)")


# Due dates per class (DV-04): working days to triage and calendar days to close. The defaults
# of the issue; settings.DEVIATION_DUE_DAYS may override them per class.
DEFAULT_TRIAGE_WORKING_DAYS = 1
DEFAULT_CLOSURE_DAYS: dict[str, int] = {
    DeviationClass.MINOR: 30,
    DeviationClass.MAJOR: 30,
    DeviationClass.CRITICAL: 30,
}


class ExtensionStatus(models.TextChoices):
    REQUESTED = "requested", _("Requested")
    APPROVED = "approved", _("Approved")
    REFUSED = "refused", _("Refused")


#
# OOS investigations (DV-10)
#


class OosPhase(models.TextChoices):
    PHASE_IA = "ia", _("Phase Ia — obvious error")
    PHASE_IB = "ib", _("Phase Ib — laboratory investigation")
    PHASE_II = "ii", _("Phase II — full investigation")
    PHASE_III = "iii", _("Phase III — batch disposition")


OOS_NEXT_PHASE: dict[str, str] = {
    OosPhase.PHASE_IA: OosPhase.PHASE_IB,
    OosPhase.PHASE_IB: OosPhase.PHASE_II,
    OosPhase.PHASE_II: OosPhase.PHASE_III,
}


class OosOutcome(models.TextChoices):
    OPEN = "open", _("Open")
    CONFIRMED = "confirmed", _("Result confirmed out of specification")
    INVALIDATED = "invalidated", _("Result invalidated on evidence")


OOS_BADGE: dict[str, str] = {
    OosOutcome.OPEN: "warn",
    OosOutcome.CONFIRMED: "block",
    OosOutcome.INVALIDATED: "info",
}


#
# CAPA (DV-02)
#


class CapaStatus(models.TextChoices):
    OPEN = "open", _("Open")
    EFFECTIVENESS_CHECK = "effectiveness_check", _("Effectiveness check")
    CLOSED = "closed", _("Closed")
    CANCELLED = "cancelled", _("Cancelled")


CAPA_BADGE: dict[str, str] = {
    CapaStatus.OPEN: "info",
    CapaStatus.EFFECTIVENESS_CHECK: "warn",
    CapaStatus.CLOSED: "ok",
    CapaStatus.CANCELLED: "muted",
}
CAPA_OPEN = frozenset({CapaStatus.OPEN, CapaStatus.EFFECTIVENESS_CHECK})


class CapaKind(models.TextChoices):
    CORRECTIVE = "corrective", _("Corrective")
    PREVENTIVE = "preventive", _("Preventive")


class CapaSource(models.TextChoices):
    DEVIATION = "deviation", _("Deviation")
    OOS = "oos", _("OOS investigation")
    AUDIT = "audit", _("Audit finding")
    COMPLAINT = "complaint", _("Complaint")


class ActionStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Done")


class Effectiveness(models.TextChoices):
    EFFECTIVE = "effective", _("Effective")
    NOT_EFFECTIVE = "not_effective", _("Not effective")


#
# Change control (DV-07…DV-09)
#


class ChangeStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    IN_REVIEW = "in_review", _("In review")
    APPROVED = "approved", _("Approved")
    IMPLEMENTED = "implemented", _("Implemented")
    CLOSED = "closed", _("Closed")
    REJECTED = "rejected", _("Rejected")


CHANGE_BADGE: dict[str, str] = {
    ChangeStatus.DRAFT: "muted",
    ChangeStatus.IN_REVIEW: "info",
    ChangeStatus.APPROVED: "ok",
    ChangeStatus.IMPLEMENTED: "info",
    ChangeStatus.CLOSED: "ok",
    ChangeStatus.REJECTED: "block",
}


class ChangeScope(models.TextChoices):
    """What a change touches; the first three are regulatory (DV-09)."""

    MASTER_FILE = "master_file", _("Product master file")
    SITE_STATUS = "site_status", _("A site's status or the site list")
    RELEASE_PROCESS = "release_process", _("Release process")
    EQUIPMENT = "equipment", _("Equipment or facility")
    PROCEDURE = "procedure", _("Procedure")
    SYSTEM = "system", _("Computerised system or its configuration")


REGULATORY_SCOPES = frozenset(
    {ChangeScope.MASTER_FILE, ChangeScope.SITE_STATUS, ChangeScope.RELEASE_PROCESS}
)


class RiskLevel(models.TextChoices):
    LOW = "low", _("Low")
    MEDIUM = "medium", _("Medium")
    HIGH = "high", _("High")


#
# Complaints and adverse reactions (DV-11, RP-05, RP-06)
#


class ComplaintKind(models.TextChoices):
    QUALITY = "quality", _("Quality complaint")
    ADVERSE_REACTION = "adverse_reaction", _("Suspected adverse reaction")


class ComplaintStatus(models.TextChoices):
    OPEN = "open", _("Open")
    CLOSED = "closed", _("Closed")


# RP-05: a serious suspected adverse reaction is reported within 15 days of the day after
# awareness.
SERIOUS_ADR_REPORT_DAYS = 15


def adr_report_due(aware_on: dt.date) -> dt.date:
    """The last day to report a serious suspected ADR first known on `aware_on` (RP-05)."""
    return aware_on + dt.timedelta(days=SERIOUS_ADR_REPORT_DAYS)


COMPLAINT_BADGE: dict[str, str] = {
    ComplaintStatus.OPEN: "warn",
    ComplaintStatus.CLOSED: "ok",
}
COMPLAINT_KIND_BADGE: dict[str, str] = {
    ComplaintKind.QUALITY: "info",
    ComplaintKind.ADVERSE_REACTION: "warn",
}
# The reporting clock turns amber in its last days, red once the due day has passed (RP-05).
ADR_CLOCK_WARN_DAYS = 3


# Limits stated to users and integrators.
TITLE_MAX = 200
TEXT_MAX = 8000
REASON_MAX = 2000
EXTENSION_DAYS_MAX = 180


#
# Change-control lifecycle (DV-07…DV-09)
#


class ChangeAction(models.TextChoices):
    """The verbs of the change-control lifecycle, one service each."""

    SUBMIT = "submit", _("Submit for review")
    APPROVE = "approve", _("Approve")
    REJECT = "reject", _("Reject")
    IMPLEMENT = "implement", _("Record as implemented")
    CLOSE = "close", _("Close after the post-implementation review")


# action → (states it may start from, the state it leads to). Approval reaches `approved` only
# when every required signature is in: QA's, and a QP's too for a regulatory change.
CHANGE_TRANSITIONS: dict[ChangeAction, tuple[frozenset[str], ChangeStatus]] = {
    ChangeAction.SUBMIT: (frozenset({ChangeStatus.DRAFT}), ChangeStatus.IN_REVIEW),
    ChangeAction.APPROVE: (frozenset({ChangeStatus.IN_REVIEW}), ChangeStatus.APPROVED),
    ChangeAction.REJECT: (frozenset({ChangeStatus.IN_REVIEW}), ChangeStatus.REJECTED),
    ChangeAction.IMPLEMENT: (frozenset({ChangeStatus.APPROVED}), ChangeStatus.IMPLEMENTED),
    ChangeAction.CLOSE: (frozenset({ChangeStatus.IMPLEMENTED}), ChangeStatus.CLOSED),
}
# The way forward, in order, for the progress picture; `rejected` ends it at review.
CHANGE_PATH = (
    ChangeStatus.DRAFT,
    ChangeStatus.IN_REVIEW,
    ChangeStatus.APPROVED,
    ChangeStatus.IMPLEMENTED,
    ChangeStatus.CLOSED,
)
CHANGE_OPEN = frozenset(
    {ChangeStatus.DRAFT, ChangeStatus.IN_REVIEW, ChangeStatus.APPROVED, ChangeStatus.IMPLEMENTED}
)
