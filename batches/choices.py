"""Batch vocabularies and the lifecycles as data (design §3 and §5; BR-01…BR-15)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from sites.choices import SiteRole


class TemplateStatus(models.TextChoices):
    """A batch template (master batch record): written as a draft, approved by Control Site QA
    with an e-signature, retired when a later version is approved."""

    DRAFT = "draft", _("Draft")
    APPROVED = "approved", _("Approved")
    RETIRED = "retired", _("Retired")


TEMPLATE_TRANSITIONS: dict[TemplateStatus, frozenset[TemplateStatus]] = {
    TemplateStatus.DRAFT: frozenset({TemplateStatus.APPROVED}),
    TemplateStatus.APPROVED: frozenset({TemplateStatus.RETIRED}),
    TemplateStatus.RETIRED: frozenset(),
}


class StepRole(models.TextChoices):
    """Who may perform a step: a role held at the batch's site."""

    SITE_OPERATOR = "site_operator", _("Site operator")
    SITE_LEAD = "site_lead", _("Site lead")


# Which roles at the site may perform a step needing each role: a site lead may do an
# operator's step, never the reverse.
STEP_ROLE_HOLDERS: dict[StepRole, frozenset[SiteRole]] = {
    StepRole.SITE_OPERATOR: frozenset({SiteRole.SITE_OPERATOR, SiteRole.SITE_LEAD}),
    StepRole.SITE_LEAD: frozenset({SiteRole.SITE_LEAD}),
}


class SpecificationTiming(models.TextChoices):
    """Whether a CQA's result is needed before certification or may follow it (BR-09)."""

    BEFORE_RELEASE = "before_release", _("Before release")
    LATE = "late", _("After release (late result)")


class BatchStatus(models.TextChoices):
    IN_PROGRESS = "in_progress", _("In progress")
    COMPLETED = "completed", _("Awaiting certification")
    CERTIFIED = "certified", _("Certified")
    CERTIFIED_UNDER_CONCESSION = "certified_under_concession", _("Certified under concession")
    REJECTED = "rejected", _("Rejected")


class BatchAction(models.TextChoices):
    COMPLETE = "complete", _("Complete")
    CERTIFY = "certify", _("Certify")
    CERTIFY_UNDER_CONCESSION = "certify-under-concession", _("Certify under concession")
    REJECT = "reject", _("Reject")


# The batch lifecycle as data (BR-02). A batch completes when its last step is signed; only a
# completed batch can be certified; a batch may be rejected while in progress or awaiting
# certification. Decisions are final.
ALLOWED_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.IN_PROGRESS: frozenset({BatchStatus.COMPLETED, BatchStatus.REJECTED}),
    BatchStatus.COMPLETED: frozenset(
        {BatchStatus.CERTIFIED, BatchStatus.CERTIFIED_UNDER_CONCESSION, BatchStatus.REJECTED}
    ),
    BatchStatus.CERTIFIED: frozenset(),
    BatchStatus.CERTIFIED_UNDER_CONCESSION: frozenset(),
    BatchStatus.REJECTED: frozenset(),
}
ACTION_TRANSITIONS: dict[BatchAction, tuple[frozenset[BatchStatus], BatchStatus]] = {
    BatchAction.COMPLETE: (frozenset({BatchStatus.IN_PROGRESS}), BatchStatus.COMPLETED),
    BatchAction.CERTIFY: (frozenset({BatchStatus.COMPLETED}), BatchStatus.CERTIFIED),
    BatchAction.CERTIFY_UNDER_CONCESSION: (
        frozenset({BatchStatus.COMPLETED}),
        BatchStatus.CERTIFIED_UNDER_CONCESSION,
    ),
    BatchAction.REJECT: (
        frozenset({BatchStatus.IN_PROGRESS, BatchStatus.COMPLETED}),
        BatchStatus.REJECTED,
    ),
}
CERTIFIED_STATUSES = frozenset({BatchStatus.CERTIFIED, BatchStatus.CERTIFIED_UNDER_CONCESSION})
DECIDED_STATUSES = CERTIFIED_STATUSES | {BatchStatus.REJECTED}
AWAITING_CERTIFICATION = BatchStatus.COMPLETED

BATCH_BADGE: dict[str, str] = {
    BatchStatus.IN_PROGRESS: "info",
    BatchStatus.COMPLETED: "warn",
    BatchStatus.CERTIFIED: "ok",
    BatchStatus.CERTIFIED_UNDER_CONCESSION: "concession",
    BatchStatus.REJECTED: "danger",
}
TEMPLATE_BADGE: dict[str, str] = {
    TemplateStatus.DRAFT: "muted",
    TemplateStatus.APPROVED: "ok",
    TemplateStatus.RETIRED: "muted",
}


