"""PDF/A exports of master-file versions: request, retry, download record and the task body
(issue 4 §7-8; design §7; MF-06, DI-07).

An export is a job row (`MasterFileExport`); the Celery task
(`masterfile.tasks.export_master_file`) calls `export_run`, which runs the job's life shared
with the annual report (masterfile/pdfjobs.py): claim the row, read everything the PDF shows in
one read-only snapshot, lay it out and write it outside any transaction, store the file and
record its SHA-256, size and page count with the completion event. A failed export stays
failed until `export_retry` queues it again.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from controlsite.accounts import permissions
from controlsite.accounts.models import User
from controlsite.accounts.roles import Capability
from controlsite.audit.context import audit_context
from controlsite.audit.services import audit_event_record
from controlsite.background.tasks import enqueue_on_commit
from controlsite.errors import ConflictError, PermissionRefusedError
from controlsite.files import stored_sha256
from masterfile import pdf, pdfjobs
from masterfile.choices import ExportStatus
from masterfile.events import MasterFileEvent
from masterfile.models import MasterFileExport, MasterFileVersion, export_upload_to
from masterfile.selectors import export_in_flight, exports_visible_to, versions_visible_to

# A browser test replaces `_tick` to watch the progress bar move.
_tick = pdfjobs.tick
read_only_snapshot = pdfjobs.read_only_snapshot

# Progress milestones (percent, stage), besides pdfjobs' storing and done. Layout is by far the
# longest step, so it spans most of the bar; each tick is written in its own short transaction
# when the step begins.
STAGE_COLLECT = (5, "Reading the master file")
STAGE_HTML = (15, "Building the document")
STAGE_LAYOUT = (20, "Laying out the pages")
STAGE_WRITE = (75, "Writing the PDF/A file")


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


def _in_flight(version: MasterFileVersion) -> MasterFileExport | None:
    """The export of `version` that is queued or running, after failing any abandoned one."""
    running = export_in_flight(version)
    if running is not None and pdfjobs.abandoned(running):
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
            stage=pdfjobs.STAGE_QUEUED,
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
        pdfjobs.requeued(locked)
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
# The task body (masterfile/pdfjobs.py)
#


def export_fail(export_id: int, error: str) -> None:
    """Mark an export failed with a readable error and an `export_failed` audit event (unless it
    already finished). Used by `export_run` and by the task once its retries are spent."""
    pdfjobs.fail(EXPORT_JOB, export_id, error)


def _render(export: MasterFileExport) -> pdfjobs.Made:
    """Collect, build, lay out and write; outside any transaction."""
    if connection.in_atomic_block:
        raise pdf.RenderInTransactionError(
            "A master-file export must be rendered outside any database transaction."
        )
    with read_only_snapshot():
        document_data = pdf.master_file_collect(export, now=timezone.now())
    _tick(export, STAGE_HTML)
    html = pdf.master_file_html(document_data)
    # The watermark follows the status of the content read, whatever the version is now.
    watermarked = document_data.watermarked
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
    return pdfjobs.Made(content, len(document.pages), fields={"watermarked": watermarked})


EXPORT_JOB = pdfjobs.PdfJob(
    model=MasterFileExport,
    noun="master file export",
    related=("version__master_file__product",),
    completed_event=MasterFileEvent.EXPORT_COMPLETED,
    failed_event=MasterFileEvent.EXPORT_FAILED,
    facts=lambda export: _export_extra(export, export.version),
    render=lambda export: _render(export),  # looked up when called: tests replace `_render`
    upload_to=export_upload_to,
    collect_stage=STAGE_COLLECT,
)


def export_run(export_id: int) -> None:
    """Make the PDF of one export (the task body; design §7, issue 4 §8): `pdfjobs.run`."""
    pdfjobs.run(EXPORT_JOB, export_id)
