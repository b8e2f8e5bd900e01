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
}


class DeviationWebhook(StrEnum):
    OPENED = "deviations.deviation_opened"


WEBHOOK_DESCRIPTIONS: dict[str, str] = {
    DeviationWebhook.OPENED: "A deviation was raised at a site, by a person or from a batch "
    "signal (out-of-limit value, failed result, chain-of-identity mismatch).",
}
