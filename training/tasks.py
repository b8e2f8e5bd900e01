"""The training app's background task: the hourly round."""

from __future__ import annotations

from celery import shared_task

from controlsite.background.tasks import RegulatedTask


@shared_task(base=RegulatedTask, name="training.round")
def training_round() -> dict[str, int]:
    """Versions into force, reminders, overdue escalation and renewals (TR-03, TR-04)."""
    from training import services

    return services.training_round()
