"""The sites app's audit event types, with the labels people read."""

from __future__ import annotations

from enum import StrEnum


class SiteEvent(StrEnum):
    REGISTERED = "sites.registered"
    UPDATED = "sites.updated"
    MOVED = "sites.moved"
    STATUS_CHANGED = "sites.status_changed"
    MEMBER_ADDED = "sites.member_added"
    MEMBER_ENDED = "sites.member_ended"
    EVIDENCE_ADDED = "sites.evidence_added"
    ITEM_SIGNED_OFF = "sites.checklist_signed_off"
    EQUIPMENT_ADDED = "sites.equipment_added"
    EQUIPMENT_CHANGED = "sites.equipment_changed"
    AUDIT_PLANNED = "sites.audit_planned"
    AUDIT_DONE = "sites.audit_done"
    FINDING_ADDED = "sites.finding_added"
    MHRA_NOTIFICATION_DUE = "sites.mhra_notification_due"
    MHRA_NOTIFICATION_SENT = "sites.mhra_notification_sent"
    CONTROL_SITE_CHANGED = "sites.control_site_changed"
    QP_NAMED = "sites.qp_named"
    QP_UNNAMED = "sites.qp_unnamed"


LABELS: dict[str, str] = {
    SiteEvent.REGISTERED: "Site registered",
    SiteEvent.UPDATED: "Site details changed",
    SiteEvent.MOVED: "Modular unit moved",
    SiteEvent.STATUS_CHANGED: "Site status changed",
    SiteEvent.MEMBER_ADDED: "Member added",
    SiteEvent.MEMBER_ENDED: "Membership ended",
    SiteEvent.EVIDENCE_ADDED: "Onboarding evidence added",
    SiteEvent.ITEM_SIGNED_OFF: "Onboarding item signed off",
    SiteEvent.EQUIPMENT_ADDED: "Equipment added",
    SiteEvent.EQUIPMENT_CHANGED: "Equipment changed",
    SiteEvent.AUDIT_PLANNED: "Site audit planned",
    SiteEvent.AUDIT_DONE: "Site audit done",
    SiteEvent.FINDING_ADDED: "Audit finding recorded",
    SiteEvent.MHRA_NOTIFICATION_DUE: "MHRA notification due",
    SiteEvent.MHRA_NOTIFICATION_SENT: "MHRA notification sent",
    SiteEvent.CONTROL_SITE_CHANGED: "Control Site record changed",
    SiteEvent.QP_NAMED: "QP named on the licence",
    SiteEvent.QP_UNNAMED: "QP removed from the licence",
}
