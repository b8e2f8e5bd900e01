"""The life of a PDF job row, shared by the master-file export (masterfile/exports.py) and the
annual report (masterfile/annual.py): claim, progress, requeue, fail, finish and the task body
that runs them (design §7).

A job row has its own status and progress, so the page and the API know the outcome without
asking Redis. `run(job, pk)` is the task body:

1. claim the row under `select_for_update()` — a finished or failed row is left alone, so a
   re-run (a redelivered message, a double click) does nothing;
2. `job.render(row)` reads everything in one read-only snapshot (`read_only_snapshot`) and
   lays the PDF out and writes it **outside any transaction**, so no lock is held for the
   seconds that takes;
3. store the file, then record its SHA-256, size and page count and the completion event in
   one short transaction.

Transient failures (the database or the storage unreachable) put the row back in the queue and
propagate, so the task's retry policy runs it again; any other failure is final: the row keeps
a readable error, the audit trail records it, and the app's retry service queues it again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.utils import timezone

from controlsite.audit.context import audit_context
from controlsite.audit.services import audit_event_record
from masterfile.choices import ExportStatus

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
# A running job silent for longer than the task time limit plus this is treated as abandoned.
ABANDONED_GRACE_SECONDS = 300
STAGE_QUEUED = "Queued"
STAGE_STORE = (95, "Storing the file")
STAGE_DONE = (100, "Done")

Row = TypeVar("Row", bound=models.Model)


@dataclasses.dataclass(frozen=True)
class Made:
    """What rendering made: the file, its page count, the further fields the finished row
    records (`fields`) and the further facts its completion event records (`event`)."""

    content: bytes
    pages: int
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    event: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PdfJob(Generic[Row]):
    """One kind of PDF job: its model, its audit events and how it is made."""

    model: type[Row]
    noun: str  # "master file export": in reasons, log lines and errors
    related: tuple[str, ...]  # what `facts` reads, selected with the locked row
    completed_event: str
    failed_event: str
    facts: Callable[[Row], dict[str, Any]]  # what every event of the row records
    render: Callable[[Row], Made]
    upload_to: Callable[[Row, str], str]
    collect_stage: tuple[int, str]

    def locked(self) -> models.QuerySet[Row]:
        return (
            self.model._default_manager.select_for_update(of=("self",))
            .select_related(*self.related)
            .all()
        )


def abandoned(row: Any) -> bool:
    """A running row that has not moved for longer than a task may live: its worker died and
    the message is gone. (A live one ticks at every stage, and the hard time limit kills any
    task that runs longer.)"""
    limit = dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + ABANDONED_GRACE_SECONDS)
    return bool(row.status == ExportStatus.RUNNING and row.updated_at < timezone.now() - limit)


def tick(row: Any, milestone: tuple[int, str]) -> None:
    """Move the progress bar, in a short transaction of its own. Operational, not GMP data: no
    history row for a tick."""
    row.progress, row.stage = milestone
    row.skip_history_when_saving = True
    try:
        with transaction.atomic():
            row.save(update_fields=["progress", "stage", "updated_at"])
    finally:
        del row.skip_history_when_saving


def requeued(row: Any) -> None:
    """Set a failed row queued again, for the app's retry service (its attempts are kept)."""
    row.status = ExportStatus.QUEUED
    row.stage = STAGE_QUEUED
    row.progress = 0
    row.error = ""
    row.finished_at = None
    row.save(update_fields=["status", "stage", "progress", "error", "finished_at", "updated_at"])


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


