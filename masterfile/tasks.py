"""The master-file app's background tasks: thin, each calls one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, bind=True, name="masterfile.review_reminders")
def review_reminders(self: RegulatedTask) -> int:
    from controlsite.audit.context import audit_context
    from masterfile.services import review_reminders_send

    with audit_context(reason="daily master-file review reminders", origin="task"):
        return review_reminders_send()


def _export_gave_up(
    self: RegulatedTask, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
) -> None:
    """Celery's `on_failure`: the retries are spent (or the task broke before `export_run`
    could record why), so the export is marked failed and shows the error (issue 4 §8)."""
    from controlsite.audit.context import audit_context
    from masterfile.exports import export_fail

    export_id = args[0] if args else (kwargs or {}).get("export_id")
    if export_id is None:
        return
    with audit_context(reason="master file export gave up", origin="task"):
        export_fail(
            int(export_id),
            f"The export was given up after {self.request.retries} retries "
            f"({type(exc).__name__}): {exc}",
        )


@shared_task(
    base=RegulatedTask,
    bind=True,
    name="masterfile.export_master_file",
    # The storage being unreachable (OSError) is transient too; `export_run` lets only
    # transient errors out, so retrying on these never repeats a fault in the data.
    autoretry_for=(OperationalError, InterfaceError, OSError),
    on_failure=_export_gave_up,
)
def export_master_file(self: RegulatedTask, export_id: int) -> None:
    """Make the PDF/A of one master-file export (design §7): late acknowledgement, idempotent,
    retried on transient failures. The worker's memory is bounded by
    CELERY_WORKER_MAX_MEMORY_PER_CHILD (settings)."""
    from controlsite.audit.context import audit_context
    from masterfile.exports import export_run

    with audit_context(reason=f"master file export {export_id}", origin="task"):
        export_run(export_id)


def _annual_report_gave_up(
    self: RegulatedTask, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
) -> None:
    """Celery's `on_failure`: the retries are spent (or the task broke before the run could
    record why), so the annual report is marked failed and shows the error."""
    from controlsite.audit.context import audit_context
    from masterfile.annual import annual_report_fail

    report_id = args[0] if args else (kwargs or {}).get("report_id")
    if report_id is None:
        return
    with audit_context(reason="annual report gave up", origin="task"):
        annual_report_fail(
            int(report_id),
            f"The report was given up after {self.request.retries} retries "
            f"({type(exc).__name__}): {exc}",
        )


@shared_task(
    base=RegulatedTask,
    bind=True,
    name="masterfile.annual_report_make",
    autoretry_for=(OperationalError, InterfaceError, OSError),
    on_failure=_annual_report_gave_up,
)
def annual_report_make(self: RegulatedTask, report_id: int) -> None:
    """Make the PDF/A of one annual report (MF-07, RP-01): late acknowledgement, idempotent,
    retried on transient failures, as the master-file export is."""
    from controlsite.audit.context import audit_context
    from masterfile.annual import annual_report_run

    with audit_context(reason=f"annual report {report_id}", origin="task"):
        annual_report_run(report_id)
