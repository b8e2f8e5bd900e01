"""The signed audit-trail review (AT-06)."""

from __future__ import annotations

from django.db.models import Max

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.audit.context import audit_context
from controlsite.audit.events import KernelEvent
from controlsite.audit.models import AuditEvent, AuditReview
from controlsite.audit.services import audit_chain_verify, audit_event_record
from controlsite.errors import ApplicationError
from controlsite.signatures.models import SignatureMeaning
from controlsite.signatures.services import SignatureCredentials, sign, signing_transaction


def audit_review_next_range() -> tuple[int, int]:
    """From the event after the last review to the newest event."""
    last_reviewed = AuditReview.objects.aggregate(m=Max("to_seq"))["m"] or 0
    newest = AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
    return last_reviewed + 1, newest


def audit_review_sign(
    *, reviewer: User, credentials: SignatureCredentials, comment: str, reason: str
) -> AuditReview:
    """QA reviews the trail since the last review and signs it ("reviewed").

    Verifies the hash chain over the range first and freezes the result into the record.
    """
    permissions.require(reviewer, Capability.REVIEW_AUDIT_TRAIL)
    with signing_transaction(), audit_context(reason=reason or "audit-trail review"):
        from_seq, to_seq = audit_review_next_range()
        if to_seq < from_seq:
            raise ApplicationError("There are no new events to review.", code="nothing_to_review")
        report = audit_chain_verify(from_seq=from_seq, to_seq=to_seq)
        review = AuditReview.objects.create(
            from_seq=from_seq,
            to_seq=to_seq,
            events_reviewed=to_seq - from_seq + 1,
            chain_intact=report.intact,
            comment=comment,
            created_by=reviewer,
        )
        signature = sign(
            signer=reviewer,
            credentials=credentials,
            record=review,
            meaning=SignatureMeaning.REVIEWED,
            reason=reason,
        )
        audit_event_record(
            event_type=KernelEvent.AUDIT_REVIEWED,
            actor=reviewer,
            target=review,
            extra={"from_seq": from_seq, "to_seq": to_seq, "chain_intact": report.intact},
            reason=reason,
            signature=signature,
        )
    return review