class Decision(models.TextChoices):
    """The QP's decision on a batch, one per batch (BR-03, BR-04)."""

    CERTIFIED = "certified", _("Certified")
    CERTIFIED_UNDER_CONCESSION = "certified_under_concession", _("Certified under concession")
    REJECTED = "rejected", _("Rejected")


DECISION_STATUS: dict[Decision, BatchStatus] = {
    Decision.CERTIFIED: BatchStatus.CERTIFIED,
    Decision.CERTIFIED_UNDER_CONCESSION: BatchStatus.CERTIFIED_UNDER_CONCESSION,
    Decision.REJECTED: BatchStatus.REJECTED,
}


class SignalKind(models.TextChoices):
    """Rows of the batches outbox for the deviations app (design §2: outbox rows)."""

    OUT_OF_LIMIT = "out_of_limit", _("Step value out of limits")
    RESULT_FAILED = "result_failed", _("Result out of specification")
    LATE_RESULT_FAILED = "late_result_failed", _("Late result failed after certification")
    COI_MISMATCH = "coi_mismatch", _("Chain-of-identity mismatch")


# Limits stated to users and integrators.
INSTRUCTION_MAX = 4000
NAME_MAX = 120
UNIT_MAX = 24
COI_MAX = 64
REASON_MAX = 2000
JUSTIFICATION_MAX = 4000
LOCATION_MAX = 200
STEPS_MAX = 100
PARAMETERS_MAX = 20
SPECIFICATIONS_MAX = 50
# A value is a decimal with at most 12 digits, 6 after the point (an assay, a cell count).
VALUE_MAX_DIGITS = 18
VALUE_DECIMAL_PLACES = 6
# Daily sequence per site: <SITE>-<YYMMDD>-<NNN> (BR-12).
SEQUENCE_MAX = 999


#
# Comparability across sites (issue 8; SO-08, SO-09)
#


class LimitBasis(models.TextChoices):
    """Where a CQA's reference limits come from, chosen per CQA when QA approves them."""

    VERIFICATION = "verification", _("Reference site's verification batches (mean ± 3 SD)")
    SPECIFICATION = "specification", _("Specification")


class LimitStatus(models.TextChoices):
    """Approved limits stay in force until QA approves new ones for the same CQA."""

    ACTIVE = "active", _("In force")
    SUPERSEDED = "superseded", _("Superseded")


class CheckStatus(models.TextChoices):
    """The annual comparability check of one site (SO-09): scheduled with a due date, the
    paired results of split starting material recorded, then reviewed and signed by QA."""

    SCHEDULED = "scheduled", _("Scheduled")
    RECORDED = "recorded", _("Results recorded")
    REVIEWED = "reviewed", _("Reviewed")
    CANCELLED = "cancelled", _("Cancelled")


CHECK_TRANSITIONS: dict[CheckStatus, frozenset[CheckStatus]] = {
    CheckStatus.SCHEDULED: frozenset({CheckStatus.RECORDED, CheckStatus.CANCELLED}),
    CheckStatus.RECORDED: frozenset({CheckStatus.REVIEWED, CheckStatus.CANCELLED}),
    CheckStatus.REVIEWED: frozenset(),
    CheckStatus.CANCELLED: frozenset(),
}
CHECK_OPEN = frozenset({CheckStatus.SCHEDULED, CheckStatus.RECORDED})
CHECK_BADGE: dict[str, str] = {
    CheckStatus.SCHEDULED: "info",
    CheckStatus.RECORDED: "warn",
    CheckStatus.REVIEWED: "ok",
    CheckStatus.CANCELLED: "muted",
}


class ComparabilitySignalKind(models.TextChoices):
    """Rows of the comparability outbox for the deviations app (design §2): each opens one
    deviation, however often the data are evaluated."""

    RUN_RULE = "run_rule", _("Control chart run-rule break")
    EQUIVALENCE = "equivalence", _("Equivalence with the reference site not shown")
    ANNUAL_CHECK = "annual_check", _("Annual comparability check not comparable")


VERDICT_BADGE: dict[str, str] = {
    "comparable": "ok",
    "not_shown": "danger",
    "too_little_data": "muted",
}

# Limits stated to users and integrators.
CHECK_PAIRS_MAX = 200
LIMIT_BATCHES_MIN = 3
LIMIT_BATCHES_MAX = 100
CHECK_INTERVAL_DAYS = 365
