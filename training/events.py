"""The training app's audit event types, with the labels people read."""

from __future__ import annotations

from enum import StrEnum


class TrainingEvent(StrEnum):
    PROCEDURE_CREATED = "training.procedure_created"
    VERSION_ISSUED = "training.version_issued"
    VERSION_EFFECTIVE = "training.version_effective"
    VERSION_SUPERSEDED = "training.version_superseded"
    ITEM_CREATED = "training.item_created"
    ITEM_CHANGED = "training.item_changed"
    CURRICULUM_CREATED = "training.curriculum_created"
    REQUIREMENT_ADDED = "training.requirement_added"
    REQUIREMENT_REMOVED = "training.requirement_removed"
    ASSIGNED = "training.assigned"
    ASSIGNMENT_WITHDRAWN = "training.assignment_withdrawn"
    ACKNOWLEDGED = "training.acknowledged"
    ASSESSED = "training.assessed"
    ENTERED = "training.record_entered"
    OVERDUE_ESCALATED = "training.overdue_escalated"


LABELS: dict[str, str] = {
    TrainingEvent.PROCEDURE_CREATED: "Procedure registered",
    TrainingEvent.VERSION_ISSUED: "Procedure version issued",
    TrainingEvent.VERSION_EFFECTIVE: "Procedure version effective",
    TrainingEvent.VERSION_SUPERSEDED: "Procedure version superseded",
    TrainingEvent.ITEM_CREATED: "Training item created",
    TrainingEvent.ITEM_CHANGED: "Training item changed",
    TrainingEvent.CURRICULUM_CREATED: "Curriculum created",
    TrainingEvent.REQUIREMENT_ADDED: "Curriculum item added",
    TrainingEvent.REQUIREMENT_REMOVED: "Curriculum item removed",
    TrainingEvent.ASSIGNED: "Training assigned",
    TrainingEvent.ASSIGNMENT_WITHDRAWN: "Training assignment withdrawn",
    TrainingEvent.ACKNOWLEDGED: "Training acknowledged (read and understood)",
    TrainingEvent.ASSESSED: "Training assessed",
    TrainingEvent.ENTERED: "Training record entered",
    TrainingEvent.OVERDUE_ESCALATED: "Overdue training escalated",
}
