"""The batches app's background tasks: thin, each calls one service (design §7)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from controlsite.background.tasks import RegulatedTask


def _certificate_gave_up(
    self: RegulatedTask, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
) -> None:
    """Celery's `on_failure`: the retries are spent (or the task broke before
    `certificate_run` could record why), so the certificate is marked failed with the error."""
    from batches.certificates import certificate_fail
    from controlsite.audit.context import audit_context

    certificate_id = args[0] if args else (kwargs or {}).get("certificate_id")
    if certificate_id is None:
        return
    with audit_context(reason="batch certificate gave up", origin="task"):
        certificate_fail(
            int(certificate_id),
            f"The certificate was given up after {self.request.retries} retries "
            f"({type(exc).__name__}): {exc}",
        )


@shared_task(
    base=RegulatedTask,
    bind=True,
    name="batches.certificate_make",
    # The storage being unreachable (OSError) is transient too; `certificate_run` lets only
    # transient errors out, so retrying on these never repeats a fault in the data.
    autoretry_for=(OperationalError, InterfaceError, OSError),
    on_failure=_certificate_gave_up,
)
def certificate_make(self: RegulatedTask, certificate_id: int) -> None:
    """Make the PDF/A batch certificate of one decided batch (issue 5 §7): late
    acknowledgement, idempotent, retried on transient failures."""
    from batches.certificates import certificate_run
    from controlsite.audit.context import audit_context

    with audit_context(reason=f"batch certificate {certificate_id}", origin="task"):
        certificate_run(certificate_id)


@shared_task(
    base=RegulatedTask,
    name="batches.comparability_evaluate",
    autoretry_for=(OperationalError, InterfaceError),
)
def comparability_evaluate(product_id: int, site_ids: list[int] | None = None) -> int:
    """Evaluate sites of a product against its reference limits after results are recorded
    (issue 8 §5): snapshots, and a signal once per run-rule or equivalence episode."""
    from batches.comparability.services import comparability_evaluate as evaluate
    from controlsite.audit.context import audit_context

    with audit_context(reason="comparability evaluation", origin="task"):
        return evaluate(product_id=product_id, site_ids=site_ids)


@shared_task(base=RegulatedTask, name="batches.comparability_sweep")
def comparability_sweep() -> int:
    """Evaluate every product with limits in force: the periodic safety net behind the
    evaluation after each result, and the place a window moving on the clock shows."""
    from batches.comparability.services import comparability_sweep as sweep
    from controlsite.audit.context import audit_context

    with audit_context(reason="comparability sweep", origin="task"):
        return sweep()


@shared_task(base=RegulatedTask, name="batches.comparability_checks_schedule")
def comparability_checks_schedule() -> dict[str, int]:
    """Give every active manufacturing site its yearly comparability check, then tell QA and
    the site's leads of each check newly overdue (SO-09)."""
    from batches.comparability.services import checks_overdue_remind, checks_schedule_due
    from controlsite.audit.context import audit_context

    with audit_context(reason="yearly comparability checks", origin="task"):
        return {"scheduled": checks_schedule_due(), "reminded": checks_overdue_remind()}
