"""Site vocabularies and the site lifecycle as data (design §3; SO-01, SO-03, SO-04)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class SiteStatus(models.TextChoices):
    PROPOSED = "proposed", _("Proposed")
    ONBOARDING = "onboarding", _("Onboarding")
    QUALIFIED = "qualified", _("Qualified")
    ACTIVE = "active", _("Active")
    PAUSED = "paused", _("Paused")
    SUSPENDED = "suspended", _("Suspended")
    CEASED = "ceased", _("Ceased")


ALLOWED_TRANSITIONS: dict[SiteStatus, frozenset[SiteStatus]] = {
    SiteStatus.PROPOSED: frozenset({SiteStatus.ONBOARDING, SiteStatus.CEASED}),
    SiteStatus.ONBOARDING: frozenset({SiteStatus.QUALIFIED, SiteStatus.CEASED}),
    SiteStatus.QUALIFIED: frozenset({SiteStatus.ACTIVE, SiteStatus.CEASED}),
    SiteStatus.ACTIVE: frozenset({SiteStatus.PAUSED, SiteStatus.SUSPENDED, SiteStatus.CEASED}),
    SiteStatus.PAUSED: frozenset({SiteStatus.ACTIVE, SiteStatus.SUSPENDED, SiteStatus.CEASED}),
    SiteStatus.SUSPENDED: frozenset({SiteStatus.ACTIVE, SiteStatus.CEASED}),
    SiteStatus.CEASED: frozenset(),
}
TERMINAL = frozenset({SiteStatus.CEASED})
# The only state in which a site may make product (the switch).
MANUFACTURING = frozenset({SiteStatus.ACTIVE})

# Badge colours for the shared status-badge include (never if/else chains in templates).
STATUS_BADGE: dict[str, str] = {
    SiteStatus.PROPOSED: "muted",
    SiteStatus.ONBOARDING: "info",
    SiteStatus.QUALIFIED: "info",
    SiteStatus.ACTIVE: "ok",
    SiteStatus.PAUSED: "warn",
    SiteStatus.SUSPENDED: "block",
    SiteStatus.CEASED: "muted",
}


class SiteAction(models.TextChoices):
    """The verbs of the lifecycle, one service each; which need a QA e-signature is data too."""

    START_ONBOARDING = "start-onboarding", _("Start onboarding")
    QUALIFY = "qualify", _("Qualify")
    ACTIVATE = "activate", _("Activate")
    PAUSE = "pause", _("Pause")
    RESUME = "resume", _("Resume")
    SUSPEND = "suspend", _("Suspend")
    REINSTATE = "reinstate", _("Reinstate")
    CEASE = "cease", _("Cease")


# action → (states it may start from, the state it leads to)
ACTION_TRANSITIONS: dict[SiteAction, tuple[frozenset[SiteStatus], SiteStatus]] = {
    SiteAction.START_ONBOARDING: (frozenset({SiteStatus.PROPOSED}), SiteStatus.ONBOARDING),
    SiteAction.QUALIFY: (frozenset({SiteStatus.ONBOARDING}), SiteStatus.QUALIFIED),
    SiteAction.ACTIVATE: (frozenset({SiteStatus.QUALIFIED}), SiteStatus.ACTIVE),
    SiteAction.PAUSE: (frozenset({SiteStatus.ACTIVE}), SiteStatus.PAUSED),
    SiteAction.RESUME: (frozenset({SiteStatus.PAUSED}), SiteStatus.ACTIVE),
    SiteAction.SUSPEND: (frozenset({SiteStatus.ACTIVE, SiteStatus.PAUSED}), SiteStatus.SUSPENDED),
    SiteAction.REINSTATE: (frozenset({SiteStatus.SUSPENDED}), SiteStatus.ACTIVE),
    SiteAction.CEASE: (frozenset(set(SiteStatus) - TERMINAL), SiteStatus.CEASED),
}
SIGNED_ACTIONS = frozenset(
    {SiteAction.ACTIVATE, SiteAction.SUSPEND, SiteAction.REINSTATE, SiteAction.CEASE}
)
# Actions after which the site lead and the QPs are told at once.
ALERTING_ACTIONS = frozenset({SiteAction.SUSPEND, SiteAction.CEASE})


class SiteKind(models.TextChoices):
    POC_HOSPITAL = "poc_hospital", _("Point-of-care hospital site")
    MODULAR_UNIT = "modular_unit", _("Modular unit")
    TESTING_LAB = "testing_lab", _("Testing laboratory")


class SiteRole(models.TextChoices):
    """A person's role at one site (a subset of the kernel's role vocabulary)."""

    SITE_LEAD = "site_lead", _("Site lead")
    SITE_OPERATOR = "site_operator", _("Site operator")


SITE_ROLE_BADGE: dict[str, str] = {
    SiteRole.SITE_LEAD: "role",
    SiteRole.SITE_OPERATOR: "muted",
}


class ChecklistItemStatus(models.TextChoices):
    OPEN = "open", _("Open")
    DONE = "done", _("Signed off")


CHECKLIST_BADGE: dict[str, str] = {
    ChecklistItemStatus.OPEN: "warn",
    ChecklistItemStatus.DONE: "ok",
}


class EquipmentStatus(models.TextChoices):
    NOT_QUALIFIED = "not_qualified", _("Not qualified")
    IQ_DONE = "iq_done", _("IQ done")
    OQ_DONE = "oq_done", _("IQ/OQ done")
    QUALIFIED = "qualified", _("Qualified (IQ/OQ/PQ)")
    OUT_OF_SERVICE = "out_of_service", _("Out of service")
    RETIRED = "retired", _("Retired")


EQUIPMENT_BADGE: dict[str, str] = {
    EquipmentStatus.NOT_QUALIFIED: "warn",
    EquipmentStatus.IQ_DONE: "info",
    EquipmentStatus.OQ_DONE: "info",
    EquipmentStatus.QUALIFIED: "ok",
    EquipmentStatus.OUT_OF_SERVICE: "block",
    EquipmentStatus.RETIRED: "muted",
}


class SiteAuditStatus(models.TextChoices):
    PLANNED = "planned", _("Planned")
    DONE = "done", _("Done")
    CANCELLED = "cancelled", _("Cancelled")


AUDIT_STATUS_BADGE: dict[str, str] = {
    SiteAuditStatus.PLANNED: "info",
    SiteAuditStatus.DONE: "ok",
    SiteAuditStatus.CANCELLED: "muted",
}


class FindingGrade(models.TextChoices):
    CRITICAL = "critical", _("Critical")
    MAJOR = "major", _("Major")
    MINOR = "minor", _("Minor")


FINDING_BADGE: dict[str, str] = {
    FindingGrade.CRITICAL: "block",
    FindingGrade.MAJOR: "warn",
    FindingGrade.MINOR: "info",
}


class NotificationKind(models.TextChoices):
    """What the Control Site must tell the MHRA (SO-05, RP-03, RP-08)."""

    SITE_ADDED = "site_added", _("Site added")
    SITE_SUSPENDED = "site_suspended", _("Site suspended")
    SITE_REINSTATED = "site_reinstated", _("Site reinstated")
    SITE_CEASED = "site_ceased", _("Site ceased")
    QP_CHANGED = "qp_changed", _("Named QP changed")
    # A change control touching a site's status or the release process (DV-09, MF-09).
    CHANGE_CONTROL = "change_control", _("Change control (variation assessment)")


# Days from the event to when the notification is due. The regulations read do not give these
# periods (regulatory.md, "Gaps"), so they are settings a Control Site sets from its own
# procedure: REGULATORY_NOTIFICATION_DUE_DAYS overrides any of them.
DEFAULT_DUE_DAYS: dict[str, int] = {
    NotificationKind.SITE_ADDED: 30,
    NotificationKind.SITE_SUSPENDED: 1,
    NotificationKind.SITE_REINSTATED: 7,
    NotificationKind.SITE_CEASED: 1,
    NotificationKind.QP_CHANGED: 7,
    NotificationKind.CHANGE_CONTROL: 30,
}

ACTION_NOTIFICATION: dict[SiteAction, NotificationKind] = {
    SiteAction.SUSPEND: NotificationKind.SITE_SUSPENDED,
    SiteAction.REINSTATE: NotificationKind.SITE_REINSTATED,
    SiteAction.CEASE: NotificationKind.SITE_CEASED,
}
