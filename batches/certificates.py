"""Batch certificates: the PDF/A-3b of every decided batch — certified, certified under
concession or rejected (issue 5 §7; design §7; BR-03, BR-04, BR-06, DI-07).

The master-file export's conventions (masterfile/exports.py), applied to `BatchCertificate`:

- `certificate_queue` makes the job row and sends the task on commit; the QP's decision calls it
  inside its own transaction, so a decision that rolls back leaves no certificate behind;
- `certificate_run` (the task body) claims the row under `select_for_update()` — a finished
  certificate is left alone, so a redelivered message does nothing — reads the batch in one
  read-only step, lays the PDF out **outside any transaction**, stores the file and records its
  SHA-256, size and page count with a completion event in one short transaction;
- a transient failure (database or storage briefly away) puts the row back in the queue and
  propagates for the task's retry policy; any other failure is final: the row keeps the error,
  an audit event records it, and `certificate_retry` queues it again;
- `certificate_download_record` checks the stored file against its SHA-256 and records the
  download as an audit event.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.utils import timezone

from batches import pdf as batch_pdf
from batches.events import CertificateEvent
from batches.models import BatchCertificate, Certification, certificate_upload_to
from batches.selectors import batches_visible_to
from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.audit.context import audit_context
from controlsite.audit.services import audit_event_record
from controlsite.background.tasks import enqueue_on_commit
from controlsite.errors import ConflictError, PermissionRefusedError
from controlsite.files import stored_sha256
from masterfile import pdf
from masterfile.choices import ExportStatus
from masterfile.pdfjobs import TRANSIENT_ERRORS, read_only_snapshot

logger = logging.getLogger(__name__)


ERROR_MAX = 2000


def _task() -> Any:
    # Imported late: the task module imports this one.
    from batches.tasks import certificate_make

    return certificate_make


def _extra(certificate: BatchCertificate, certification: Certification) -> dict[str, Any]:
    return {
        "batch": certification.batch.number,
        "decision": certification.decision,
        "certification": certification.pk,
    }


def _visible(actor: User, certificate: BatchCertificate) -> BatchCertificate:
    """The certificate if `actor` may see its batch; `BatchCertificate.DoesNotExist` (404)."""
    return BatchCertificate.objects.select_related("certification__batch__site").get(
        pk=certificate.pk,
        certification__batch__in=batches_visible_to(actor),
    )


#
# Services
#


def certificate_queue(*, certification: Certification) -> BatchCertificate:
    """Make the certificate job row of a decision and send the task on commit (issue 5 §7).

    Called by the QP's decision (`batches.services._decide`) inside its transaction; the
    decision already checked who may decide. Idempotent: a decision has one certificate, so a
    second call returns the existing row. Writes a `certificate_queued` audit event.
    """
    # Part of the decision: no savepoint, so a failure here fails the decision with it.
    with transaction.atomic(savepoint=False), audit_context(reason="batch certificate queued"):
        existing = BatchCertificate.objects.filter(certification=certification).first()
        if existing is not None:
            return existing
        certificate = BatchCertificate.objects.create(
            certification=certification,
            status=ExportStatus.QUEUED,
            created_by=certification.qp,
        )
        audit_event_record(
            event_type=CertificateEvent.QUEUED,
            target=certificate,
            as_system=True,
            site_code=certification.batch.site.code,
            extra=_extra(certificate, certification),
        )
        enqueue_on_commit(_task(), certificate.pk)
    return certificate


def certificate_retry(*, actor: User, certificate: BatchCertificate) -> BatchCertificate:
    """Queue a failed certificate again (its attempts count is kept).

    Who: Control Site QA or a QP who may see the batch (others who may see it: 403; who may
    not: 404). Refused with 409 `certificate_not_failed` unless it failed. Writes a
    `certificate_retried` audit event.
    """
    visible = _visible(actor, certificate)
    if not (
        permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS)
        or permissions.user_can(actor, Capability.CERTIFY_BATCH)
    ):
        raise PermissionRefusedError(
            "Only Control Site QA and QPs retry batch certificates.", code="permission_denied"
        )
    with transaction.atomic(), audit_context(reason="batch certificate retried", user=actor):
        locked = (
            BatchCertificate.objects.select_for_update(of=("self",))
            .select_related("certification__batch__site")
            .get(pk=visible.pk)
        )
        if locked.status != ExportStatus.FAILED:
            raise ConflictError(
                f"Certificate {locked.pk} is {locked.get_status_display().lower()}; only a "
                "failed certificate can be retried.",
                code="certificate_not_failed",
            )
        previous_error = locked.error
        locked.status = ExportStatus.QUEUED
        locked.error = ""
        locked.finished_at = None
        locked.save(update_fields=["status", "error", "finished_at", "updated_at"])
        audit_event_record(
            event_type=CertificateEvent.RETRIED,
            actor=actor,
            target=locked,
            site_code=locked.certification.batch.site.code,
            extra={
                **_extra(locked, locked.certification),
                "attempts": locked.attempts,
                "previous_error": previous_error[:500],
            },
        )
        enqueue_on_commit(_task(), locked.pk)
    return locked


def certificate_download_record(*, actor: User, certificate: BatchCertificate) -> None:
    """Record that `actor` downloads the certificate (issue 5 §7: a download is an audit event).
    Whoever may see the batch may download it.

    The stored file is checked against its SHA-256 first: a file that no longer matches is
    refused (409 `certificate_file_mismatch`). Refused with 409 `certificate_not_ready` until
    the certificate is done.
    """
    visible = _visible(actor, certificate)
    stored_name = visible.file.name or ""
    if visible.status != ExportStatus.DONE or not stored_name:
        raise ConflictError(
            f"Certificate {visible.pk} is {visible.get_status_display().lower()}; it can be "
            "downloaded once it is done.",
            code="certificate_not_ready",
        )
    if stored_sha256(stored_name) != visible.sha256:  # I/O: outside the transaction
        raise ConflictError(
            f"The stored file of certificate {visible.pk} no longer matches its recorded "
            "SHA-256; it is not handed out. Tell QA.",
            code="certificate_file_mismatch",
        )
    with transaction.atomic(), audit_context(reason="batch certificate downloaded", user=actor):
        audit_event_record(
            event_type=CertificateEvent.DOWNLOADED,
            actor=actor,
            target=visible,
            site_code=visible.certification.batch.site.code,
            extra={
                **_extra(visible, visible.certification),
                "sha256": visible.sha256,
                "size_bytes": visible.size_bytes,
            },
        )


#
# The task body
#


def _claim(certificate_id: int) -> BatchCertificate | None:
    """Mark the certificate running, or return None if there is nothing to do."""
    with transaction.atomic():
        certificate = BatchCertificate.objects.select_for_update().get(pk=certificate_id)
        if certificate.status in (ExportStatus.DONE, ExportStatus.FAILED):
            return None  # done: a re-run does nothing; failed: final until retried
        # QUEUED, or RUNNING after a worker died mid-way (acks_late redelivers): start over.
        certificate.status = ExportStatus.RUNNING
        certificate.attempts += 1
        certificate.error = ""
        certificate.started_at = timezone.now()
        certificate.save(update_fields=["status", "attempts", "error", "started_at", "updated_at"])
    return certificate


def _requeue(certificate_id: int, exc: BaseException) -> None:
    try:
        with transaction.atomic():
            certificate = BatchCertificate.objects.select_for_update().get(pk=certificate_id)
            if certificate.status != ExportStatus.RUNNING:
                return
            certificate.status = ExportStatus.QUEUED
            certificate.save(update_fields=["status", "updated_at"])
    except TRANSIENT_ERRORS:
        logger.warning(
            "Certificate %s could not be put back in the queue (%s)", certificate_id, exc
        )


def certificate_fail(certificate_id: int, error: str) -> None:
    """Mark a certificate failed with a readable error and a `certificate_failed` audit event
    (unless it already finished). Used by `certificate_run` and by the task once its retries
    are spent."""
    with transaction.atomic(), audit_context(reason="batch certificate failed"):
        certificate = (
            BatchCertificate.objects.select_for_update(of=("self",))
            .select_related("certification__batch__site")
            .filter(pk=certificate_id)
            .first()
        )
        if certificate is None or certificate.status in (ExportStatus.DONE, ExportStatus.FAILED):
            return
        certificate.status = ExportStatus.FAILED
        certificate.error = error[:ERROR_MAX]
        certificate.finished_at = timezone.now()
        certificate.save(update_fields=["status", "error", "finished_at", "updated_at"])
        audit_event_record(
            event_type=CertificateEvent.FAILED,
            target=certificate,
            as_system=True,
            site_code=certificate.certification.batch.site.code,
            extra={
                **_extra(certificate, certificate.certification),
                "attempts": certificate.attempts,
                "error": certificate.error[:500],
            },
        )


def _render(certificate: BatchCertificate) -> tuple[bytes, int, str]:
    """Collect, build, lay out and write; outside any transaction. (pdf, pages, batch number)"""
    if connection.in_atomic_block:
        raise pdf.RenderInTransactionError(
            "A batch certificate must be rendered outside any database transaction."
        )
    with read_only_snapshot():
        document_data = batch_pdf.certificate_collect(certificate, now=timezone.now())
    html = batch_pdf.certificate_html(document_data)
    trail = pdf.json_attachment(
        name="audit-trail.json",
        text=pdf.to_json(document_data.audit_trail),
        description=f"Audit trail of batch {document_data.batch_number} (history rows, audit "
        "events, signatures)",
    )
    number = document_data.batch_number
    del document_data
    document = pdf.layout(html)
    content = pdf.write_pdfa(document, attachments=[trail])
    return content, len(document.pages), number


def _finish(
    certificate_id: int, *, stored: str, sha256: str, size: int, pages: int
) -> BatchCertificate | None:
    with transaction.atomic(), audit_context(reason="batch certificate made"):
        certificate = (
            BatchCertificate.objects.select_for_update(of=("self",))
            .select_related("certification__batch__site")
            .get(pk=certificate_id)
        )
        if certificate.status != ExportStatus.RUNNING:
            return None  # finished or failed by another run meanwhile: keep that outcome
        certificate.file.name = stored
        certificate.sha256 = sha256
        certificate.size_bytes = size
        certificate.page_count = pages
        certificate.status = ExportStatus.DONE
        certificate.finished_at = timezone.now()
        certificate.save(
            update_fields=[
                "file",
                "sha256",
                "size_bytes",
                "page_count",
                "status",
                "finished_at",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=CertificateEvent.COMPLETED,
            target=certificate,
            as_system=True,
            site_code=certificate.certification.batch.site.code,
            extra={
                **_extra(certificate, certificate.certification),
                "sha256": sha256,
                "size_bytes": size,
                "pages": pages,
                "attempts": certificate.attempts,
                "file": stored,
            },
        )
    return certificate


def _discard(stored: str) -> None:
    try:
        default_storage.delete(stored)
    except OSError:
        logger.warning("Could not remove the unused certificate file %s", stored)


def certificate_run(certificate_id: int) -> None:
    """Make the PDF of one certificate (the task body; design §7).

    Idempotent: a done (or failed) certificate is left as it is. Transient errors put it back
    in the queue and propagate for the task to retry; any other error marks it failed with a
    readable message and a `certificate_failed` event, and does not propagate.
    """
    certificate = _claim(certificate_id)
    if certificate is None:
        return
    try:
        content, pages, number = _render(certificate)
    except TRANSIENT_ERRORS as exc:
        _requeue(certificate_id, exc)
        raise
    except Exception as exc:
        logger.exception("Batch certificate %s failed", certificate_id)
        message = str(exc).strip() or "no message"
        certificate_fail(
            certificate_id, f"The PDF could not be made ({type(exc).__name__}): {message}"
        )
        return
    sha256, size = hashlib.sha256(content).hexdigest(), len(content)
    try:
        stored: str = default_storage.save(
            certificate_upload_to(certificate, f"certificate-{number}-{certificate.pk}.pdf"),
            ContentFile(content),
        )
    except OSError as exc:  # the storage is unreachable or full: worth another attempt
        _requeue(certificate_id, exc)
        raise
    try:
        finished = _finish(certificate_id, stored=stored, sha256=sha256, size=size, pages=pages)
    except TRANSIENT_ERRORS as exc:
        _discard(stored)
        _requeue(certificate_id, exc)
        raise
    if finished is None:
        _discard(stored)
