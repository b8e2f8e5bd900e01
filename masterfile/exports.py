"""PDF/A exports of master-file versions: request, retry, download record and the task body
(issue 4 §7-8; design §7; MF-06, DI-07).

An export is a job row (`MasterFileExport`) with its own status and progress, so the page and
the API know the outcome without asking Redis. The work runs in a Celery task
(`masterfile.tasks.export_master_file`), which calls `export_run`:

1. claim the row under `select_for_update()` — a finished export is left alone, so a re-run
   (a redelivered message, a double click) does nothing;
2. read everything the PDF shows into plain data in one read-only step;
3. build the HTML and let WeasyPrint lay it out and write it **outside any transaction**, so
   no lock is held for the seconds that takes;
4. store the file, then record its SHA-256, size and page count and the completion event in
   one short transaction.

Transient failures (the database or the storage unreachable) put the row back in the queue and
propagate, so the task's retry policy runs it again; any other failure is final: the row shows
the error, the audit trail records it, and `export_retry` queues it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

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
from masterfile.events import MasterFileEvent
from masterfile.models import MasterFileExport, MasterFileVersion, export_upload_to
from masterfile.selectors import export_in_flight, exports_visible_to, versions_visible_to

logger = logging.getLogger(__name__)

# Worth another attempt: the database or the network was briefly away. Anything else is a fault
# in the data or the code, and retrying would only fail again.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
)
ERROR_MAX = 2000
# A running export silent for longer than the task time limit plus this is treated as abandoned.
ABANDONED_GRACE_SECONDS = 300

# Progress milestones (percent, stage). Layout is by far the longest step, so it spans most of
# the bar; each tick is written in its own short transaction when the step begins.
STAGE_QUEUED = "Queued"
STAGE_COLLECT = (5, "Reading the master file")
STAGE_HTML = (15, "Building the document")
STAGE_LAYOUT = (20, "Laying out the pages")
STAGE_WRITE = (75, "Writing the PDF/A file")
STAGE_STORE = (95, "Storing the file")
STAGE_DONE = (100, "Done")


#
# Rules shared by the services
#


def _require_exporter(actor: User) -> None:
    if not (
        permissions.user_can(actor, Capability.MANAGE_QUALITY_RECORDS)
        or permissions.user_can(actor, Capability.CERTIFY_BATCH)
    ):
        raise PermissionRefusedError(
            "Only Control Site QA and QPs export master files.", code="permission_denied"
        )


def _abandoned(export: MasterFileExport) -> bool:
    """A running export that has not moved for longer than a task may live: its worker died
    and the message is gone. (A live one ticks at every stage, and the hard time limit kills
    any task that runs longer.)"""
    limit = dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + ABANDONED_GRACE_SECONDS)
    return export.status == ExportStatus.RUNNING and export.updated_at < timezone.now() - limit


def _in_flight(version: MasterFileVersion) -> MasterFileExport | None:
    """The export of `version` that is queued or running, after failing any abandoned one."""
    running = export_in_flight(version)
    if running is not None and _abandoned(running):
        export_fail(
            running.pk,
            "The export was abandoned: its worker stopped while making the PDF. "
            "Retry it or request a new export.",
        )
        running = export_in_flight(version)
    return running


def _task() -> Any:
    # Imported late: the task module imports this one.
    from masterfile.tasks import export_master_file

    return export_master_file


def _export_extra(export: MasterFileExport, version: MasterFileVersion) -> dict[str, Any]:
    return {
        "version": version.pk,
        "number": version.number,
        "product": version.master_file.product.code,
        "version_status": version.status,
        "watermarked": export.watermarked,
    }


#
# Services the pages and the API call
#


def export_request(*, actor: User, version: MasterFileVersion) -> MasterFileExport:
    """Queue a PDF/A export of a version (issue 4 §7; MF-06, DI-07).

    Who: Control Site QA or a QP who may see the version; anyone else who may not see it gets
    `MasterFileVersion.DoesNotExist` (404), anyone who may see it but not export gets 403.
    Refused with 409 `export_in_flight` while another export of the version is queued or
    running (a running export silent for longer than a task may live is failed as abandoned
    first). A draft's or an in-review version's export is marked as a draft on every page.
    Writes the export row and an `export_requested` audit event; the task is sent on commit.
    """
    visible = versions_visible_to(actor).get(pk=version.pk)
    _require_exporter(actor)
    with transaction.atomic(), audit_context(reason="master file export requested"):
        # The version's row lock serialises requests for it, so two clicks make one export.
        locked = (
            MasterFileVersion.objects.select_for_update()
            .select_related("master_file__product")
            .get(pk=visible.pk)
        )
        running = _in_flight(locked)
        if running is not None:
            raise ConflictError(
                f"Export {running.pk} of version {locked.number} is already "
                f"{running.get_status_display().lower()}; wait for it to finish.",
                code="export_in_flight",
                extra={"export": running.pk},
            )
        export = MasterFileExport.objects.create(
            version=locked,
            requested_by=actor,
            status=ExportStatus.QUEUED,
            stage=STAGE_QUEUED,
            watermarked=locked.status in pdf.WATERMARKED_STATUSES,
            created_by=actor,
        )
        audit_event_record(
            event_type=MasterFileEvent.EXPORT_REQUESTED,
            actor=actor,
            target=export,
            extra=_export_extra(export, locked),
        )
        enqueue_on_commit(_task(), export.pk)
    return export


def export_retry(*, actor: User, export: MasterFileExport) -> MasterFileExport:
    """Queue a failed export again (issue 4 §8). Its attempts count is kept.

    Who: as `export_request`. Refused with 409 unless the export failed, and while another
    export of the same version is queued or running. Writes an `export_retried` audit event.
    """
    visible = exports_visible_to(actor).get(pk=export.pk)
    _require_exporter(actor)
    with transaction.atomic(), audit_context(reason="master file export retried"):
        locked_version = (
            MasterFileVersion.objects.select_for_update()
            .select_related("master_file__product")
            .get(pk=visible.version_id)
        )
        locked = MasterFileExport.objects.select_for_update().get(pk=visible.pk)
        if locked.status != ExportStatus.FAILED:
            raise ConflictError(
                f"Export {locked.pk} is {locked.get_status_display().lower()}; only a failed "
                "export can be retried.",
                code="export_not_failed",
            )
        running = _in_flight(locked_version)
        if running is not None:
            raise ConflictError(
                f"Export {running.pk} of this version is already "
                f"{running.get_status_display().lower()}.",
                code="export_in_flight",
                extra={"export": running.pk},
            )
        previous_error = locked.error
        locked.status = ExportStatus.QUEUED
        locked.stage = STAGE_QUEUED
        locked.progress = 0
        locked.error = ""
        locked.finished_at = None
        locked.save(
            update_fields=["status", "stage", "progress", "error", "finished_at", "updated_at"]
        )
        audit_event_record(
            event_type=MasterFileEvent.EXPORT_RETRIED,
            actor=actor,
            target=locked,
            extra={
                **_export_extra(locked, locked_version),
                "attempts": locked.attempts,
                "previous_error": previous_error[:500],
            },
        )
        enqueue_on_commit(_task(), locked.pk)
    export.status, export.stage, export.progress, export.error = (
        locked.status,
        locked.stage,
        locked.progress,
        locked.error,
    )
    return locked


def export_download_record(*, actor: User, export: MasterFileExport) -> None:
    """Record that `actor` is downloading the file (issue 4 §7: each download is an audit
    event). Whoever may see the export may download it.

    The stored file is checked against its recorded SHA-256 first: a file that no longer
    matches is refused (409 `export_file_mismatch`) rather than handed out as the record.
    Refused with 409 `export_not_ready` until the export is done.
    """
    visible = exports_visible_to(actor).get(pk=export.pk)
    stored_name = visible.file.name or ""
    if visible.status != ExportStatus.DONE or not stored_name:
        raise ConflictError(
            f"Export {visible.pk} is {visible.get_status_display().lower()}; the file can be "
            "downloaded once it is done.",
            code="export_not_ready",
        )
    # Read outside the transaction: hashing a file is I/O, not something to hold a lock for.
    if stored_sha256(stored_name) != visible.sha256:
        raise ConflictError(
            f"The stored file of export {visible.pk} no longer matches its recorded SHA-256; "
            "it is not handed out. Export the version again and tell QA.",
            code="export_file_mismatch",
        )
    with transaction.atomic(), audit_context(reason="master file export downloaded"):
        audit_event_record(
            event_type=MasterFileEvent.EXPORT_DOWNLOADED,
            actor=actor,
            target=visible,
            extra={
                **_export_extra(visible, visible.version),
                "sha256": visible.sha256,
                "file": visible.filename,
                "size_bytes": visible.size_bytes,
            },
        )


#
# The task body
#


def _claim(export_id: int) -> MasterFileExport | None:
    """Mark the export running, or return None if there is nothing to do."""
    with transaction.atomic():
        export = MasterFileExport.objects.select_for_update().get(pk=export_id)
        if export.status == ExportStatus.DONE:
            return None  # a re-run of a finished export does nothing
        if export.status == ExportStatus.FAILED:
            return None  # final until someone retries it (export_retry)
        # QUEUED, or RUNNING after a worker died mid-way (acks_late redelivers): start over.
        progress, stage = STAGE_COLLECT
        export.status = ExportStatus.RUNNING
        export.progress, export.stage = progress, stage
        export.attempts += 1
        export.error = ""
        export.started_at = timezone.now()
        export.save(
            update_fields=[
                "status",
                "progress",
                "stage",
                "attempts",
                "error",
                "started_at",
                "updated_at",
            ]
        )
    return export


def _tick(export: MasterFileExport, milestone: tuple[int, str]) -> None:
    export.progress, export.stage = milestone
    with transaction.atomic():
        export.save(update_fields=["progress", "stage", "updated_at"])


def _requeue(export_id: int, exc: BaseException) -> None:
    """Put a running export back in the queue before a transient failure propagates, so the
    retry can claim it. If even that fails, the row stays running, which a retry also claims."""
    try:
        with transaction.atomic():
            export = MasterFileExport.objects.select_for_update().get(pk=export_id)
            if export.status != ExportStatus.RUNNING:
                return
            export.status = ExportStatus.QUEUED
            export.progress = 0
            export.stage = f"Waiting to retry after: {type(exc).__name__}"[:60]
            export.save(update_fields=["status", "progress", "stage", "updated_at"])
    except TRANSIENT_ERRORS:
        logger.warning("Export %s could not be put back in the queue", export_id)


def _error_text(exc: BaseException) -> str:
    message = str(exc).strip() or "no message"
    return f"The PDF could not be made ({type(exc).__name__}): {message}"[:ERROR_MAX]


def export_fail(export_id: int, error: str) -> None:
    """Mark an export failed with a readable error and an `export_failed` audit event (unless it
    already finished). Used by `export_run` and by the task once its retries are spent."""
    with transaction.atomic(), audit_context(reason="master file export failed"):
        export = (
            MasterFileExport.objects.select_for_update()
            .select_related("version__master_file__product")
            .filter(pk=export_id)
            .first()
        )
        if export is None or export.status in (ExportStatus.DONE, ExportStatus.FAILED):
            return
        export.status = ExportStatus.FAILED
        export.stage = "Failed"
        export.error = error[:ERROR_MAX]
        export.finished_at = timezone.now()
        export.save(update_fields=["status", "stage", "error", "finished_at", "updated_at"])
        audit_event_record(
            event_type=MasterFileEvent.EXPORT_FAILED,
            target=export,
            as_system=True,
            extra={
                **_export_extra(export, export.version),
                "attempts": export.attempts,
                "error": export.error[:500],
            },
        )


@contextmanager
def read_only_snapshot() -> Iterator[None]:
    """One consistent, read-only view of the database for the collect step. On PostgreSQL a
    REPEATABLE READ READ ONLY transaction: every query sees the same moment and none can write.
    SQLite (demo and tests) reads in autocommit: its transactions take the write lock."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def _render(export: MasterFileExport) -> tuple[bytes, int]:
    """Collect, build, lay out and write; outside any transaction. Returns (pdf, pages), and
    sets `export.watermarked` (in memory) from the status of the content it read."""
    if connection.in_atomic_block:
        raise pdf.RenderInTransactionError(
            "A master-file export must be rendered outside any database transaction."
        )
    with read_only_snapshot():
        document_data = pdf.master_file_collect(export, now=timezone.now())
    _tick(export, STAGE_HTML)
    html = pdf.master_file_html(document_data)
    export.watermarked = document_data.watermarked
    trail = pdf.json_attachment(
        name="audit-trail.json",
        text=pdf.to_json(document_data.audit_trail),
        description=f"Audit trail of the {document_data.product_code} master file "
        f"(history rows, audit events, signatures), exported with version "
        f"{document_data.version_number}",
    )
    del document_data  # the HTML and the JSON hold what is needed from here on
    _tick(export, STAGE_LAYOUT)
    document = pdf.layout(html)
    del html
    _tick(export, STAGE_WRITE)
    content = pdf.write_pdfa(document, attachments=[trail])
    return content, len(document.pages)


