"""The batches app's audit event types."""

from __future__ import annotations

from enum import StrEnum


class BatchEvent(StrEnum):
    TEMPLATE_CREATED = "batches.template_created"
    TEMPLATE_CHANGED = "batches.template_changed"
    TEMPLATE_APPROVED = "batches.template_approved"
    TEMPLATE_RETIRED = "batches.template_retired"
    STARTED = "batches.started"
    START_REFUSED = "batches.start_refused"
    STEP_PERFORMED = "batches.step_performed"
    STEP_VERIFIED = "batches.step_verified"
    OUT_OF_LIMIT = "batches.out_of_limit"
    COMPLETED = "batches.completed"
    RESULT_RECORDED = "batches.result_recorded"
    LATE_RESULT_FAILED = "batches.late_result_failed"
    CERTIFIED = "batches.certified"
    CERTIFIED_UNDER_CONCESSION = "batches.certified_under_concession"
    REJECTED = "batches.rejected"
    SUPPLIED = "batches.supplied"
    ADMINISTERED = "batches.administered"
    COI_MISMATCH = "batches.coi_mismatch"


class CertificateEvent(StrEnum):
    """Audit event types of batch certificates (a job row like the master-file export)."""

    QUEUED = "batches.certificate_queued"
    COMPLETED = "batches.certificate_completed"
    FAILED = "batches.certificate_failed"
    RETRIED = "batches.certificate_retried"
    DOWNLOADED = "batches.certificate_downloaded"


class ComparabilityEvent(StrEnum):
    """Audit event types of cross-site comparability (issue 8; SO-08, SO-09)."""

    LIMITS_APPROVED = "batches.reference_limits_approved"
    LIMITS_SUPERSEDED = "batches.reference_limits_superseded"
    SIGNAL_RAISED = "batches.comparability_signal"
    CHECK_SCHEDULED = "batches.comparability_check_scheduled"
    CHECK_RECORDED = "batches.comparability_check_recorded"
    CHECK_REVIEWED = "batches.comparability_check_reviewed"
    CHECK_CANCELLED = "batches.comparability_check_cancelled"
    CHECK_OVERDUE = "batches.comparability_check_overdue"


LABELS: dict[str, str] = {
    BatchEvent.TEMPLATE_CREATED: "Batch template drafted",
    BatchEvent.TEMPLATE_CHANGED: "Batch template changed",
    BatchEvent.TEMPLATE_APPROVED: "Batch template approved",
    BatchEvent.TEMPLATE_RETIRED: "Batch template retired",
    BatchEvent.STARTED: "Batch started",
    BatchEvent.START_REFUSED: "Batch start refused",
    BatchEvent.STEP_PERFORMED: "Batch step performed",
    BatchEvent.STEP_VERIFIED: "Batch step verified",
    BatchEvent.OUT_OF_LIMIT: "Value outside limits",
    BatchEvent.COMPLETED: "Batch completed",
    BatchEvent.RESULT_RECORDED: "Test result recorded",
    BatchEvent.LATE_RESULT_FAILED: "Late result failed after certification",
    BatchEvent.CERTIFIED: "Batch certified by the QP",
    BatchEvent.CERTIFIED_UNDER_CONCESSION: "Batch certified under concession",
    BatchEvent.REJECTED: "Batch rejected",
    BatchEvent.SUPPLIED: "Batch supplied",
    BatchEvent.ADMINISTERED: "Administration confirmed",
    BatchEvent.COI_MISMATCH: "Chain-of-identity mismatch",
    CertificateEvent.QUEUED: "Batch certificate queued",
    CertificateEvent.COMPLETED: "Batch certificate made",
    CertificateEvent.FAILED: "Batch certificate failed",
    CertificateEvent.RETRIED: "Batch certificate retried",
    CertificateEvent.DOWNLOADED: "Batch certificate downloaded",
    ComparabilityEvent.LIMITS_APPROVED: "Reference limits approved",
    ComparabilityEvent.LIMITS_SUPERSEDED: "Reference limits superseded",
    ComparabilityEvent.SIGNAL_RAISED: "Comparability signal raised",
    ComparabilityEvent.CHECK_SCHEDULED: "Comparability check scheduled",
    ComparabilityEvent.CHECK_RECORDED: "Comparability check results recorded",
    ComparabilityEvent.CHECK_REVIEWED: "Comparability check reviewed",
    ComparabilityEvent.CHECK_CANCELLED: "Comparability check cancelled",
    ComparabilityEvent.CHECK_OVERDUE: "Comparability check overdue: QA and site leads told",
}


class BatchWebhook(StrEnum):
    """What integrators may subscribe to (issue 5 §9), sent as HMAC-signed JSON."""

    COMPLETED = "batches.batch_completed"
    CERTIFIED = "batches.batch_certified"
    REJECTED = "batches.batch_rejected"
    LATE_RESULT_FAILED = "batches.late_result_failed"


WEBHOOK_DESCRIPTIONS: dict[str, str] = {
    BatchWebhook.COMPLETED: "A batch's last step was signed: it awaits QP certification.",
    BatchWebhook.CERTIFIED: "A QP certified a batch (decision `certified` or "
    "`certified_under_concession`).",
    BatchWebhook.REJECTED: "A QP rejected a batch.",
    BatchWebhook.LATE_RESULT_FAILED: "A result that arrived after certification failed its "
    "specification: contact the treating clinician.",
}