def _claim(job: PdfJob[Row], pk: int) -> Row | None:
    """Mark the row running, or return None if there is nothing to do."""
    with transaction.atomic(), audit_context(reason=f"{job.noun} started"):
        row: Any = job.locked().get(pk=pk)
        if row.status in (ExportStatus.DONE, ExportStatus.FAILED):
            return None  # finished, or final until someone retries it
        # QUEUED, or RUNNING after a worker died mid-way (acks_late redelivers): start over.
        row.status = ExportStatus.RUNNING
        row.progress, row.stage = job.collect_stage
        row.attempts += 1
        row.error = ""
        row.started_at = timezone.now()
        row.save(
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
    claimed: Row = row
    return claimed


def _requeue(job: PdfJob[Row], pk: int, exc: BaseException) -> None:
    """Put a running row back in the queue before a transient failure propagates, so the retry
    can claim it. If even that fails, the row stays running, which a retry also claims."""
    try:
        with transaction.atomic(), audit_context(reason=f"{job.noun} waiting to retry"):
            row: Any = job.locked().get(pk=pk)
            if row.status != ExportStatus.RUNNING:
                return
            row.status = ExportStatus.QUEUED
            row.progress = 0
            row.stage = f"Waiting to retry after: {type(exc).__name__}"[:60]
            row.save(update_fields=["status", "progress", "stage", "updated_at"])
    except TRANSIENT_ERRORS:
        logger.warning("%s %s could not be put back in the queue", job.noun.capitalize(), pk)


def error_text(exc: BaseException) -> str:
    message = str(exc).strip() or "no message"
    return f"The PDF could not be made ({type(exc).__name__}): {message}"[:ERROR_MAX]


def fail(job: PdfJob[Row], pk: int, error: str) -> None:
    """Mark a row failed with a readable error and the job's failure event (unless it already
    finished). Used by `run` and by the task once its retries are spent."""
    with transaction.atomic(), audit_context(reason=f"{job.noun} failed"):
        row: Any = job.locked().filter(pk=pk).first()
        if row is None or row.status in (ExportStatus.DONE, ExportStatus.FAILED):
            return
        row.status = ExportStatus.FAILED
        row.stage = "Failed"
        row.error = error[:ERROR_MAX]
        row.finished_at = timezone.now()
        row.save(update_fields=["status", "stage", "error", "finished_at", "updated_at"])
        audit_event_record(
            event_type=job.failed_event,
            target=row,
            as_system=True,
            extra={**job.facts(row), "attempts": row.attempts, "error": row.error[:500]},
        )


def _finish(job: PdfJob[Row], pk: int, *, stored: str, sha256: str, made: Made) -> bool:
    with transaction.atomic(), audit_context(reason=f"{job.noun} completed"):
        row: Any = job.locked().get(pk=pk)
        if row.status != ExportStatus.RUNNING:
            return False  # finished or failed by another run meanwhile: keep that outcome
        row.file.name = stored
        row.sha256 = sha256
        row.size_bytes = len(made.content)
        row.page_count = made.pages
        for name, value in made.fields.items():
            setattr(row, name, value)
        row.status = ExportStatus.DONE
        row.progress, row.stage = STAGE_DONE
        row.finished_at = timezone.now()
        row.save(
            update_fields=[
                "file",
                "sha256",
                "size_bytes",
                "page_count",
                *made.fields,
                "status",
                "progress",
                "stage",
                "finished_at",
                "updated_at",
            ]
        )
        audit_event_record(
            event_type=job.completed_event,
            target=row,
            as_system=True,
            extra={
                **job.facts(row),
                "sha256": sha256,
                "size_bytes": row.size_bytes,
                "pages": made.pages,
                "attempts": row.attempts,
                "file": stored,
                **made.event,
            },
        )
    return True


def _discard(job: PdfJob[Row], stored: str) -> None:
    try:
        default_storage.delete(stored)
    except OSError:
        logger.warning("Could not remove the unused %s file %s", job.noun, stored)


def run(job: PdfJob[Row], pk: int) -> None:
    """Make the PDF of one row (the task body). Idempotent: a done or failed row is left as it
    is. Transient errors put it back in the queue and propagate for the task to retry; any
    other error marks it failed with a readable message and an event, and does not
    propagate."""
    row = _claim(job, pk)
    if row is None:
        return
    try:
        made = job.render(row)
        tick(row, STAGE_STORE)
    except TRANSIENT_ERRORS as exc:
        _requeue(job, pk, exc)
        raise
    except Exception as exc:
        logger.exception("%s %s failed", job.noun.capitalize(), pk)
        fail(job, pk, error_text(exc))
        return
    sha256 = hashlib.sha256(made.content).hexdigest()
    try:
        stored: str = default_storage.save(
            job.upload_to(row, row.filename),  # type: ignore[attr-defined]
            ContentFile(made.content),
        )
    except OSError as exc:  # the storage is unreachable or full: worth another attempt
        _requeue(job, pk, exc)
        raise
    try:
        finished = _finish(job, pk, stored=stored, sha256=sha256, made=made)
    except TRANSIENT_ERRORS as exc:
        _discard(job, stored)
        _requeue(job, pk, exc)
        raise
    if not finished:
        _discard(job, stored)
