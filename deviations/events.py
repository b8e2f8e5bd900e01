"""The deviations app's audit event types and webhook events."""

from __future__ import annotations

from enum import StrEnum


class DeviationEvent(StrEnum):
    RAISED = "deviations.raised"
    CLASS_CONFIRMED = "deviations.class_confirmed"
    UPDATED = "deviations.updated"
    TRANSITIONED = "deviations.transitioned"
    EXTENSION_REQUESTED = "deviations.extension_requested"
    EXTENSION_DECIDED = "deviations.extension_decided"
    ESCALATED = "deviations.escalated"
    CAPA_RAISED = "deviations.capa_raised"
    CAPA_ACTION_ADDED = "deviations.capa_action_added"
    CAPA_ACTION_DONE = "deviations.capa_action_done"
    CAPA_EFFECTIVENESS = "deviations.capa_effectiveness_checked"
    CAPA_CLOSED = "deviations.capa_closed"
    OOS_OPENED = "deviations.oos_opened"
    OOS_LINKED = "deviations.oos_linked"
    OOS_FINDINGS = "deviations.oos_findings_recorded"
    OOS_ADVANCED = "deviations.oos_advanced"
    OOS_CONCLUDED = "deviations.oos_concluded"
    CAPA_CANCELLED = "deviations.capa_cancelled"
    CHANGE_PROPOSED = "deviations.change_proposed"
    CHANGE_UPDATED = "deviations.change_updated"
    CHANGE_TRANSITIONED = "deviations.change_transitioned"
    CHANGE_APPROVAL_SIGNED = "deviations.change_approval_signed"
    CHANGE_DRAFT_OPENED = "deviations.change_master_file_draft_opened"
    CHANGE_NOTIFICATION_RAISED = "deviations.change_notification_raised"
    CHANGE_TASK_ADDED = "deviations.change_task_added"
    CHANGE_TASK_DONE = "deviations.change_task_done"
    COMPLAINT_RECORDED = "deviations.complaint_recorded"
    COMPLAINT_ASSESSED = "deviations.complaint_assessed"
    COMPLAINT_REPORTED = "deviations.complaint_reported"
    COMPLAINT_CLOSED = "deviations.complaint_closed"


LABELS: dict[str, str] = {
    DeviationEvent.RAISED: "Deviation raised",
    DeviationEvent.CLASS_CONFIRMED: "Deviation class confirmed by QA",
    DeviationEvent.UPDATED: "Deviation investigation updated",
    DeviationEvent.TRANSITIONED: "Deviation moved on",
    DeviationEvent.EXTENSION_REQUESTED: "Deviation extension requested",
    DeviationEvent.EXTENSION_DECIDED: "Deviation extension decided",
    DeviationEvent.ESCALATED: "Overdue deviation escalated",
    DeviationEvent.CAPA_RAISED: "CAPA raised",
    DeviationEvent.CAPA_ACTION_ADDED: "CAPA action added",
    DeviationEvent.CAPA_ACTION_DONE: "CAPA action done",
    DeviationEvent.CAPA_EFFECTIVENESS: "CAPA effectiveness checked",
    DeviationEvent.CAPA_CLOSED: "CAPA closed",
    DeviationEvent.OOS_OPENED: "OOS investigation opened",
    DeviationEvent.OOS_LINKED: "OOS investigation linked to its deviation",
    DeviationEvent.OOS_FINDINGS: "OOS investigation findings written",
    DeviationEvent.OOS_ADVANCED: "OOS investigation moved to its next phase",
    DeviationEvent.OOS_CONCLUDED: "OOS investigation concluded and signed",
    DeviationEvent.CAPA_CANCELLED: "CAPA cancelled",
    DeviationEvent.CHANGE_PROPOSED: "Change control proposed",
    DeviationEvent.CHANGE_UPDATED: "Change control draft updated",
    DeviationEvent.CHANGE_TRANSITIONED: "Change control moved on",
    DeviationEvent.CHANGE_APPROVAL_SIGNED: "Change control approval signed",
    DeviationEvent.CHANGE_DRAFT_OPENED: "Master-file draft opened by a change control",
    DeviationEvent.CHANGE_NOTIFICATION_RAISED: "MHRA notification raised by a change control",
    DeviationEvent.CHANGE_TASK_ADDED: "Change implementation task added",
    DeviationEvent.CHANGE_TASK_DONE: "Change implementation task done",
    DeviationEvent.COMPLAINT_RECORDED: "Complaint or suspected adverse reaction recorded",
    DeviationEvent.COMPLAINT_ASSESSED: "Complaint assessed by QA",
    DeviationEvent.COMPLAINT_REPORTED: "Complaint reported to the MHRA",
    DeviationEvent.COMPLAINT_CLOSED: "Complaint closed",
}


class DeviationWebhook(StrEnum):
    OPENED = "deviations.deviation_opened"


WEBHOOK_DESCRIPTIONS: dict[str, str] = {
    DeviationWebhook.OPENED: "A deviation was raised at a site, by a person or from a batch "
    "signal (out-of-limit value, failed result, chain-of-identity mismatch).",
}