def _store(export: MasterFileExport, content: bytes) -> str:
    name = export_upload_to(export, export.filename)
    stored: str = default_storage.save(name, ContentFile(content))
    return stored


def _finish(
    export_id: int, *, stored: str, sha256: str, size: int, pages: int, watermarked: bool
) -> MasterFileExport | None:
    with transaction.atomic(), audit_context(reason="master file export completed"):
        export = (
            MasterFileExport.objects.select_for_update()
            .select_related("version__master_file__product")
            .get(pk=export_id)
        )
        if export.status != ExportStatus.RUNNING:
            return None  # finished or failed by another run meanwhile: keep that outcome
        export.file.name = stored
        export.sha256 = sha256
        export.size_bytes = size
        export.page_count = pages
        export.watermarked = watermarked
        export.status = ExportStatus.DONE
        export.progress, export.stage = STAGE_DONE
        export.finished_at = timezone.now()
        export.save(
            update_fields=[
                "file",
                "sha256",
                "size_bytes",
                "page_count",
                "watermarked",
                "status",
                "progress",
                "stage",
                "finished_at",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=MasterFileEvent.EXPORT_COMPLETED,
            target=export,
            as_system=True,
            extra={
                **_export_extra(export, export.version),
                "sha256": sha256,
                "size_bytes": size,
                "pages": pages,
                "attempts": export.attempts,
                "file": stored,
            },
        )
    return export


def _discard(stored: str) -> None:
    try:
        default_storage.delete(stored)
    except OSError:
        logger.warning("Could not remove the unused export file %s", stored)


def export_run(export_id: int) -> None:
    """Make the PDF of one export (the task body; design §7, issue 4 §8).

    Idempotent: a done (or failed) export is left as it is. Transient errors put the export
    back in the queue and propagate for the task to retry; any other error marks it failed
    with a readable message and an `export_failed` event, and does not propagate.
    """
    export = _claim(export_id)
    if export is None:
        return
    try:
        content, pages = _render(export)
        _tick(export, STAGE_STORE)
    except TRANSIENT_ERRORS as exc:
        _requeue(export_id, exc)
        raise
    except Exception as exc:
        logger.exception("Master file export %s failed", export_id)
        export_fail(export_id, _error_text(exc))
        return
    sha256, size = hashlib.sha256(content).hexdigest(), len(content)
    try:
        stored = _store(export, content)
    except OSError as exc:  # the storage is unreachable or full: worth another attempt
        _requeue(export_id, exc)
        raise
    del content
    try:
        finished = _finish(
            export_id,
            stored=stored,
            sha256=sha256,
            size=size,
            pages=pages,
            watermarked=export.watermarked,
        )
    except TRANSIENT_ERRORS as exc:
        _discard(stored)
        _requeue(export_id, exc)
        raise
    if finished is None:
        _discard(stored)
