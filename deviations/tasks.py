"""The deviations app's background tasks: the batches outbox and overdue escalation."""

from __future__ import annotations

from celery import shared_task

from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, name="deviations.signals_process")
def signals_process() -> int:
    """Open a deviation for each new batch signal, exactly once."""
    from deviations import services

    return services.signals_process()


@shared_task(base=RegulatedTask, name="deviations.escalate_overdue")
def escalate_overdue() -> int:
    """E-mail QA and the site leads, once, about each overdue deviation (DV-04)."""
    from deviations import services

    return services.deviations_escalate_overdue()
